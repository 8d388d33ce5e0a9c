package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
	"github.com/myelin-hs/myelin/impl/uia"
)

// RegisterRequest is one POST /register.
type RegisterRequest struct {
	Guest                    bool // kind=guest
	Username                 *string
	Password                 *string
	DeviceID                 *string
	InitialDeviceDisplayName *string
	InhibitLogin             bool
	// RefreshToken: the client supports refresh tokens (an expiring
	// access token and a refresh token are issued).
	RefreshToken bool
	Auth         map[string]any // the "auth" object, nil when absent
	IP           string
}

// Names of the registration parameters remembered in the UIA session. The
// password is remembered only as its hash.
const (
	paramUsername     = "username"
	paramPasswordHash = "password_hash"
	paramDeviceID     = "device_id"
	paramDisplayName  = "initial_device_display_name"
	paramInhibitLogin = "inhibit_login"
	paramRefreshToken = "refresh_token"
)

// Register registers an account. Username and password are checked before
// user-interactive auth starts; the parameters of the session's first
// request win over later ones; repeating the final request of a finished
// session returns the same result.
func (s *Service) Register(ctx context.Context, req RegisterRequest) (LoginResult, error) {
	if req.Guest {
		return s.registerGuest(ctx, req)
	}
	var flows []uia.Flow
	switch s.Config.Registration {
	case config.RegistrationOpen:
		flows = []uia.Flow{{Stages: []string{uia.StageDummy}}}
	case config.RegistrationToken:
		flows = []uia.Flow{{Stages: []string{uia.StageRegistrationToken}}}
	default:
		return LoginResult{}, matrixerr.Forbidden("Registration is disabled")
	}
	if err := s.Limits.Allow(req.IP, ""); err != nil {
		return LoginResult{}, err
	}
	params := map[string]any{}
	if req.Username != nil {
		uid, err := s.UserIDFor(*req.Username)
		if err != nil {
			return LoginResult{}, err
		}
		if err := s.Limits.Allow("", uid); err != nil {
			return LoginResult{}, err
		}
		if err := s.checkExclusive(uid); err != nil {
			return LoginResult{}, err
		}
		if taken, err := s.userExists(ctx, s.Store.R, uid); err != nil {
			return LoginResult{}, err
		} else if taken {
			// Taken by this session's own first run? Then this is a retry.
			if js, err := s.UIA.Replay(ctx, uia.Request{Operation: uia.OpRegister(), Auth: req.Auth}); err != nil || js != nil {
				if err != nil {
					return LoginResult{}, err
				}
				return s.replayed(ctx, js, req.IP)
			}
			return LoginResult{}, errUserInUse()
		}
		params[paramUsername] = uid
	}
	if req.Password != nil {
		if err := CheckPasswordPolicy(s.Config.Password, *req.Password); err != nil {
			return LoginResult{}, err
		}
		h, err := s.Credentials.Hasher.Hash(*req.Password)
		if err != nil {
			return LoginResult{}, err
		}
		params[paramPasswordHash] = h
	}
	if err := checkDevice(req.DeviceID, req.InitialDeviceDisplayName); err != nil {
		return LoginResult{}, err
	}
	if req.DeviceID != nil && *req.DeviceID != "" {
		params[paramDeviceID] = *req.DeviceID
	}
	if req.InitialDeviceDisplayName != nil {
		params[paramDisplayName] = *req.InitialDeviceDisplayName
	}
	if req.InhibitLogin {
		params[paramInhibitLogin] = true
	}
	if req.RefreshToken {
		params[paramRefreshToken] = true
	}
	uiaReq := uia.Request{Operation: uia.OpRegister(), Flows: flows, Auth: req.Auth, Params: params}
	res, err := s.UIA.Authenticate(ctx, uiaReq)
	if err != nil {
		return LoginResult{}, err
	}
	if res.Replay != nil {
		return s.replayed(ctx, res.Replay, req.IP)
	}
	out, err := s.completeRegistration(ctx, res, req.IP)
	if errors.Is(err, uia.ErrAlreadyFinished) || errors.Is(err, errUsernameRaced) {
		// A concurrent request of this session registered first: answer
		// with its result (or, if another session took the name, in use).
		uiaReq.Auth = map[string]any{"session": res.SessionID}
		if again, aerr := s.UIA.Authenticate(ctx, uiaReq); aerr == nil && again.Replay != nil {
			return s.replayed(ctx, again.Replay, req.IP)
		}
		return LoginResult{}, errUserInUse()
	}
	return out, err
}

