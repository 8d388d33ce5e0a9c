// Package accounts is the domain of local accounts: registration, login,
// logout, password change, deactivation, and the admin operations of the
// `myelin` CLI. The HTTP adapter (impl/csapi) and the CLI only translate to
// and from these functions.
//
// Access tokens and devices are created and deleted through devices.Core,
// inside this package's transactions, so the device-list stream rows commit
// with them; revoked token hashes are passed to Core.NotifyRevoked after
// commit. User-interactive auth goes through uia.Engine, password checks
// through credentials.Checker (the same for login and UIA).
package accounts

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"unicode"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/appservice"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/uia"
)

// Service holds what the account functions need.
type Service struct {
	Store       *storage.Store
	Config      *config.Config
	Devices     *devices.Core
	UIA         *uia.Engine
	Credentials *credentials.Checker
	// Limits may be nil (rate limits off).
	Limits *ratelimit.Limiter
	// OnDeactivate run inside the deactivation's transaction, so what
	// other packages keep per user goes with the account (account data,
	// key backups).
	OnDeactivate []func(ctx context.Context, tx bun.IDB, userID string) error
	// Sessions issues refresh and login tokens.
	Sessions *sessions.Service
	// AppServices are the registered application services: the user IDs
	// they claim exclusively are theirs alone to register (nil: none).
	AppServices *appservice.Registry
}

// Limits of the spec and of common practice (Synapse).
const (
	MaxUserIDBytes   = 255
	MaxPasswordBytes = 512
)

// LoginResult answers a successful registration or login. Fields other
// than UserID are empty for a registration with inhibit_login.
type LoginResult struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
	HomeServer  string `json:"home_server,omitempty"`
	// RefreshToken and ExpiresInMS are set when the client asked for a
	// refresh token (refresh_token: true).
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
}

func errInvalidUsername(msg string) *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_INVALID_USERNAME", msg)
}

func errUserInUse() *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_USER_IN_USE", "Desired user ID is already taken.")
}

func errGuestForbidden(msg string) *matrixerr.Error {
	return matrixerr.New(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", msg)
}

// localpartRE is the user-ID localpart grammar, anchored at both ends of
// the text, so "alice\n" does not pass.
var localpartRE = regexp.MustCompile(`\A[a-z0-9._=\-/]+\z`)

// UserIDFor turns a requested username into the user ID it registers:
// lower-cased, checked against the localpart grammar, at most 255 bytes
// in full. Otherwise 400 M_INVALID_USERNAME.
func (s *Service) UserIDFor(username string) (string, error) {
	local := toLowerASCII(username)
	if !localpartRE.MatchString(local) {
		return "", errInvalidUsername("User ID may only contain a-z, 0-9, and . _ = - /")
	}
	uid := "@" + local + ":" + s.Config.ServerName
	if len(uid) > MaxUserIDBytes {
		return "", errInvalidUsername(fmt.Sprintf("User ID may not be longer than %d bytes", MaxUserIDBytes))
	}
	return uid, nil
}

// toLowerASCII lower-cases A-Z only: other letters stay as they are, so
// they fail the grammar instead of being folded into an allowed byte (the
// Kelvin sign K lower-cases to k under Unicode rules).
func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// CheckPasswordPolicy applies the configured policy: over 512 bytes is 400
// M_BAD_JSON, a policy failure 400 M_WEAK_PASSWORD. Lengths count
// characters, so non-ASCII passwords are measured as users see them.
func CheckPasswordPolicy(p config.PasswordPolicy, password string) error {
	if len(password) > MaxPasswordBytes {
		return matrixerr.BadJSON(fmt.Sprintf("Password may not be longer than %d bytes", MaxPasswordBytes))
	}
	weak := func(msg string) error { return matrixerr.New(http.StatusBadRequest, "M_WEAK_PASSWORD", msg) }
	if utf8.RuneCountInString(password) < p.MinLength {
		return weak(fmt.Sprintf("Password must be at least %d characters long", p.MinLength))
	}
	var digit, symbol, upper, lower bool
	for _, r := range password {
		switch {
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case !unicode.IsLetter(r):
			symbol = true
		}
	}
	switch {
	case p.RequireDigit && !digit:
		return weak("Password must contain a digit")
	case p.RequireSymbol && !symbol:
		return weak("Password must contain a symbol")
	case p.RequireUpper && !upper:
		return weak("Password must contain an upper-case letter")
	case p.RequireLower && !lower:
		return weak("Password must contain a lower-case letter")
	}
	return nil
}

// checkDevice refuses a bad client-chosen device ID or display name early,
// before UIA or password hashing (IssueToken would only refuse them after);
// a nil or "" ID means none was chosen.
func checkDevice(id, displayName *string) error {
	if id != nil && *id != "" {
		if err := devices.ValidateDeviceID(*id); err != nil {
			return err
		}
	}
	if displayName != nil {
		return devices.ValidateDisplayName(*displayName)
	}
	return nil
}

// userExists reports whether userID was ever registered (deactivated
// accounts keep their row, so their IDs are never handed out again).
func (s *Service) userExists(ctx context.Context, db bun.IDB, userID string) (bool, error) {
	return db.NewSelect().Model((*storage.User)(nil)).Where("user_id = ?", userID).Exists(ctx)
}

// commitRevoking runs fn in one transaction and, once it has committed,
// tells token caches about the access tokens fn revoked.
func (s *Service) commitRevoking(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) (revoked []string, err error)) error {
	var revoked []string
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var err error
		revoked, err = fn(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	s.Devices.NotifyRevoked(ctx, revoked)
	return nil
}

// passwordFlows is the UIA of operations on one's own account.
var passwordFlows = []uia.Flow{{Stages: []string{uia.StagePassword}}}
