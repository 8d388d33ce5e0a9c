// Package devices owns users' devices: creating them and binding access
// tokens to them (at most one live token per device), renaming and deleting
// them, recording where they were last seen, and the per-user device-list
// change stream that federation publishes.
//
// The functions taking a bun.IDB run inside the caller's transaction, so a
// device change and its stream row (and, through ChangeHooks, the
// federation outbox rows) commit together or not at all.
package devices

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Change is one entry of a user's device-list change stream.
type Change struct {
	UserID   string
	DeviceID string
	StreamID int64
	Deleted  bool
	// CrossSigning marks a change of the user's cross-signing keys:
	// DeviceID is then the changed key's public key (unpadded base64).
	CrossSigning bool
}

// ChangeHook runs inside the transaction that made the changes (all of one
// user, in stream order), e.g. to queue federation EDUs durably.
type ChangeHook func(ctx context.Context, tx bun.IDB, changes []Change) error

// Core holds what the device functions need.
type Core struct {
	Store *storage.Store
	Hooks []ChangeHook
	// Revoked is told, after commit, the hashes of access tokens that no
	// longer exist (token caches drop them at once). Optional. Other
	// processes learn of them through auth.PublishRevoked, which the
	// revoking functions call inside the transaction.
	Revoked func(ctx context.Context, tokenHashes []string)
	Now     func() time.Time
	// Seen buffers last-seen updates; reads show its newer values and
	// deletes drop them. Optional.
	Seen *LastSeen
}

