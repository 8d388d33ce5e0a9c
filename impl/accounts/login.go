package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Login types.
const (
	LoginPassword = "m.login.password"
	LoginToken    = "m.login.token"
)

// LoginFlows are the login types GET /login lists.
func LoginFlows() []string { return []string{LoginPassword, LoginToken} }

// LoginRequest is one POST /login.
type LoginRequest struct {
	Type string
	// m.login.password: an identifier object, or the legacy user, or the
	// legacy medium and address.
	Identifier                      map[string]any
	User, Medium, Address, Password string
	// m.login.token
	Token                    string
	DeviceID                 *string
	InitialDeviceDisplayName *string
	// RefreshToken: the client supports refresh tokens.
	RefreshToken bool
	IP           string
}

// Login checks the credential and binds a new access token to a device
// (seed 000: no device_id generates one; a known device of this user is
// kept and its previous token revoked at once; an unknown one is created).
func (s *Service) Login(ctx context.Context, req LoginRequest) (LoginResult, error) {
	if err := s.Limits.Allow(req.IP, ""); err != nil {
		return LoginResult{}, err
	}
	if err := checkDevice(req.DeviceID, req.InitialDeviceDisplayName); err != nil {
		return LoginResult{}, err
	}
	deviceID := ""
	if req.DeviceID != nil {
		deviceID = *req.DeviceID
	}
	var userID string
	switch req.Type {
	case LoginPassword:
		var err error
		if userID, err = s.checkPassword(ctx, req); err != nil {
			return LoginResult{}, err
		}
	case LoginToken:
		// Consumed inside the transaction that issues the access token.
	default:
		return LoginResult{}, matrixerr.New(http.StatusBadRequest, "M_UNKNOWN", "Unknown login type")
	}
	var out LoginResult
	err := s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		if req.Type == LoginToken {
			var err error
			if userID, err = s.consumeLoginToken(ctx, tx, req.Token); err != nil {
				return nil, err
			}
		}
		// A locked account gets no new token until it is unlocked; only
		// who proved the credential learns that.
		var locked bool
		if err := tx.NewSelect().Model((*storage.User)(nil)).Column("locked").
			Where("user_id = ?", userID).Scan(ctx, &locked); err != nil {
			return nil, err
		}
		if locked {
			return nil, auth.ErrLocked()
		}
		var revoked []string
		var err error
		out, revoked, err = s.issue(ctx, tx, userID, deviceID, req.InitialDeviceDisplayName, req.IP, req.RefreshToken)
		return revoked, err
	})
	return out, err
}

// checkPassword verifies an m.login.password login and returns the user
// ID. Unknown users, unknown 3PIDs and wrong passwords are all 403
// M_FORBIDDEN "Invalid username or password" after the same hashing work.
func (s *Service) checkPassword(ctx context.Context, req LoginRequest) (string, error) {
	cred, err := credentials.Parse(req.Identifier, req.User, req.Medium, req.Address, req.Password)
	if err != nil {
		return "", err
	}
	if len(cred.Password) > MaxPasswordBytes {
		return "", matrixerr.BadJSON(fmt.Sprintf("Password may not be longer than %d bytes", MaxPasswordBytes))
	}
	userID, err := s.Credentials.UserID(ctx, cred.Identifier)
	if err != nil {
		return "", err
	}
	// The target account of the limits: a 3PID bound to nobody is its own
	// target, so guessing at it is limited as well.
	account := userID
	if account == "" {
		account = cred.Identifier.Medium + ":" + credentials.CanonicalAddress(cred.Identifier.Medium, cred.Identifier.Address)
	}
	if err := s.Limits.Allow("", account); err != nil {
		return "", err
	}
	attempt, err := s.Limits.BeginLogin(ctx, account)
	if err != nil {
		return "", err
	}
	err = s.Credentials.Check(ctx, userID, cred.Password)
	if err == nil || credentials.IsDeactivated(err) {
		// The password was right: that is not a failed login.
		if rerr := attempt.Succeeded(ctx); rerr != nil {
			return "", rerr
		}
	}
	return userID, err
}

// consumeLoginToken redeems a single-use m.login.token: deleting it is the
// check, so two concurrent logins with one token cannot both succeed.
func (s *Service) consumeLoginToken(ctx context.Context, tx bun.IDB, token string) (string, error) {
	invalid := matrixerr.Forbidden("Invalid or expired login token")
	if token == "" {
		return "", invalid
	}
	var lt storage.LoginToken
	err := tx.NewDelete().Model(&lt).Where("token_hash = ?", tokens.HashToken(token).String()).
		Returning("user_id, expires_ts").Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return "", invalid
	}
	if err != nil {
		return "", err
	}
	if lt.ExpiresTS <= time.Now().UnixMilli() {
		return "", invalid
	}
	var deactivated bool
	if err := tx.NewSelect().Model((*storage.User)(nil)).Column("deactivated").
		Where("user_id = ?", lt.UserID).Scan(ctx, &deactivated); err != nil {
		return "", err
	}
	if deactivated {
		return "", credentials.ErrDeactivated()
	}
	return lt.UserID, nil
}

// Logout deletes the caller's device and with it its access token.
func (s *Service) Logout(ctx context.Context, p auth.Principal) error {
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		_, revoked, err := s.Devices.DeleteDevices(ctx, tx, p.UserID, []string{p.DeviceID})
		return revoked, err
	})
}

// LogoutAll deletes every device and access token of the caller.
func (s *Service) LogoutAll(ctx context.Context, p auth.Principal) error {
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		_, revoked, err := s.Devices.DeleteAllDevices(ctx, tx, p.UserID, "")
		return revoked, err
	})
}

// CheckSignIn checks the credentials of a sign-in on the web pages
// (impl/web) exactly as an m.login.password login with an m.id.user
// identifier: the same rate limits (per IP, per account and failed logins
// across processes), the same single answer for unknown users and wrong
// passwords, and, only after the right password, M_USER_DEACTIVATED or
// M_USER_LOCKED. It returns the user ID; it creates no device.
func (s *Service) CheckSignIn(ctx context.Context, username, password, ip string) (string, error) {
	if err := s.Limits.Allow(ip, ""); err != nil {
		return "", err
	}
	userID, err := s.checkPassword(ctx, LoginRequest{Type: LoginPassword,
		Identifier: map[string]any{"type": "m.id.user", "user": username}, Password: password})
	if err != nil {
		return "", err
	}
	var locked bool
	if err := s.Store.R.NewSelect().Model((*storage.User)(nil)).Column("locked").
		Where("user_id = ?", userID).Scan(ctx, &locked); err != nil {
		return "", err
	}
	if locked {
		return "", auth.ErrLocked()
	}
	return userID, nil
}
