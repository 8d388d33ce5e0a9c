package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// Global account data (issue 19): one row per user and event type holding
// the current content and the stream position of its last change, and a
// per-user counter that allocates those positions.

type m501AccountData struct {
	bun.BaseModel `bun:"table:account_data"`
	UserID        string `bun:"user_id,pk"`
	EventType     string `bun:"event_type,pk"`
	Content       string `bun:"content,notnull"`
	StreamID      int64  `bun:"stream_id,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}

type m501AccountDataStream struct {
	bun.BaseModel `bun:"table:account_data_streams"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := createTables(ctx, tx,
				table{model: (*m501AccountData)(nil)},
				table{model: (*m501AccountDataStream)(nil)}); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m501AccountData)(nil), "account_data_stream_idx", true, []string{"user_id", "stream_id"}})
		})
	}, func(ctx context.Context, db *bun.DB) error {
		for _, m := range []any{(*m501AccountData)(nil), (*m501AccountDataStream)(nil)} {
			if _, err := db.NewDropTable().Model(m).IfExists().Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}
