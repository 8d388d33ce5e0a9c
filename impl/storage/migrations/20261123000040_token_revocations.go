package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// m40TokenRevocation is the frozen definition of the token revocation log
// that token caches on SQLite poll (see storage.TokenRevocation).
type m40TokenRevocation struct {
	bun.BaseModel `bun:"table:token_revocations"`
	Seq           int64  `bun:"seq,pk,autoincrement"`
	TokenHash     string `bun:"token_hash,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := createTables(ctx, tx, table{model: (*m40TokenRevocation)(nil)}); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m40TokenRevocation)(nil), "token_revocations_created_idx", false, []string{"created_ts"}})
		})
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.NewDropTable().Model((*m40TokenRevocation)(nil)).IfExists().Exec(ctx)
		return err
	})
}
