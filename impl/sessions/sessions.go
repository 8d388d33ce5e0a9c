// Package sessions is the domain of sessions and account moderation:
// refresh tokens (Matrix v1.3) and expiring access tokens, single-use
// login tokens (the admin CLI's and POST /login/get_token, v1.7), locked
// and suspended accounts and the server-admin flag (v1.12–v1.18), the
// admin lookup of a user's sessions (whois), and the capabilities a caller
// has.
//
// # Refresh tokens
//
// A client that asks for a refresh token at login or registration gets an
// access token that expires after Config.AccessTokenLifetime and a
// refresh token (both stored only as SHA-256 hashes). POST /refresh with
// refresh token R, in one transaction that locks R's row:
//
//   - R unknown: 401 M_UNKNOWN_TOKEN.
//   - R consumed (see below): the token was stolen or replayed: every
//     access and refresh token of the device is revoked (the device and
//     its keys stay), 401 M_UNKNOWN_TOKEN without soft_logout.
//   - Otherwise the device's access token is replaced by a new one
//     (A', expiring) and a successor R' is issued. R stays valid until A'
//     or R' is first used, so a client that lost the answer can refresh
//     again with R (which replaces the unused A' and R'); the first use of
//     A' (impl/auth) or of R' consumes R.
//   - Two concurrent refreshes with one R: exactly one wins. Each request
//     reads R's successor before its transaction and compares under the
//     row lock; a request that finds a successor it did not see was
//     overtaken and gets 401 M_UNKNOWN_TOKEN with soft_logout true (its
//     client may retry, or log in again keeping its state).
//
// Consumed refresh tokens are kept for RefreshKeep (to recognise reuse)
// and deleted with their device.
//
// # Locks, suspensions and admins
//
// The flags live on the users row. A change is published to every
// process's token cache as a revocation of the user's access tokens
// (auth.PublishRevoked in the same transaction), so no process serves a
// stale flag for more than a second; the tokens themselves stay valid.
// Gate answers locked accounts; operations the spec lets suspended users
// not do call NotSuspended.
package sessions

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/uia"
)

// Service holds what the session functions need.
type Service struct {
	Store   *storage.Store
	Config  *config.Config
	Devices *devices.Core
	UIA     *uia.Engine
	// Limits may be nil (rate limits off).
	Limits *ratelimit.Limiter
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time

	// afterSeen runs in Refresh between reading the successor and the
	// transaction (tests line concurrent refreshes up there).
	afterSeen func()
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ErrSuspended answers an action a suspended account may not take.
func ErrSuspended() *matrixerr.Error {
	return matrixerr.New(http.StatusForbidden, "M_USER_SUSPENDED", "You cannot perform this action while suspended.")
}

// Gate decides whether an authenticated request of p may proceed: a
// locked account gets 401 M_USER_LOCKED (soft_logout true) on every
// request but logout (logout reports whether the request is POST /logout
// or /logout/all).
func Gate(p auth.Principal, logout bool) error {
	if p.Locked && !logout {
		return auth.ErrLocked()
	}
	return nil
}

// NotSuspended refuses an action of a suspended account (403
// M_USER_SUSPENDED). In Myelin's slice that is removing a 3PID (the spec
// lets suspended users add or change admin contacts, not remove them).
func NotSuspended(p auth.Principal) error {
	if p.Suspended {
		return ErrSuspended()
	}
	return nil
}

// userTokenHashes returns the hashes of every access token of userID.
func userTokenHashes(ctx context.Context, db bun.IDB, userID string) ([]string, error) {
	var hs []string
	err := db.NewSelect().Model((*storage.AccessToken)(nil)).Column("token_hash").
		Where("user_id = ?", userID).Scan(ctx, &hs)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return hs, err
}

// commitRevoking runs fn in one transaction and, once it has committed,
// tells this process's token cache about the hashes fn returned (other
// processes learn of them through auth.PublishRevoked inside fn).
func (s *Service) commitRevoking(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) ([]string, error)) error {
	var hashes []string
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var err error
		hashes, err = fn(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	if s.Devices != nil {
		s.Devices.NotifyRevoked(ctx, hashes)
	}
	return nil
}
