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
			if _, err := tx.NewCreateTable().Model((*m10RateLimitBucket)(nil)).IfNotExists().Exec(ctx); err != nil {
				return fmt.Errorf("create rate_limit_buckets: %w", err)
			}
			if _, err := tx.NewCreateIndex().Model((*m10RateLimitBucket)(nil)).Index("rate_limit_buckets_updated_idx").
				Column("updated_ts").IfNotExists().Exec(ctx); err != nil {
				return fmt.Errorf("create index rate_limit_buckets_updated_idx: %w", err)
			}
			return nil
		})
	}, func(ctx context.Context, db *bun.DB) error {
		return fmt.Errorf("the accounts schema cannot be rolled back")
	})
}
