package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// The web pages (issue 17): browser sessions of signed-in users, and
// approvals given on the account page for an operation that otherwise
// needs user-interactive auth (a cross-signing reset).

// m1701WebSession is the frozen definition of web_sessions (see
// storage.WebSession).
type m1701WebSession struct {
	bun.BaseModel `bun:"table:web_sessions"`
	SessionHash   string `bun:"session_hash,pk"`
	UserID        string `bun:"user_id,notnull"`
	IP            string `bun:"ip,notnull"`
	UserAgent     string `bun:"user_agent,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
	ExpiresTS     int64  `bun:"expires_ts,notnull"`
}

// m1701UIAApproval is the frozen definition of uia_approvals (see
// storage.UIAApproval).
type m1701UIAApproval struct {
	bun.BaseModel `bun:"table:uia_approvals"`
	UserID        string `bun:"user_id,pk"`
	Operation     string `bun:"operation,pk"`
	ExpiresTS     int64  `bun:"expires_ts,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := createTables(ctx, tx,
				table{model: (*m1701WebSession)(nil)},
				table{model: (*m1701UIAApproval)(nil)}); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m1701WebSession)(nil), "web_sessions_user_idx", false, []string{"user_id"}})
		})
	}, func(ctx context.Context, db *bun.DB) error {
		for _, m := range []any{(*m1701WebSession)(nil), (*m1701UIAApproval)(nil)} {
			if _, err := db.NewDropTable().Model(m).IfExists().Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}
