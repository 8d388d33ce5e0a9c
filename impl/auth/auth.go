// Package auth resolves access tokens to the user and device they belong to
// and carries the result (the Principal) through request contexts.
//
// # Token cache
//
// Every authenticated request resolves its token, so Cache keeps recently
// seen tokens in memory (keyed by the token's SHA-256, bounded in size) in
// front of DBAuthenticator. A revoked token must stop working at once in
// the process that revoked it and within one second in every other
// process (other servers on the same PostgreSQL, or the admin CLI on the
// same SQLite file). The design:
//
//   - Every revocation goes through devices.Core, which calls
//     PublishRevoked inside the revoking transaction, and, after commit,
//     its Revoked callback; the server wires that to Cache.Revoked, which
//     drops the entries at once (in this process).
//   - PublishRevoked makes the revocation visible to other processes as
//     part of the same transaction, so nothing is announced that did not
//     commit and nothing commits unannounced. On PostgreSQL it calls
//     pg_notify (delivered on commit) and every process LISTENs on a
//     dedicated connection. On SQLite it appends to the token_revocations
//     log, which every process polls for rows past its cursor (one writer
//     at a time means rows appear in sequence order, so the cursor never
//     skips one); rows older than an hour are pruned.
//   - Freshness watermark: the feed (listener or poller) records the
//     moment before each successful round trip (a ping on the LISTEN
//     connection, which delivers every notification committed before it;
//     a poll of the log). Cached entries are used only while that moment
//     is less than maxStale (800 ms) old. If the listener drops, the
//     database is unreachable or the process stalls, lookups go to the
//     database until the feed catches up, and the whole cache is flushed
//     when it does, since notifications may have been lost meanwhile.
//   - A lookup that misses reads the database outside any lock; a
//     revocation that commits meanwhile could be overtaken by that stale
//     result. A generation counter, bumped before every invalidation and
//     checked under the shard lock on insert, drops such results.
//   - Entries are also re-validated after entryTTL (30 s), which bounds
//     the life of a token deleted behind Myelin's back (manual SQL).
//
// Unknown tokens are never cached: a token issued a moment later must work.
package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Principal is the authenticated caller of a client-server request.
type Principal struct {
	UserID    string
	DeviceID  string
	IsGuest   bool
	TokenHash string // hex SHA-256 of the access token
	// ExpiresTS is when the access token expires (Unix ms; 0: never).
	ExpiresTS int64
	// Account flags (migration 20261205000401). A change of any of them
	// is published like a revocation of the user's tokens, so cached
	// principals never show stale flags for more than a second.
	Admin     bool
	Locked    bool
	Suspended bool
	// AppService is the id of the application service making the request
	// as UserID (identity assertion, impl/appservice); "" for a user's own
	// access token. DeviceID is then the asserted device, or "" for none.
	AppService string
}

// Expired reports whether the principal's token has expired at now (Unix
// ms).
func (p *Principal) Expired(nowMS int64) bool { return p.ExpiresTS != 0 && nowMS >= p.ExpiresTS }

// ErrExpired answers an expired access token: 401 M_UNKNOWN_TOKEN with
// soft_logout true (the device survives; the client refreshes or logs in
// again with the same device).
func ErrExpired() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN",
		Message: "Access token has expired", Extra: map[string]any{"soft_logout": true}}
}

// ErrLocked answers every request but logout of a locked account.
func ErrLocked() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusUnauthorized, Code: "M_USER_LOCKED",
		Message: "This account has been locked", Extra: map[string]any{"soft_logout": true}}
}

type ctxKey struct{}

type ipKey struct{}

// WithClientIP returns ctx carrying the client's address (echo's RealIP:
// X-Forwarded-For only from trusted proxies).
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, ipKey{}, ip)
}

// ClientIP is the client's address of the request ctx belongs to ("" outside
// a request).
func ClientIP(ctx context.Context) string {
	ip, _ := ctx.Value(ipKey{}).(string)
	return ip
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the Principal of an authenticated request.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// MustFromContext is FromContext for handlers of operations the spec marks
// as requiring an access token (the auth middleware has run).
func MustFromContext(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, matrixerr.MissingToken()
	}
	return p, nil
}

// Authenticator turns an access token into a Principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// DBAuthenticator looks tokens up in the database.
type DBAuthenticator struct {
	Store *storage.Store
}

// Authenticate implements Authenticator. Unknown tokens and tokens of
// deactivated accounts answer 401 M_UNKNOWN_TOKEN, expired ones the same
// with soft_logout true.
func (a *DBAuthenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	p, err := a.lookup(ctx, tokens.HashToken(token))
	if err == nil && p.Expired(time.Now().UnixMilli()) {
		return Principal{}, ErrExpired()
	}
	return p, err
}

// lookup resolves a token hash. An expired token is returned as found
// (callers check Expired). The first use of a token issued by a refresh
// consumes the refresh token that was refreshed (see impl/sessions).
func (a *DBAuthenticator) lookup(ctx context.Context, hash tokens.Hash) (Principal, error) {
	h := hash.String()
	var row struct {
		UserID        string  `bun:"user_id"`
		DeviceID      string  `bun:"device_id"`
		IsGuest       bool    `bun:"is_guest"`
		ExpiresTS     *int64  `bun:"expires_ts"`
		RetireRefresh *string `bun:"retire_refresh"`
		Admin         bool    `bun:"admin"`
		Locked        bool    `bun:"locked"`
		Suspended     bool    `bun:"suspended"`
	}
	err := a.Store.R.NewSelect().
		TableExpr("access_tokens AS t").
		ColumnExpr("t.user_id, t.device_id, u.is_guest, t.expires_ts, t.retire_refresh, u.admin, u.locked, u.suspended").
		Join("JOIN users AS u ON u.user_id = t.user_id").
		Where("t.token_hash = ?", h).
		Where("u.deactivated = ?", false).
		Scan(ctx, &row)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, matrixerr.UnknownToken()
	}
	if err != nil {
		return Principal{}, err
	}
	p := Principal{UserID: row.UserID, DeviceID: row.DeviceID, IsGuest: row.IsGuest, TokenHash: h,
		Admin: row.Admin, Locked: row.Locked, Suspended: row.Suspended}
	if row.ExpiresTS != nil {
		p.ExpiresTS = *row.ExpiresTS
	}
	if row.RetireRefresh != nil && !p.Expired(time.Now().UnixMilli()) {
		if err := a.retire(ctx, h, *row.RetireRefresh); err != nil {
			return Principal{}, err
		}
	}
	return p, nil
}

// retire records the first use of the access token h: the refresh token
// refreshed to issue it (retire) is consumed, so presenting it again is
// taken for theft.
func (a *DBAuthenticator) retire(ctx context.Context, h, retire string) error {
	return a.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*storage.AccessToken)(nil)).Set("retire_refresh = NULL").
			Where("token_hash = ? AND retire_refresh IS NOT NULL", h).Exec(ctx)
		if err != nil {
			return fmt.Errorf("record first use of a refreshed token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // another request recorded it first
		}
		_, err = tx.NewUpdate().Model((*storage.RefreshToken)(nil)).Set("consumed_ts = ?", time.Now().UnixMilli()).
			Where("token_hash = ? AND consumed_ts IS NULL", retire).Exec(ctx)
		if err != nil {
			return fmt.Errorf("consume refreshed token: %w", err)
		}
		return nil
	})
}
