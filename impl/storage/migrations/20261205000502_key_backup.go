package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// Server-side key backup (issue 19): the versions of each user's backup
// (deleted ones stay as tombstones so version numbers are never reused and
// a repeated DELETE succeeds), and the opaque session keys stored in them.

type m502KeyBackupVersion struct {
	bun.BaseModel `bun:"table:key_backup_versions"`
	UserID        string `bun:"user_id,pk"`
	Version       int64  `bun:"version,pk"`
	Algorithm     string `bun:"algorithm,notnull"`
	AuthData      string `bun:"auth_data,notnull"`
	Etag          int64  `bun:"etag,notnull"`
	KeyCount      int64  `bun:"key_count,notnull"`
	Deleted       bool   `bun:"deleted,notnull,default:false"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m502KeyBackupSession struct {
	bun.BaseModel     `bun:"table:key_backup_sessions"`
	UserID            string `bun:"user_id,pk"`
	Version           int64  `bun:"version,pk"`
	RoomID            string `bun:"room_id,pk"`
	SessionID         string `bun:"session_id,pk"`
	FirstMessageIndex int64  `bun:"first_message_index,notnull"`
	ForwardedCount    int64  `bun:"forwarded_count,notnull"`
	IsVerified        bool   `bun:"is_verified,notnull"`
	SessionData       string `bun:"session_data,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return createTables(ctx, tx,
				table{model: (*m502KeyBackupVersion)(nil)},
				table{model: (*m502KeyBackupSession)(nil)})
		})
	}, func(ctx context.Context, db *bun.DB) error {
		for _, m := range []any{(*m502KeyBackupSession)(nil), (*m502KeyBackupVersion)(nil)} {
			if _, err := db.NewDropTable().Model(m).IfExists().Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}
