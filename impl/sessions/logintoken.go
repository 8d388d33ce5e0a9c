package sessions

import (
	"context"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
	"github.com/myelin-hs/myelin/impl/uia"
)

// LoginTokenPrefix starts every m.login.token.
const LoginTokenPrefix = "myl_login_"

// OpGetLoginToken binds UIA sessions of POST /login/get_token.
const OpGetLoginToken = "login/get_token"

// LoginToken is a single-use m.login.token.
type LoginToken struct {
	Token       string
	ExpiresInMS int64
	Expires     time.Time
}

// NewLoginToken issues a single-use m.login.token for userID (an active
// account), valid for Config.LoginTokenTTL. Only its hash is stored; login
// (impl/accounts) redeems it by deleting it.
func (s *Service) NewLoginToken(ctx context.Context, userID string) (LoginToken, error) {
	now := s.now()
	ttl := s.Config.LoginTokenTTL
	tok := tokens.NewRefreshLikeToken(LoginTokenPrefix, tokens.AccessTokenBytes)
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		return s.insertLoginToken(ctx, tx, userID, tok, now, ttl)
	})
	if err != nil {
		return LoginToken{}, err
	}
	return LoginToken{Token: tok, ExpiresInMS: ttl.Milliseconds(), Expires: now.Add(ttl)}, nil
}

func (s *Service) insertLoginToken(ctx context.Context, tx bun.IDB, userID, tok string, now time.Time, ttl time.Duration) error {
	if err := requireActive(ctx, tx, userID); err != nil {
		return err
	}
	// Expired tokens can never be redeemed: drop them here.
	if _, err := tx.NewDelete().Model((*storage.LoginToken)(nil)).Where("expires_ts <= ?", now.UnixMilli()).Exec(ctx); err != nil {
		return err
	}
	_, err := tx.NewInsert().Model(&storage.LoginToken{TokenHash: tokens.HashToken(tok).String(), UserID: userID,
		ExpiresTS: now.Add(ttl).UnixMilli()}).Exec(ctx)
	return err
}

// LoginTokensEnabled reports whether p may use POST /login/get_token: the
// server allows it (get_login_token) and p is not a guest (who has no
// password to authenticate with).
func (s *Service) LoginTokensEnabled(p auth.Principal) bool {
	return s.Config.GetLoginToken && s.Config.LegacyAuth() && !p.IsGuest
}

// GetLoginToken answers POST /login/get_token: after m.login.password
// user-interactive auth (always asked anew: a finished session is never
// reused), rate limited per account across processes, a single-use
// login token for the caller.
func (s *Service) GetLoginToken(ctx context.Context, p auth.Principal, authDict map[string]any, ip string) (LoginToken, error) {
	if !s.Config.GetLoginToken || !s.Config.LegacyAuth() {
		return LoginToken{}, matrixerr.Unrecognized(http.StatusNotFound, "Logging in with a login token from an existing session is not enabled on this server")
	}
	if p.IsGuest {
		return LoginToken{}, matrixerr.New(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot generate login tokens")
	}
	if err := s.Limits.Allow(ip, p.UserID); err != nil {
		return LoginToken{}, err
	}
	req := uia.Request{Operation: OpGetLoginToken, UserID: p.UserID,
		Flows: []uia.Flow{{Stages: []string{uia.StagePassword}}}, Auth: authDict}
	res, err := s.UIA.Authenticate(ctx, req)
	if err != nil {
		return LoginToken{}, err
	}
	if res.Replay != nil {
		// Each token needs fresh consent: a new session.
		req.Auth = nil
		if _, err := s.UIA.Authenticate(ctx, req); err != nil {
			return LoginToken{}, err
		}
		return LoginToken{}, matrixerr.Forbidden("This authentication session was already used")
	}
	if err := s.Limits.AllowLoginToken(ctx, p.UserID); err != nil {
		return LoginToken{}, err
	}
	now := s.now()
	ttl := s.Config.LoginTokenTTL
	tok := tokens.NewRefreshLikeToken(LoginTokenPrefix, tokens.AccessTokenBytes)
	err = s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if err := s.insertLoginToken(ctx, tx, p.UserID, tok, now, ttl); err != nil {
			return err
		}
		// The session's stored answer is empty: the token is never kept.
		return s.UIA.Finish(ctx, tx, res.SessionID, struct{}{})
	})
	if err != nil {
		return LoginToken{}, err
	}
	return LoginToken{Token: tok, ExpiresInMS: ttl.Milliseconds(), Expires: now.Add(ttl)}, nil
}

// requireActive fails with 404 M_NOT_FOUND unless userID is an active
// account.
func requireActive(ctx context.Context, db bun.IDB, userID string) error {
	active, err := db.NewSelect().Model((*storage.User)(nil)).
		Where("user_id = ? AND deactivated = ?", userID, false).Exists(ctx)
	if err == nil && !active {
		err = matrixerr.NotFound("No active user " + userID)
	}
	return err
}
