package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Sessions and moderation (issue 15): refresh tokens, expiring access
// tokens, and the admin, locked, suspended and erased flags of accounts.

// m401RefreshToken is the frozen definition of refresh_tokens (see
// storage.RefreshToken).
type m401RefreshToken struct {
	bun.BaseModel `bun:"table:refresh_tokens"`
	TokenHash     string  `bun:"token_hash,pk"`
	UserID        string  `bun:"user_id,notnull"`
	DeviceID      string  `bun:"device_id,notnull"`
	PrevHash      *string `bun:"prev_hash"`
	NextHash      *string `bun:"next_hash"`
	ConsumedTS    *int64  `bun:"consumed_ts"`
	CreatedTS     int64   `bun:"created_ts,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for _, col := range []string{"admin", "locked", "suspended", "erased"} {
				if _, err := tx.NewAddColumn().Model((*m1User)(nil)).
					ColumnExpr(col + " BOOLEAN NOT NULL DEFAULT FALSE").Exec(ctx); err != nil {
					return fmt.Errorf("add users.%s: %w", col, err)
				}
			}
			for _, col := range []string{"expires_ts BIGINT", "retire_refresh VARCHAR"} {
				if _, err := tx.NewAddColumn().Model((*m1AccessToken)(nil)).ColumnExpr(col).Exec(ctx); err != nil {
					return fmt.Errorf("add access_tokens.%s: %w", col, err)
				}
			}
			if err := createTables(ctx, tx, table{(*m401RefreshToken)(nil), []string{deviceFK}}); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m401RefreshToken)(nil), "refresh_tokens_device_idx", false, []string{"user_id", "device_id"}})
		})
	}, irreversible("sessions"))
}
