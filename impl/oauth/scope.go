package oauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Scope tokens. The msc2967 forms are the unstable names that clients
// written before v1.15 (matrix-js-sdk, Element) still send.
const (
	ScopeOpenID         = "openid"
	ScopeAPI            = "urn:matrix:client:api:*"
	ScopeAPIUnstable    = "urn:matrix:org.matrix.msc2967.client:api:*"
	ScopeDevice         = "urn:matrix:client:device:"
	ScopeDeviceUnstable = "urn:matrix:org.matrix.msc2967.client:device:"
)

// MinDeviceIDLen is the shortest device ID a client may choose: the spec
// lets a server refuse IDs that are "not long enough".
const MinDeviceIDLen = 5

// Scope is a parsed, accepted scope.
type Scope struct {
	// Tokens are the granted scope tokens in request order, without
	// duplicates, with the device token added when the client named none.
	Tokens   []string
	OpenID   bool
	DeviceID string
}

// String is the scope as answered (space separated).
func (s Scope) String() string { return strings.Join(s.Tokens, " ") }

// ScopeError answers a scope Myelin does not grant (invalid_scope).
type ScopeError struct{ Description string }

func (e *ScopeError) Error() string { return "invalid_scope: " + e.Description }

// ParseScope accepts a requested scope: full client-server API access
// (urn:matrix:client:api:*, required: Myelin's tokens grant nothing
// less), at most one device token (a device is generated when there is
// none), and openid. Any other token is refused.
func ParseScope(raw string) (Scope, error) {
	var s Scope
	api := false
	for _, t := range strings.Fields(raw) {
		for i := 0; i < len(t); i++ {
			// RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E.
			if c := t[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return Scope{}, &ScopeError{fmt.Sprintf("scope token %q has a character RFC 6749 does not allow", t)}
			}
		}
		if slices.Contains(s.Tokens, t) {
			continue
		}
		switch {
		case t == ScopeOpenID:
			s.OpenID = true
		case t == ScopeAPI || t == ScopeAPIUnstable:
			api = true
		case strings.HasPrefix(t, ScopeDevice) || strings.HasPrefix(t, ScopeDeviceUnstable):
			id := strings.TrimPrefix(strings.TrimPrefix(t, ScopeDevice), ScopeDeviceUnstable)
			if s.DeviceID != "" && s.DeviceID != id {
				return Scope{}, &ScopeError{"more than one device scope"}
			}
			if err := ValidateDeviceID(id); err != nil {
				return Scope{}, err
			}
			s.DeviceID = id
		default:
			return Scope{}, &ScopeError{fmt.Sprintf("scope token %q is not supported", t)}
		}
		s.Tokens = append(s.Tokens, t)
	}
	if !api {
		return Scope{}, &ScopeError{"the scope must include " + ScopeAPI}
	}
	if s.DeviceID == "" {
		s.DeviceID = tokens.NewDeviceID()
		s.Tokens = append(s.Tokens, ScopeDevice+s.DeviceID)
	}
	return s, nil
}

// ValidateDeviceID applies the rules for a device ID a client chooses:
// RFC 3986 unreserved characters only (the spec lets servers refuse
// others), at least MinDeviceIDLen of them, and the device core's limits.
func ValidateDeviceID(id string) error {
	if len(id) < MinDeviceIDLen {
		return &ScopeError{fmt.Sprintf("device ID %q is shorter than %d characters", id, MinDeviceIDLen)}
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return &ScopeError{fmt.Sprintf("device ID %q has characters outside A-Z a-z 0-9 - . _ ~", id)}
		}
	}
	if err := devices.ValidateDeviceID(id); err != nil {
		return &ScopeError{err.Error()}
	}
	return nil
}

// SessionScope is the scope that describes any Myelin access token of a
// device (for introspection of tokens issued by the legacy login).
func SessionScope(deviceID string) string {
	return ScopeAPI + " " + ScopeDevice + deviceID
}
