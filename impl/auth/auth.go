// Package auth resolves access tokens to the user and device they belong to
// and carries the result (the Principal) through request contexts.
package auth

import (
	"context"
	"database/sql"
	"errors"

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
// deactivated accounts answer 401 M_UNKNOWN_TOKEN.
func (a *DBAuthenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	h := tokens.HashToken(token).String()
	var row struct {
		UserID   string `bun:"user_id"`
		DeviceID string `bun:"device_id"`
		IsGuest  bool   `bun:"is_guest"`
	}
	err := a.Store.R.NewSelect().
		TableExpr("access_tokens AS t").
		ColumnExpr("t.user_id, t.device_id, u.is_guest").
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
	return Principal{UserID: row.UserID, DeviceID: row.DeviceID, IsGuest: row.IsGuest, TokenHash: h}, nil
}
