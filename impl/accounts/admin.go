package accounts

// Admin operations behind the `myelin user` and `myelin registration-token`
// commands. They work on the database directly, so they also work while
// servers run on it; they bypass the registration mode and UIA.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
	"github.com/myelin-hs/myelin/impl/uia"
)

func errNoSuchUser(userID string) *matrixerr.Error {
	return matrixerr.NotFound("No active user " + userID)
}

// requireActive fails unless userID is an active account.
func requireActive(ctx context.Context, db bun.IDB, userID string) error {
	active, err := db.NewSelect().Model((*storage.User)(nil)).
		Where("user_id = ? AND deactivated = ?", userID, false).Exists(ctx)
	if err == nil && !active {
		err = errNoSuchUser(userID)
	}
	return err
}

// AdminUserID resolves a command-line USER (a localpart or a full user ID)
// to a user ID of this server.
func (s *Service) AdminUserID(user string) string {
	return credentials.NormalizeUserID(user, s.Config.ServerName)
}

// CreateUser registers user (a localpart or a full user ID of this server)
// with password, whatever the registration mode. The same username and
// password rules as POST /register apply.
func (s *Service) CreateUser(ctx context.Context, user, password string) (string, error) {
	if full, ok := strings.CutPrefix(user, "@"); ok {
		local, server, _ := strings.Cut(full, ":")
		if !strings.EqualFold(server, s.Config.ServerName) {
			return "", errInvalidUsername("user " + user + " is not of this server (" + s.Config.ServerName + ")")
		}
		user = local
	}
	uid, err := s.UserIDFor(user)
	if err != nil {
		return "", err
	}
	if err := CheckPasswordPolicy(s.Config.Password, password); err != nil {
		return "", err
	}
	hash, err := s.Credentials.Hasher.Hash(password)
	if err != nil {
		return "", err
	}
	err = s.insertUser(ctx, s.Store.DB, uid, hash, false)
	if storage.IsUniqueViolation(err) {
		return "", errUserInUse()
	}
	return uid, err
}

// SetPassword sets userID's password; logout also deletes all its devices.
func (s *Service) SetPassword(ctx context.Context, userID, password string, logout bool) error {
	if err := CheckPasswordPolicy(s.Config.Password, password); err != nil {
		return err
	}
	hash, err := s.Credentials.Hasher.Hash(password)
	if err != nil {
		return err
	}
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		return s.setPassword(ctx, tx, userID, hash, logout, "")
	})
}

// DeactivateUser deactivates userID as POST /account/deactivate does
// (erase as its erase).
func (s *Service) DeactivateUser(ctx context.Context, userID string, erase bool) error {
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		return s.deactivate(ctx, tx, userID, erase, "")
	})
}

// UserInfo is one line of `myelin user list`.
type UserInfo struct {
	UserID      string `bun:"user_id"`
	IsGuest     bool   `bun:"is_guest"`
	Deactivated bool   `bun:"deactivated"`
	CreatedTS   int64  `bun:"created_ts"`
	Devices     int    `bun:"devices"`
}

// ListUsers lists every account, in user ID order.
func (s *Service) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var out []UserInfo
	err := s.Store.R.NewSelect().TableExpr("users AS u").
		ColumnExpr("u.user_id, u.is_guest, u.deactivated, u.created_ts").
		ColumnExpr("(SELECT COUNT(*) FROM devices AS d WHERE d.user_id = u.user_id) AS devices").
		OrderExpr("u.user_id").Scan(ctx, &out)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return out, err
}

// NewLoginToken issues a single-use m.login.token for userID, valid for
// the configured login_token_ttl (the same kind as POST /login/get_token
// issues). Only its hash is stored.
func (s *Service) NewLoginToken(ctx context.Context, userID string) (string, time.Time, error) {
	lt, err := s.Sessions.NewLoginToken(ctx, userID)
	return lt.Token, lt.Expires, err
}

// AddThreePID binds a 3PID (medium "email" or "msisdn") to userID, so it
// can be used to log in without an identity server.
func (s *Service) AddThreePID(ctx context.Context, userID, medium, address string) error {
	if medium != "email" && medium != "msisdn" {
		return matrixerr.InvalidParam("medium must be email or msisdn")
	}
	address = credentials.CanonicalAddress(medium, address)
	if address == "" {
		return matrixerr.InvalidParam("address must not be empty")
	}
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if err := requireActive(ctx, tx, userID); err != nil {
			return err
		}
		_, err := tx.NewInsert().Model(&storage.ThreePID{Medium: medium, Address: address, UserID: userID, AddedTS: time.Now().UnixMilli()}).Exec(ctx)
		if storage.IsUniqueViolation(err) {
			return matrixerr.New(400, "M_THREEPID_IN_USE", fmt.Sprintf("%s %s is already bound to an account", medium, address))
		}
		return err
	})
}

// CreateRegistrationToken stores a registration token: token ("" to
// generate one), an optional use limit and an optional expiry.
func (s *Service) CreateRegistrationToken(ctx context.Context, token string, uses *int64, expires *time.Time) (storage.RegistrationToken, error) {
	if token == "" {
		token = tokens.NewRefreshLikeToken("", tokens.MinTokenBytes)
	}
	if !uia.ValidRegistrationToken(token) {
		return storage.RegistrationToken{}, matrixerr.InvalidParam("a registration token is 1 to 64 of A-Z a-z 0-9 . _ ~ -")
	}
	if uses != nil && *uses < 1 {
		return storage.RegistrationToken{}, matrixerr.InvalidParam("uses must be at least 1")
	}
	rt := storage.RegistrationToken{Token: token, UsesAllowed: uses, CreatedTS: time.Now().UnixMilli()}
	if expires != nil {
		ms := expires.UnixMilli()
		rt.ExpiryTS = &ms
	}
	_, err := s.Store.DB.NewInsert().Model(&rt).Exec(ctx)
	if storage.IsUniqueViolation(err) {
		return rt, matrixerr.InvalidParam("registration token " + token + " already exists")
	}
	return rt, err
}

// ListRegistrationTokens lists every registration token, oldest first.
func (s *Service) ListRegistrationTokens(ctx context.Context) ([]storage.RegistrationToken, error) {
	var out []storage.RegistrationToken
	err := s.Store.R.NewSelect().Model(&out).Order("created_ts", "token").Scan(ctx)
	return out, err
}

// DeleteRegistrationToken deletes token; sessions that reserved a use of
// it can no longer finish counting it (their registration still completes).
func (s *Service) DeleteRegistrationToken(ctx context.Context, token string) error {
	res, err := s.Store.DB.NewDelete().Model((*storage.RegistrationToken)(nil)).Where("token = ?", token).Exec(ctx)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return matrixerr.NotFound("no registration token " + token)
	}
	return nil
}
