package sessions

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// RefreshTokenPrefix starts every refresh token.
const RefreshTokenPrefix = "myl_refresh_"

// RefreshKeep is how long a consumed refresh token is remembered, so that
// presenting it again is recognised as theft rather than as an unknown
// token.
const RefreshKeep = 7 * 24 * time.Hour

// Tokens are the tokens of a login, registration or refresh that asked for
// a refresh token.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	// ExpiresInMS is the access token's lifetime.
	ExpiresInMS int64
}

// ErrRefreshUnknown answers an unknown refresh token, or one whose
// session was revoked: the client is logged out.
func ErrRefreshUnknown() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN",
		Message: "Unknown or revoked refresh token", Extra: map[string]any{"soft_logout": false}}
}

// errRefreshReused answers a consumed refresh token (its session is now
// revoked).
func errRefreshReused() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN",
		Message: "Refresh token was already used; the session is revoked", Extra: map[string]any{"soft_logout": false}}
}

// errRefreshRaced answers the loser of two concurrent refreshes.
func errRefreshRaced() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN",
		Message: "Refresh token was used by a concurrent request", Extra: map[string]any{"soft_logout": true}}
}

// AttachRefresh makes the access token just issued to deviceID of userID
// (inside tx, e.g. by devices.Core.IssueToken) expire after the configured
// lifetime and issues a refresh token for the device.
func (s *Service) AttachRefresh(ctx context.Context, tx bun.IDB, userID, deviceID, accessToken string) (Tokens, error) {
	now := s.now()
	lifetime := s.Config.AccessTokenLifetime
	exp := now.Add(lifetime).UnixMilli()
	res, err := tx.NewUpdate().Model((*storage.AccessToken)(nil)).Set("expires_ts = ?", exp).
		Where("token_hash = ? AND user_id = ? AND device_id = ?", tokens.HashToken(accessToken).String(), userID, deviceID).Exec(ctx)
	if err != nil {
		return Tokens{}, fmt.Errorf("set access token expiry: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return Tokens{}, errors.New("sessions: AttachRefresh: no such access token")
	}
	rt := tokens.NewRefreshLikeToken(RefreshTokenPrefix, tokens.AccessTokenBytes)
	row := storage.RefreshToken{TokenHash: tokens.HashToken(rt).String(), UserID: userID, DeviceID: deviceID, CreatedTS: now.UnixMilli()}
	if _, err := tx.NewInsert().Model(&row).Exec(ctx); err != nil {
		return Tokens{}, fmt.Errorf("store refresh token: %w", err)
	}
	return Tokens{AccessToken: accessToken, RefreshToken: rt, ExpiresInMS: lifetime.Milliseconds()}, nil
}

// Refresh answers POST /refresh (see the package comment for the rules).
func (s *Service) Refresh(ctx context.Context, refreshToken, ip string) (Tokens, error) {
	if err := s.Limits.Allow(ip, ""); err != nil {
		return Tokens{}, err
	}
	if refreshToken == "" {
		return Tokens{}, ErrRefreshUnknown()
	}
	h := tokens.HashToken(refreshToken).String()
	// What the successor was before this request: the transaction tells a
	// retry (which saw the successor) from a concurrent duplicate (which
	// did not).
	var seen storage.RefreshToken
	err := s.Store.R.NewSelect().Model(&seen).Column("next_hash").Where("token_hash = ?", h).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return Tokens{}, ErrRefreshUnknown()
	}
	if err != nil {
		return Tokens{}, err
	}
	if s.afterSeen != nil {
		s.afterSeen()
	}
	var out Tokens
	var failure error
	err = s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var rt storage.RefreshToken
		q := tx.NewSelect().Model(&rt).Where("token_hash = ?", h)
		if s.Store.Dialect == storage.Postgres {
			q = q.For("UPDATE")
		}
		err := q.Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrRefreshUnknown()
		}
		if err != nil {
			return nil, err
		}
		if rt.ConsumedTS != nil {
			// Reuse of a consumed token: revoke the session, and commit
			// that, then answer the error.
			failure = errRefreshReused()
			return s.revokeDeviceTokens(ctx, tx, rt.UserID, rt.DeviceID)
		}
		if !sameHash(rt.NextHash, seen.NextHash) {
			return nil, errRefreshRaced()
		}
		var locked bool
		if err := tx.NewSelect().Model((*storage.User)(nil)).Column("locked").
			Where("user_id = ?", rt.UserID).Scan(ctx, &locked); err != nil {
			return nil, err
		}
		if locked {
			return nil, auth.ErrLocked()
		}
		now := s.now()
		nowMS := now.UnixMilli()
		// Using R consumes its predecessor.
		if rt.PrevHash != nil {
			if _, err := tx.NewUpdate().Model((*storage.RefreshToken)(nil)).Set("consumed_ts = ?", nowMS).
				Where("token_hash = ? AND consumed_ts IS NULL", *rt.PrevHash).Exec(ctx); err != nil {
				return nil, fmt.Errorf("consume previous refresh token: %w", err)
			}
		}
		// A successor nobody used (the client lost the answer) is dropped.
		if rt.NextHash != nil {
			if _, err := tx.NewDelete().Model((*storage.RefreshToken)(nil)).
				Where("token_hash = ?", *rt.NextHash).Exec(ctx); err != nil {
				return nil, fmt.Errorf("drop unused refresh token: %w", err)
			}
		}
		// The device's access token is replaced: one live token a device.
		var revoked []string
		if err := tx.NewDelete().Model((*storage.AccessToken)(nil)).
			Where("user_id = ? AND device_id = ?", rt.UserID, rt.DeviceID).
			Returning("token_hash").Scan(ctx, &revoked); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("revoke previous access token: %w", err)
		}
		if err := auth.PublishRevoked(ctx, tx, revoked); err != nil {
			return nil, err
		}
		at := tokens.NewAccessToken()
		exp := now.Add(s.Config.AccessTokenLifetime).UnixMilli()
		if _, err := tx.NewInsert().Model(&storage.AccessToken{TokenHash: tokens.HashToken(at).String(),
			UserID: rt.UserID, DeviceID: rt.DeviceID, CreatedTS: nowMS, ExpiresTS: &exp, RetireRefresh: &h}).Exec(ctx); err != nil {
			return nil, fmt.Errorf("store access token: %w", err)
		}
		next := tokens.NewRefreshLikeToken(RefreshTokenPrefix, tokens.AccessTokenBytes)
		nh := tokens.HashToken(next).String()
		if _, err := tx.NewInsert().Model(&storage.RefreshToken{TokenHash: nh, UserID: rt.UserID, DeviceID: rt.DeviceID,
			PrevHash: &h, CreatedTS: nowMS}).Exec(ctx); err != nil {
			return nil, fmt.Errorf("store refresh token: %w", err)
		}
		if _, err := tx.NewUpdate().Model((*storage.RefreshToken)(nil)).Set("next_hash = ?", nh).
			Where("token_hash = ?", h).Exec(ctx); err != nil {
			return nil, err
		}
		if _, err := tx.NewDelete().Model((*storage.RefreshToken)(nil)).
			Where("user_id = ? AND device_id = ?", rt.UserID, rt.DeviceID).
			Where("consumed_ts < ?", now.Add(-RefreshKeep).UnixMilli()).Exec(ctx); err != nil {
			return nil, err
		}
		out = Tokens{AccessToken: at, RefreshToken: next, ExpiresInMS: s.Config.AccessTokenLifetime.Milliseconds()}
		return revoked, nil
	})
	if err == nil && failure != nil {
		err = failure
	}
	if err != nil {
		return Tokens{}, err
	}
	return out, nil
}

// revokeDeviceTokens deletes every access and refresh token of a device
// (the device stays) and returns the access tokens' hashes.
func (s *Service) revokeDeviceTokens(ctx context.Context, tx bun.IDB, userID, deviceID string) ([]string, error) {
	var revoked []string
	if err := tx.NewDelete().Model((*storage.AccessToken)(nil)).
		Where("user_id = ? AND device_id = ?", userID, deviceID).
		Returning("token_hash").Scan(ctx, &revoked); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err := auth.PublishRevoked(ctx, tx, revoked); err != nil {
		return nil, err
	}
	if _, err := tx.NewDelete().Model((*storage.RefreshToken)(nil)).
		Where("user_id = ? AND device_id = ?", userID, deviceID).Exec(ctx); err != nil {
		return nil, err
	}
	return revoked, nil
}

func sameHash(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
