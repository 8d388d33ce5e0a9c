package devices

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Limits on client-supplied values.
const (
	// MaxDeviceIDBytes bounds a client-chosen device ID (generated ones are
	// tokens.DeviceIDLen uppercase letters).
	MaxDeviceIDBytes = 512
	// MaxDisplayNameChars bounds a device display name, in characters.
	MaxDisplayNameChars = 100
)

// ValidateDeviceID checks a client-chosen device ID (login, register, the
// device endpoints): 1 to MaxDeviceIDBytes bytes without control
// characters. Control characters are refused because a NUL cannot be
// stored in PostgreSQL text and none belongs in an identifier.
func ValidateDeviceID(id string) error {
	if id == "" {
		return matrixerr.InvalidParam("device_id must not be empty")
	}
	if len(id) > MaxDeviceIDBytes {
		return matrixerr.InvalidParam(fmt.Sprintf("device_id is longer than %d bytes", MaxDeviceIDBytes))
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return matrixerr.InvalidParam("device_id contains a control character")
		}
	}
	return nil
}

// ValidateDisplayName checks a device display name: at most
// MaxDisplayNameChars characters (400 M_TOO_LARGE) and no NUL (which
// PostgreSQL cannot store).
func ValidateDisplayName(name string) error {
	if utf8.RuneCountInString(name) > MaxDisplayNameChars {
		return matrixerr.New(http.StatusBadRequest, "M_TOO_LARGE",
			fmt.Sprintf("display_name is longer than %d characters", MaxDisplayNameChars))
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return matrixerr.InvalidParam("display_name contains a NUL character")
		}
	}
	return nil
}

func deviceNotFound() error { return matrixerr.NotFound("Unknown device") }

// listDevices reads a user's devices for List, prepared (it serves every
// GET /devices), with only the columns shown: scanning is most of the
// cost of a long list.
var listDevices = storage.NewRead("list devices", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.Device)(nil)).Column("device_id", "display_name", "last_seen_ip", "last_seen_ts").
		Where("user_id = ?", p.Next())
})

// List returns userID's devices, most recently seen first (never-seen
// devices last, ties by device ID). Last-seen values still buffered in
// this process are shown, as Synapse does.
func (c *Core) List(ctx context.Context, userID string) ([]storage.Device, error) {
	var ds []storage.Device
	if err := c.Store.ScanRead(ctx, listDevices, &ds, userID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	for i := range ds {
		ds[i].UserID = userID
		c.Seen.overlay(&ds[i])
	}
	slices.SortFunc(ds, func(a, b storage.Device) int {
		switch x, y := a.LastSeenTS, b.LastSeenTS; {
		case x != nil && y != nil && *x != *y:
			return cmp.Compare(*y, *x)
		case (x == nil) != (y == nil):
			if x != nil {
				return -1
			}
			return 1
		}
		return strings.Compare(a.DeviceID, b.DeviceID)
	})
	return ds, nil
}

// Get returns one of userID's devices; another user's device is as
// unknown as a device that never existed (404 M_NOT_FOUND).
func (c *Core) Get(ctx context.Context, userID, deviceID string) (storage.Device, error) {
	var d storage.Device
	if ValidateDeviceID(deviceID) != nil {
		return d, deviceNotFound()
	}
	err := c.Store.R.NewSelect().Model(&d).Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return d, deviceNotFound()
	}
	if err != nil {
		return d, err
	}
	c.Seen.overlay(&d)
	return d, nil
}

// Rename sets the display name of one of userID's devices and records the
// change in the device-list stream in the same transaction. A nil name
// changes nothing but still answers 404 for an unknown device; renaming
// to the current name appends no stream row.
func (c *Core) Rename(ctx context.Context, userID, deviceID string, name *string) error {
	if name != nil {
		if err := ValidateDisplayName(*name); err != nil {
			return err
		}
	}
	if ValidateDeviceID(deviceID) != nil {
		return deviceNotFound()
	}
	return c.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var cur storage.Device
		err := tx.NewSelect().Model(&cur).Column("display_name").
			Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return deviceNotFound()
		}
		if err != nil {
			return err
		}
		if name == nil || (cur.DisplayName != nil && *cur.DisplayName == *name) {
			return nil
		}
		res, err := tx.NewUpdate().Model((*storage.Device)(nil)).Set("display_name = ?", *name).
			Where("user_id = ? AND device_id = ?", userID, deviceID).Exec(ctx)
		if err != nil {
			return fmt.Errorf("rename device: %w", err)
		}
		// Deleted by a concurrent transaction since the SELECT (PostgreSQL):
		// no "changed" stream row may follow its "deleted" one.
		if n, _ := res.RowsAffected(); n != 1 {
			return deviceNotFound()
		}
		_, err = c.AppendChanges(ctx, tx, userID, []string{deviceID}, false)
		return err
	})
}

// Delete deletes the listed devices of userID in one transaction: the
// devices, their tokens and keys, with one stream row per device that
// existed. IDs that do not exist (or are not valid IDs) are ignored.
// within, if not nil, runs in the same transaction after the deletion
// (the UIA engine records the finished session there). It returns how many
// devices were deleted.
func (c *Core) Delete(ctx context.Context, userID string, deviceIDs []string, within func(ctx context.Context, tx bun.Tx) error) (int, error) {
	ids := make([]string, 0, len(deviceIDs))
	seen := make(map[string]struct{}, len(deviceIDs))
	for _, id := range deviceIDs {
		if _, dup := seen[id]; dup || ValidateDeviceID(id) != nil {
			continue
		}
		seen[id] = struct{}{}
		ids = append(ids, id)
	}
	if len(ids) == 0 && within == nil {
		return 0, nil
	}
	var deleted, revoked []string
	err := c.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
		if deleted, revoked, err = c.DeleteDevices(ctx, tx, userID, ids); err != nil {
			return err
		}
		if within != nil {
			return within(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	c.NotifyRevoked(ctx, revoked)
	c.Seen.forget(userID, deleted)
	return len(deleted), nil
}

// DeleteInBatches deletes ids in transactions of batch devices each (for
// the admin CLI: a large clean-up never holds the write lock for long),
// calling progress after each batch. It returns how many were deleted.
func (c *Core) DeleteInBatches(ctx context.Context, userID string, ids []string, batch int, progress func(done, total int)) (int, error) {
	n := 0
	for start := 0; start < len(ids); start += batch {
		end := min(start+batch, len(ids))
		k, err := c.Delete(ctx, userID, ids[start:end], nil)
		n += k
		if err != nil {
			return n, err
		}
		if progress != nil {
			progress(end, len(ids))
		}
	}
	return n, nil
}

// IDs returns userID's device IDs; with inactiveBefore > 0, only devices
// last seen (or, never seen, created) before that time in ms.
func (c *Core) IDs(ctx context.Context, userID string, inactiveBefore int64) ([]string, error) {
	var ids []string
	q := c.Store.R.NewSelect().Model((*storage.Device)(nil)).Column("device_id").Where("user_id = ?", userID)
	if inactiveBefore > 0 {
		q = q.Where("COALESCE(last_seen_ts, created_ts) < ?", inactiveBefore)
	}
	if err := q.Order("device_id").Scan(ctx, &ids); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	return ids, nil
}

// UserExists reports whether userID is a local account (deactivated
// accounts included).
func (c *Core) UserExists(ctx context.Context, userID string) (bool, error) {
	return c.Store.R.NewSelect().Model((*storage.User)(nil)).Where("user_id = ?", userID).Exists(ctx)
}
