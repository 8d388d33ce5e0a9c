// Package migrations holds Myelin's schema migrations (bun/migrate). Each
// file NNN_name.go registers one migration; they run in order at start-up
// and are idempotent.
package migrations

import "github.com/uptrace/bun/migrate"

// Migrations is the ordered set applied by storage.Open.
var Migrations = migrate.NewMigrations()
