// Package uia is the one user-interactive authentication engine used by
// every UIA-protected endpoint (register, account/password,
// account/deactivate, devices/{id} DELETE, delete_devices).
//
// Sessions live in the database (table uia_sessions), so they survive
// restarts and work across server processes; they expire after
// Engine.TTL (config uia_session_ttl) and are bound to the operation and
// the user they were started for.
//
// Use from an endpoint:
//
//	res, err := engine.Authenticate(ctx, uia.Request{
//		Operation: uia.OpDeleteDevice(id),
//		UserID:    caller.UserID,
//		Flows:     []uia.Flow{{Stages: []string{uia.StagePassword}}},
//		Auth:      authDict, // the request's "auth" object, nil if absent
//	})
//	if err != nil {
//		return nil, err // a *matrixerr.Error: the 401 challenge, a failed stage, 403, ...
//	}
//	if res.Replay != nil {
//		return res.Replay // this session already did the operation: same answer
//	}
//	err = store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
//		... do the operation ...
//		return engine.Finish(ctx, tx, res.SessionID, response)
//	})
//
// Authenticate returns a *matrixerr.Error for
//   - no auth, or a flow not yet complete: 401 {flows, params: {}, session,
//     completed} without errcode (the challenge);
//   - a failed stage (wrong password, invalid registration token): 401 with
//     the same body plus errcode M_FORBIDDEN and error, same session;
//   - a session started for another Operation or UserID: 403 M_FORBIDDEN,
//     the session is left as it was;
//   - a password stage naming another account than Request.UserID: 403;
//   - an unknown or expired session: 400 M_UNKNOWN (as Synapse).
//
// A client may complete a flow of one stage in a single request without a
// prior session (matrix-nio registers and deletes devices that way): the
// session is then created by that request.
//
// Finish records the operation's response in its own transaction, so a
// repeated final request of the session gets Result.Replay instead of doing
// the operation twice (registration is idempotent by session), and counts
// the use of a registration token reserved by the session. It returns
// ErrAlreadyFinished when another request finished the session first.
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
	// ChallengeParams is the "params" of the 401 challenge (the m.oauth
	// stage's URL, from FlowsFor); nil for none.
	ChallengeParams map[string]any
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
func OpRegister() string       { return "register" }
func OpChangePassword() string { return "account/password" }
func OpDeactivate() string     { return "account/deactivate" }

// Device IDs are client-chosen bytes: operations name them by digest, so
// the stored operation is short plain text whatever the IDs contain.
func OpDeleteDevice(deviceID string) string { return "delete_device:" + setDigest([]string{deviceID}) }

// OpDeleteDevices binds a session to one exact set of device IDs
// (order-insensitive): pass the IDs as sent; the engine hashes them.
func OpDeleteDevices(deviceIDs []string) string { return "delete_devices:" + setDigest(deviceIDs) }
