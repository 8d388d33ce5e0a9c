// Package uia is the one user-interactive authentication engine used by
// every UIA-protected endpoint (register, account/password,
// account/deactivate, devices/{id} DELETE, delete_devices).
//
// Sessions live in the database (table uia_sessions), so they survive
// restarts and work across server processes; they expire after
// Config.UIASessionTTL and are bound to the operation they were started for.
package uia

import "encoding/json"

// Stage types.
const (
	StageDummy             = "m.login.dummy"
	StagePassword          = "m.login.password"
	StageRegistrationToken = "m.login.registration_token"
)

// Flow is one acceptable sequence of stages.
type Flow struct {
	Stages []string `json:"stages"`
}

// Request describes one call of a UIA-protected operation.
type Request struct {
	// Operation binds the session to what it was started for, including
	// its target, e.g. OpDeleteDevice(deviceID). A session presented for
	// any other Operation is refused with 403 and nothing is done.
	Operation string
	// UserID is the account that must authenticate (the caller); "" for
	// registration. A password stage for any other account is refused 403.
	UserID string
	// Flows the client may complete.
	Flows []Flow
	// Auth is the request's "auth" object, nil when absent.
	Auth map[string]any
	// Params are stored with a new session; every later request of the
	// session gets the stored values back in Result.Params (registration
	// remembers username, password, device_id, initial_device_display_name
	// from the first request).
	Params map[string]any
}

// Result is returned when a flow is complete.
type Result struct {
	SessionID string
	Params    map[string]any
	// Replay is the stored response of an operation this session already
	// completed (an idempotent retry of the final request); nil otherwise.
	Replay json.RawMessage
}

// Operation names for binding sessions.
func OpRegister() string                    { return "register" }
func OpChangePassword() string              { return "account/password" }
func OpDeactivate() string                  { return "account/deactivate" }
func OpDeleteDevice(deviceID string) string { return "delete_device\x00" + deviceID }

// OpDeleteDevices binds a session to one exact set of device IDs
// (order-insensitive): pass the IDs as sent; the engine hashes them.
func OpDeleteDevices(deviceIDs []string) string { return "delete_devices\x00" + setDigest(deviceIDs) }
