// Package migrations holds Myelin's schema migrations (bun/migrate). Each
// file NNN_name.go registers one migration (bun names it after the file, so
// every file calls Migrations.MustRegister itself); they run in order at
// start-up, each in one transaction, and are idempotent. A migration
// declares frozen copies of the tables it creates, so later edits to the
// storage models cannot change what an old migration did.
package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// Migrations is the ordered set applied by storage.Open.
var Migrations = migrate.NewMigrations()

// table is a table to create from a frozen model, with its foreign keys.
type table struct {
	model any
	fks   []string
}

// index is an index to create on a frozen model's table.
type index struct {
	model  any
	name   string
	unique bool
	cols   []string
}

// createTables creates the tables that do not exist yet.
func createTables(ctx context.Context, tx bun.Tx, tables ...table) error {
	for _, t := range tables {
		q := tx.NewCreateTable().Model(t.model).IfNotExists()
		for _, fk := range t.fks {
			q = q.ForeignKey(fk)
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
	}
	return nil
}

// createIndexes creates the indexes that do not exist yet.
func createIndexes(ctx context.Context, tx bun.Tx, indexes ...index) error {
	for _, ix := range indexes {
		q := tx.NewCreateIndex().Model(ix.model).Index(ix.name).Column(ix.cols...).IfNotExists()
		if ix.unique {
			q = q.Unique()
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("create index %s: %w", ix.name, err)
		}
	}
	return nil
}

// irreversible is the down step of migrations that cannot be undone
// without losing data.
func irreversible(what string) migrate.MigrationFunc {
	return func(context.Context, *bun.DB) error {
		return fmt.Errorf("the %s schema cannot be rolled back", what)
	}
}