var errUsernameRaced = errors.New("accounts: username registered concurrently")

// registered is what a finished registration session keeps for a retry
// of its final request: never the tokens it answered with (tokens are
// stored only as hashes). A retry comes from a client that lost the
// answer, so it gets new tokens for the same device, which end the first
// ones (one live token per device).
type registered struct {
	LoginResult
	Refresh bool `json:"refresh,omitempty"`
}

// replayed answers a retry of a registration that session already
// completed.
func (s *Service) replayed(ctx context.Context, js json.RawMessage, ip string) (LoginResult, error) {
	var r registered
	if err := json.Unmarshal(js, &r); err != nil {
		return LoginResult{}, err
	}
	if r.AccessToken != "" || r.DeviceID == "" {
		// Kept by an older version with its tokens, or inhibit_login.
		return r.LoginResult, nil
	}
	var out LoginResult
	err := s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var revoked []string
		var err error
		out, revoked, err = s.issue(ctx, tx, r.UserID, r.DeviceID, nil, ip, r.Refresh)
		return revoked, err
	})
	return out, err
}

// completeRegistration creates the account of a completed UIA session from
// the session's parameters.
func (s *Service) completeRegistration(ctx context.Context, res uia.Result, ip string) (LoginResult, error) {
	str := func(k string) (string, bool) { v, ok := res.Params[k].(string); return v, ok }
	hash, ok := str(paramPasswordHash)
	if !ok {
		return LoginResult{}, matrixerr.MissingParam("Missing parameter: password")
	}
	userID, chosen := str(paramUsername)
	deviceID, _ := str(paramDeviceID)
	var displayName *string
	if n, ok := str(paramDisplayName); ok {
		displayName = &n
	}
	inhibit, _ := res.Params[paramInhibitLogin].(bool)
	refresh, _ := res.Params[paramRefreshToken].(bool)
	var out LoginResult
	err := s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var err error
		if chosen {
			err = s.insertUser(ctx, tx, userID, hash, false)
			if storage.IsUniqueViolation(err) {
				return nil, errUsernameRaced
			}
		} else {
			userID, err = s.insertGeneratedUser(ctx, tx, hash, false)
		}
		if err != nil {
			return nil, err
		}
		var revoked []string
		if inhibit {
			out = LoginResult{UserID: userID}
		} else if out, revoked, err = s.issue(ctx, tx, userID, deviceID, displayName, ip, refresh); err != nil {
			return nil, err
		}
		kept := registered{LoginResult: out, Refresh: refresh}
		kept.AccessToken, kept.RefreshToken, kept.ExpiresInMS = "", "", 0
		return revoked, s.UIA.Finish(ctx, tx, res.SessionID, kept)
	})
	return out, err
}

// registerGuest registers a guest: no UIA, and by the spec every parameter
// but initial_device_display_name is ignored; the server picks the device.
func (s *Service) registerGuest(ctx context.Context, req RegisterRequest) (LoginResult, error) {
	if !s.Config.GuestsEnabled {
		return LoginResult{}, errGuestForbidden("Guest access is disabled")
	}
	if err := s.Limits.Allow(req.IP, ""); err != nil {
		return LoginResult{}, err
	}
	var out LoginResult
	err := s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		uid, err := s.insertGeneratedUser(ctx, tx, "", true)
		if err != nil {
			return nil, err
		}
		var revoked []string
		out, revoked, err = s.issue(ctx, tx, uid, "", req.InitialDeviceDisplayName, req.IP, false)
		return revoked, err
	})
	return out, err
}

func (s *Service) insertUser(ctx context.Context, tx bun.IDB, userID, passwordHash string, guest bool) error {
	u := storage.User{UserID: userID, PasswordHash: passwordHash, IsGuest: guest, CreatedTS: time.Now().UnixMilli()}
	_, err := tx.NewInsert().Model(&u).Exec(ctx)
	return err
}

