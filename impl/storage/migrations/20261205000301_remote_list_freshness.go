package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Remote device lists: when an m.device_list_update about the user last
// arrived (update_ts) and when the list was last fetched from the user's
// server (fetched_ts), so that a list nobody keeps current is served from
// the cache only briefly after a fetch (federation.DeviceLists).
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for _, col := range []string{"update_ts", "fetched_ts"} {
				if _, err := tx.NewAddColumn().Model((*m30RemoteDeviceList)(nil)).
					ColumnExpr(col + " BIGINT NOT NULL DEFAULT 0").Exec(ctx); err != nil {
					return fmt.Errorf("add remote_device_lists.%s: %w", col, err)
				}
			}
			return nil
		})
	}, irreversible("remote device list freshness"))
}