func (c *Core) now() int64 {
	if c.Now != nil {
		return c.Now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// NotifyRevoked passes revoked token hashes to the Revoked callback.
func (c *Core) NotifyRevoked(ctx context.Context, hashes []string) {
	if c.Revoked != nil && len(hashes) > 0 {
		c.Revoked(ctx, hashes)
	}
}

// AppendChanges allocates consecutive stream ids for n changes of one user
// and records them. The allocation is an upsert-increment of the user's
// row in user_streams: the row lock (PostgreSQL) or the single writer
// (SQLite) makes ids gap-free and strictly increasing across processes.
func (c *Core) AppendChanges(ctx context.Context, tx bun.IDB, userID string, deviceIDs []string, deleted bool) ([]Change, error) {
	return c.appendChanges(ctx, tx, userID, deviceIDs, deleted, false)
}

// AppendCrossSigningChanges records that the user's cross-signing keys
// with these public keys changed: rows of the same stream (so clients see
// the user's identity change among device-list changes), marked
// CrossSigning, and passed to the hooks like device changes.
func (c *Core) AppendCrossSigningChanges(ctx context.Context, tx bun.IDB, userID string, keyIDs []string) ([]Change, error) {
	return c.appendChanges(ctx, tx, userID, keyIDs, false, true)
}

func (c *Core) appendChanges(ctx context.Context, tx bun.IDB, userID string, deviceIDs []string, deleted, crossSigning bool) ([]Change, error) {
	n := int64(len(deviceIDs))
	if n == 0 {
		return nil, nil
	}
	var last int64
	err := tx.NewRaw(
		"INSERT INTO user_streams (user_id, stream_id) VALUES (?, ?) "+
			"ON CONFLICT (user_id) DO UPDATE SET stream_id = user_streams.stream_id + ? RETURNING stream_id",
		userID, n, n).Scan(ctx, &last)
	if err != nil {
		return nil, fmt.Errorf("allocate stream ids: %w", err)
	}
	ts := c.now()
	rows := make([]storage.DeviceListChange, n)
	changes := make([]Change, n)
	for i, d := range deviceIDs {
		id := last - n + 1 + int64(i)
		rows[i] = storage.DeviceListChange{UserID: userID, StreamID: id, DeviceID: d, Deleted: deleted, CreatedTS: ts, CrossSigning: crossSigning}
		changes[i] = Change{UserID: userID, DeviceID: d, StreamID: id, Deleted: deleted, CrossSigning: crossSigning}
	}
	for start := 0; start < len(rows); start += 500 {
		end := min(start+500, len(rows))
		chunk := rows[start:end]
		if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
			return nil, fmt.Errorf("record device-list change: %w", err)
		}
	}
	for _, h := range c.Hooks {
		if err := h(ctx, tx, changes); err != nil {
			return nil, err
		}
	}
	return changes, nil
}

// Login is the result of binding a new access token to a device.
type Login struct {
	AccessToken string
	DeviceID    string
	Created     bool     // the device did not exist before
	Revoked     []string // hashes of the token(s) this replaced
}

// IssueToken binds a fresh access token to deviceID of userID, creating the
// device (with displayName and last-seen from this request) if it does not
// exist. An empty deviceID generates one. The device's previous token is
// revoked: there is at most one live token per device (seed 000). A
// client-chosen deviceID or displayName that breaks ValidateDeviceID or
// ValidateDisplayName is refused with its Matrix error.
func (c *Core) IssueToken(ctx context.Context, tx bun.IDB, userID, deviceID string, displayName *string, ip string) (Login, error) {
	now := c.now()
	created := false
	if deviceID != "" {
		if err := ValidateDeviceID(deviceID); err != nil {
			return Login{}, err
		}
	}
	if displayName != nil {
		if err := ValidateDisplayName(*displayName); err != nil {
			return Login{}, err
		}
	}
	var ipPtr *string
	if ip != "" {
		ipPtr = &ip
	}
	// Creating the device is the existence check, one statement fewer on
	// every login: a generated ID that is taken (47 random bits, so about
	// one in 10^14 per device the user has) is retried; a client's ID that
	// exists keeps its device and display name.
	dev := storage.Device{UserID: userID, DisplayName: displayName, LastSeenIP: ipPtr, LastSeenTS: &now, CreatedTS: now}
	for try := 0; ; try++ {
		dev.DeviceID = deviceID
		if deviceID == "" {
			if try == 10 {
				return Login{}, errors.New("could not allocate a device ID")
			}
			dev.DeviceID = tokens.NewDeviceID()
		}
		res, err := tx.NewInsert().Model(&dev).On("CONFLICT (user_id, device_id) DO NOTHING").Exec(ctx)
		if err != nil {
			return Login{}, fmt.Errorf("create device: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return Login{}, fmt.Errorf("create device: %w", err)
		}
		created = n == 1
		if created || deviceID != "" {
			break
		}
	}
	if created && deviceID != "" {
		// Verification treats cross-signing public keys as device IDs:
		// a new device must not take the ID of one of the user's.
		taken, err := tx.NewSelect().Model((*storage.CrossSigningKey)(nil)).
			Where("user_id = ? AND key_id = ?", userID, deviceID).Exists(ctx)
		if err != nil {
			return Login{}, err
		}
		if taken {
			return Login{}, matrixerr.InvalidParam("device_id is the public key of one of your cross-signing keys")
		}
	}
	deviceID = dev.DeviceID
	var old []string
	if !created {
		// Concurrent logins to one existing device (a client retrying)
		// take turns on its row: otherwise both find no token to revoke
		// and the second insert breaks the one-token-per-device index.
		// SQLite runs one writer at a time.
		if tx.Dialect().Name() == dialect.PG {
			if _, err := tx.NewSelect().Model((*storage.Device)(nil)).Column("device_id").
				Where("user_id = ? AND device_id = ?", userID, deviceID).For("UPDATE").Exec(ctx); err != nil {
				return Login{}, fmt.Errorf("lock device: %w", err)
			}
		}
		// A device that existed may hold a token (one at most): revoke it.
		err := tx.NewDelete().Model((*storage.AccessToken)(nil)).
			Where("user_id = ? AND device_id = ?", userID, deviceID).
			Returning("token_hash").Scan(ctx, &old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Login{}, fmt.Errorf("revoke previous token: %w", err)
		}
		if len(old) > 0 {
			if err := auth.PublishRevoked(ctx, tx, old); err != nil {
				return Login{}, err
			}
		}
		// And its refresh tokens: a login with a device ID invalidates every
		// token previously assigned to the device.
		if _, err := tx.NewDelete().Model((*storage.RefreshToken)(nil)).
			Where("user_id = ? AND device_id = ?", userID, deviceID).Exec(ctx); err != nil {
			return Login{}, fmt.Errorf("revoke previous refresh tokens: %w", err)
		}
		// And the OAuth 2.0 session the device may have been: a legacy login
		// makes it a legacy session (an OAuth grant records its own again).
		if _, err := tx.NewDelete().Model((*storage.OAuthSession)(nil)).
			Where("user_id = ? AND device_id = ?", userID, deviceID).Exec(ctx); err != nil {
			return Login{}, fmt.Errorf("end the device's oauth session: %w", err)
		}
	}
	tok := tokens.NewAccessToken()
	at := storage.AccessToken{TokenHash: tokens.HashToken(tok).String(), UserID: userID, DeviceID: deviceID, CreatedTS: now}
	if _, err := tx.NewInsert().Model(&at).Exec(ctx); err != nil {
		return Login{}, fmt.Errorf("store access token: %w", err)
	}
	if created {
		// Last: taking the next position of the user's device-list stream
		// locks its row until commit, so concurrent logins of one user
		// wait on each other only for the statements from here on.
		if _, err := c.AppendChanges(ctx, tx, userID, []string{deviceID}, false); err != nil {
			return Login{}, err
		}
	}
	return Login{AccessToken: tok, DeviceID: deviceID, Created: created, Revoked: old}, nil
}

// DeleteDevices deletes the listed devices of userID (their tokens and keys
// go with them through ON DELETE CASCADE) and records one stream change per
// device that existed. Unknown IDs are ignored. It returns the IDs deleted
// and the hashes of the tokens revoked.
func (c *Core) DeleteDevices(ctx context.Context, tx bun.IDB, userID string, deviceIDs []string) (deleted []string, revoked []string, err error) {
	for start := 0; start < len(deviceIDs); start += 1000 {
		chunk := deviceIDs[start:min(start+1000, len(deviceIDs))]
		var toks []string
		if err := tx.NewSelect().Model((*storage.AccessToken)(nil)).Column("token_hash").
			Where("user_id = ?", userID).Where("device_id IN (?)", bun.In(chunk)).Scan(ctx, &toks); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, nil, err
		}
		if err := auth.PublishRevoked(ctx, tx, toks); err != nil {
			return nil, nil, err
		}
		revoked = append(revoked, toks...)
		var gone []string
		err := tx.NewDelete().Model((*storage.Device)(nil)).
			Where("user_id = ?", userID).Where("device_id IN (?)", bun.In(chunk)).
			Returning("device_id").Scan(ctx, &gone)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, nil, fmt.Errorf("delete devices: %w", err)
		}
		deleted = append(deleted, gone...)
	}
	if _, err := c.AppendChanges(ctx, tx, userID, deleted, true); err != nil {
		return nil, nil, err
	}
	return deleted, revoked, nil
}

// DeleteAllDevices deletes every device of userID except keep (if not "").
func (c *Core) DeleteAllDevices(ctx context.Context, tx bun.IDB, userID, keep string) (deleted []string, revoked []string, err error) {
	var ids []string
	q := tx.NewSelect().Model((*storage.Device)(nil)).Column("device_id").Where("user_id = ?", userID)
	if keep != "" {
		q = q.Where("device_id <> ?", keep)
	}
	if err := q.Order("device_id").Scan(ctx, &ids); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, err
	}
	return c.DeleteDevices(ctx, tx, userID, ids)
}