// insertGeneratedUser registers a random localpart, skipping taken ones.
// The check keeps the transaction usable (a failed INSERT would abort it
// on PostgreSQL).
func (s *Service) insertGeneratedUser(ctx context.Context, tx bun.IDB, passwordHash string, guest bool) (string, error) {
	for range 10 {
		uid := "@" + tokens.RandomLocalpart() + ":" + s.Config.ServerName
		taken, err := s.userExists(ctx, tx, uid)
		if err != nil {
			return "", err
		}
		if !taken {
			return uid, s.insertUser(ctx, tx, uid, passwordHash, guest)
		}
	}
	return "", errors.New("accounts: could not generate a free user ID")
}

// issue binds a new access token to a device of userID (seed 000: an
// empty deviceID is generated, a known one is reused and its previous
// token revoked, an unknown one is created) and returns the hashes of the
// tokens it revoked. With refresh, the access token expires and a refresh
// token is issued with it.
func (s *Service) issue(ctx context.Context, tx bun.IDB, userID, deviceID string, displayName *string, ip string, refresh bool) (LoginResult, []string, error) {
	l, err := s.Devices.IssueToken(ctx, tx, userID, deviceID, displayName, ip)
	if err != nil {
		return LoginResult{}, nil, err
	}
	out := LoginResult{UserID: userID, AccessToken: l.AccessToken, DeviceID: l.DeviceID, HomeServer: s.Config.ServerName}
	if refresh {
		t, err := s.Sessions.AttachRefresh(ctx, tx, userID, l.DeviceID, l.AccessToken)
		if err != nil {
			return LoginResult{}, nil, err
		}
		out.RefreshToken, out.ExpiresInMS = t.RefreshToken, t.ExpiresInMS
	}
	return out, l.Revoked, nil
}

// UsernameAvailable answers GET /register/available: nil when username is
// valid and free, else 400 M_INVALID_USERNAME or M_USER_IN_USE.
func (s *Service) UsernameAvailable(ctx context.Context, username, ip string) error {
	if err := s.Limits.Allow(ip, ""); err != nil {
		return err
	}
	uid, err := s.UserIDFor(username)
	if err != nil {
		return err
	}
	if err := s.Limits.Allow("", uid); err != nil {
		return err
	}
	if err := s.checkExclusive(uid); err != nil {
		return err
	}
	taken, err := s.userExists(ctx, s.Store.R, uid)
	if err != nil {
		return err
	}
	if taken {
		return errUserInUse()
	}
	return nil
}

// RegisterInBrowser registers an account from the registration page of
// the OAuth 2.0 API (prompt=create), within the registration mode: open,
// or token (regToken is used up like a completed m.login.registration_token
// stage); disabled refuses. No device is created: the OAuth grant that
// follows creates the client's.
func (s *Service) RegisterInBrowser(ctx context.Context, username, password, regToken, ip string) (string, error) {
	switch s.Config.Registration {
	case config.RegistrationOpen, config.RegistrationToken:
	default:
		return "", matrixerr.Forbidden("Registration is disabled on this server")
	}
	if err := s.Limits.Allow(ip, ""); err != nil {
		return "", err
	}
	uid, err := s.UserIDFor(username)
	if err != nil {
		return "", err
	}
	if err := s.Limits.Allow("", uid); err != nil {
		return "", err
	}
	if err := CheckPasswordPolicy(s.Config.Password, password); err != nil {
		return "", err
	}
	if taken, err := s.userExists(ctx, s.Store.R, uid); err != nil {
		return "", err
	} else if taken {
		return "", errUserInUse()
	}
	if s.Config.Registration == config.RegistrationToken && !uia.ValidRegistrationToken(regToken) {
		return "", matrixerr.New(http.StatusUnauthorized, "M_FORBIDDEN", "Invalid registration token")
	}
	hash, err := s.Credentials.Hasher.Hash(password)
	if err != nil {
		return "", err
	}
	err = s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if s.Config.Registration == config.RegistrationToken {
			res, err := tx.NewUpdate().Model((*storage.RegistrationToken)(nil)).
				Set("completed = completed + 1").
				Where("token = ?", regToken).
				Where("expiry_ts IS NULL OR expiry_ts > ?", time.Now().UnixMilli()).
				Where("uses_allowed IS NULL OR pending + completed < uses_allowed").Exec(ctx)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return matrixerr.New(http.StatusUnauthorized, "M_FORBIDDEN", "Invalid registration token")
			}
		}
		if err := s.insertUser(ctx, tx, uid, hash, false); storage.IsUniqueViolation(err) {
			return errUserInUse()
		} else if err != nil {
			return err
		}
		return nil
	})
	return uid, err
}
