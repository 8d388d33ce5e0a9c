package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Accounts additions: the registration token a UIA session has reserved
// (released when the session expires unfinished), and the token buckets of
// rate limits that must hold across server processes (failed logins).

type m10RateLimitBucket struct {
	bun.BaseModel `bun:"table:rate_limit_buckets"`
	Key           string  `bun:"key,pk"`
	Tokens        float64 `bun:"tokens,notnull"`
	UpdatedTS     int64   `bun:"updated_ts,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewAddColumn().Model((*m1UIASession)(nil)).
				ColumnExpr("registration_token VARCHAR").Exec(ctx); err != nil {
				return fmt.Errorf("add uia_sessions.registration_token: %w", err)
			}
			if err := createTables(ctx, tx, table{model: (*m10RateLimitBucket)(nil)}); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m10RateLimitBucket)(nil), "rate_limit_buckets_updated_idx", false, []string{"updated_ts"}})
		})
	}, irreversible("accounts"))
}
