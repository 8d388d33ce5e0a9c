package devices

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// CreateOrRename is PUT /devices/{deviceId} made by an application service
// (v1.17, MSC4190): an unknown device of userID is created, without an
// access token, and recorded in the device-list stream like any new device
// (created true); a known one is renamed as Rename does.
func (c *Core) CreateOrRename(ctx context.Context, userID, deviceID string, name *string) (created bool, err error) {
	if err := ValidateDeviceID(deviceID); err != nil {
		return false, err
	}
	if name != nil {
		if err := ValidateDisplayName(*name); err != nil {
			return false, err
		}
	}
	err = c.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		now := c.now()
		dev := storage.Device{UserID: userID, DeviceID: deviceID, DisplayName: name, CreatedTS: now}
		res, err := tx.NewInsert().Model(&dev).On("CONFLICT (user_id, device_id) DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("create device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // exists: renamed below
		}
		created = true
		// As at login: a new device must not take the ID of one of the
		// user's cross-signing public keys.
		taken, err := tx.NewSelect().Model((*storage.CrossSigningKey)(nil)).
			Where("user_id = ? AND key_id = ?", userID, deviceID).Exists(ctx)
		if err != nil {
			return err
		}
		if taken {
			return matrixerr.InvalidParam("device_id is the public key of one of the user's cross-signing keys")
		}
		_, err = c.AppendChanges(ctx, tx, userID, []string{deviceID}, false)
		return err
	})
	if err != nil || created {
		return created, err
	}
	return false, c.Rename(ctx, userID, deviceID, name)
}
