package accounts

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/appservice"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// LoginAppService is the login and registration type of application
// services.
const LoginAppService = "m.login.application_service"

// appServiceLimit applies the rate limits to an appservice's request only
// when its registration says rate_limited: true.
func (s *Service) appServiceLimit(reg *appservice.Registration, ip, account string) error {
	if !reg.Limited() {
		return nil
	}
	return s.Limits.Allow(ip, account)
}

// checkExclusive refuses a user ID that an application service claims
// exclusively (400 M_EXCLUSIVE): only that appservice registers it.
func (s *Service) checkExclusive(userID string) error {
	if s.AppServices.ExclusiveOwner(userID) != nil {
		return appservice.ErrExclusive("This user ID is reserved by an application service")
	}
	return nil
}

// RegisterAppService registers a user for the application service reg
// (POST /register with m.login.application_service): no user-interactive
// auth and whatever the registration mode, a passwordless account, in the
// appservice's namespaces only (400 M_EXCLUSIVE otherwise). With
// inhibit_login no device or token is made.
func (s *Service) RegisterAppService(ctx context.Context, reg *appservice.Registration, req RegisterRequest) (LoginResult, error) {
	if req.Username == nil || *req.Username == "" {
		return LoginResult{}, matrixerr.MissingParam("username is required to register a user for an application service")
	}
	uid, err := s.UserIDFor(*req.Username)
	if err != nil {
		return LoginResult{}, err
	}
	if err := s.appServiceLimit(reg, req.IP, uid); err != nil {
		return LoginResult{}, err
	}
	if !reg.InNamespace(uid) {
		return LoginResult{}, appservice.ErrExclusive("This user ID is not in the application service's namespaces")
	}
	if other := s.AppServices.ExclusiveOwner(uid); other != nil && other.ID != reg.ID {
		return LoginResult{}, appservice.ErrExclusive("This user ID is reserved by another application service")
	}
	if err := checkDevice(req.DeviceID, req.InitialDeviceDisplayName); err != nil {
		return LoginResult{}, err
	}
	var out LoginResult
	err = s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		err := s.insertUser(ctx, tx, uid, "", false)
		if storage.IsUniqueViolation(err) {
			return nil, errUserInUse()
		}
		if err != nil {
			return nil, err
		}
		if req.InhibitLogin {
			out = LoginResult{UserID: uid}
			return nil, nil
		}
		var revoked []string
		out, revoked, err = s.issue(ctx, tx, uid, deref(req.DeviceID), req.InitialDeviceDisplayName, req.IP, req.RefreshToken)
		return revoked, err
	})
	return out, err
}

// LoginAppServiceUser logs in as a user of the application service reg
// (POST /login with m.login.application_service, v1.2; since v1.10 only
// with a valid as_token): the user must be in its namespaces (400
// M_EXCLUSIVE) and registered (403 M_FORBIDDEN). A new access token is
// bound to a device as for any login.
func (s *Service) LoginAppServiceUser(ctx context.Context, reg *appservice.Registration, req LoginRequest) (LoginResult, error) {
	user := req.User
	if req.Identifier != nil {
		if t, _ := req.Identifier["type"].(string); t != "m.id.user" {
			return LoginResult{}, matrixerr.New(400, "M_UNKNOWN", "m.login.application_service takes an m.id.user identifier")
		}
		user, _ = req.Identifier["user"].(string)
	}
	if user == "" {
		return LoginResult{}, matrixerr.MissingParam("identifier.user is required")
	}
	uid := user
	if !strings.HasPrefix(uid, "@") {
		var err error
		if uid, err = s.UserIDFor(user); err != nil {
			return LoginResult{}, err
		}
	}
	if err := s.appServiceLimit(reg, req.IP, uid); err != nil {
		return LoginResult{}, err
	}
	if !reg.InNamespace(uid) {
		return LoginResult{}, appservice.ErrExclusive("This user ID is not in the application service's namespaces")
	}
	if err := checkDevice(req.DeviceID, req.InitialDeviceDisplayName); err != nil {
		return LoginResult{}, err
	}
	if uid == reg.Sender {
		if err := appservice.EnsureSender(ctx, s.Store, reg); err != nil {
			return LoginResult{}, err
		}
	}
	var out LoginResult
	err := s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var u storage.User
		err := tx.NewSelect().Model(&u).Column("deactivated", "locked").Where("user_id = ?", uid).Scan(ctx)
		if err != nil || u.Deactivated {
			if err == nil || errors.Is(err, sql.ErrNoRows) {
				return nil, matrixerr.Forbidden("This user is not registered")
			}
			return nil, err
		}
		if u.Locked {
			return nil, auth.ErrLocked()
		}
		var revoked []string
		out, revoked, err = s.issue(ctx, tx, uid, deref(req.DeviceID), req.InitialDeviceDisplayName, req.IP, req.RefreshToken)
		return revoked, err
	})
	return out, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
