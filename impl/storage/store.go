// Package storage opens Myelin's database (an embedded SQLite file, or
// PostgreSQL) behind one bun layer and applies the migrations. The models
// and migrations are shared by both dialects.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "github.com/mattn/go-sqlite3"    // SQLite driver "sqlite3" (cgo)
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/migrate"

	"github.com/myelin-hs/myelin/impl/storage/migrations"
)

// Dialect names the kind of database.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Store holds the database handles. DB serves writes and transactions;
// R serves reads. On SQLite, DB is a single connection (SQLite allows one
// writer; serialising in Go avoids SQLITE_BUSY storms) and R is a pool of
// readers working concurrently under WAL. On PostgreSQL both are one pool.
type Store struct {
	DB      *bun.DB
	R       *bun.DB
	Dialect Dialect
	DSN     string

	reads sync.Map // *Read → *sql.Stmt prepared on R (see ScanRead)
}

// Options tunes the pools.
type Options struct {
	// MaxConns is the PostgreSQL pool size, or the SQLite reader pool size.
	MaxConns int
}

// ParseDSN classifies a --database value: postgres:// or postgresql:// URLs
// are PostgreSQL; sqlite://path, file:path or a plain path are SQLite.
func ParseDSN(dsn string) (Dialect, string, error) {
	switch {
	case dsn == "":
		return "", "", errors.New("database: empty value")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if _, err := url.Parse(dsn); err != nil {
			return "", "", fmt.Errorf("database: bad PostgreSQL URL: %w", err)
		}
		return Postgres, dsn, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		p := strings.TrimPrefix(dsn, "sqlite://")
		if p == "" {
			return "", "", errors.New("database: sqlite:// needs a file path")
		}
		return SQLite, p, nil
	case strings.HasPrefix(dsn, "file:"):
		return SQLite, strings.TrimPrefix(dsn, "file:"), nil
	case strings.Contains(dsn, "://"):
		return "", "", fmt.Errorf("database: unsupported scheme in %q (use a file path, sqlite://PATH or postgres://…)", dsn)
	default:
		return SQLite, dsn, nil
	}
}

// Open connects to the database named by dsn and applies all migrations.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	dialect, target, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = 4
	}
	var s *Store
	switch dialect {
	case SQLite:
		s, err = openSQLite(target, opt)
	case Postgres:
		s, err = openPostgres(target, opt)
	}
	if err != nil {
		return nil, err
	}
	s.DSN = dsn
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string, opt Options) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" && dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("database: create directory for %s: %w", path, err)
		}
	}
	// WAL lets readers run beside the writer; synchronous=FULL syncs the
	// WAL at every commit, so an acknowledged write survives a power cut
	// or an OS crash, not only a crash of Myelin (NORMAL served twice the
	// device renames a second, 6.0k against 2.7k on one core, but could
	// lose the last logouts and password changes: revoked tokens coming
	// back); _txlock=immediate takes the write lock at BEGIN so a
	// transaction never fails half way with SQLITE_BUSY.
	q := "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_foreign_keys=on&_txlock=immediate&cache=private"
	w, err := sql.Open("sqlite3", "file:"+path+q)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("database: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", "file:"+path+q+"&mode=ro")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(opt.MaxConns)
	r.SetMaxIdleConns(opt.MaxConns)
	r.SetConnMaxLifetime(0)
	return &Store{
		DB:      bun.NewDB(w, sqlitedialect.New()),
		R:       bun.NewDB(r, sqlitedialect.New()),
		Dialect: SQLite,
	}, nil
}

// PostgresURL is the pgx connection string Myelin uses for a postgres://
// DSN: the simple query protocol unless the DSN says otherwise, and no TLS
// on loopback unless asked for. Connections opened outside the pool (the
// token cache's LISTEN connection) use it too.
func PostgresURL(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	// bun inlines arguments into the SQL text, so prepared statements would
	// cost an extra round trip per query for nothing (see shared notes).
	if q.Get("default_query_exec_mode") == "" {
		q.Set("default_query_exec_mode", "simple_protocol")
	}
	if q.Get("sslmode") == "" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1" || u.Hostname() == "") {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func openPostgres(dsn string, opt Options) (*Store, error) {
	connString, err := PostgresURL(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", connString)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(opt.MaxConns)
	db.SetMaxIdleConns(opt.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database: connect to PostgreSQL: %w", err)
	}
	b := bun.NewDB(db, pgdialect.New())
	return &Store{DB: b, R: b, Dialect: Postgres}, nil
}

// Close closes every handle.
func (s *Store) Close() error {
	s.closeReads()
	err := s.DB.Close()
	if s.R != s.DB {
		if e := s.R.Close(); err == nil {
			err = e
		}
	}
	return err
}

// Migrate applies pending migrations. Several processes may start at once
// against one PostgreSQL: the migration lock is retried until it is free.
func (s *Store) Migrate(ctx context.Context) error {
	m := migrate.NewMigrator(s.DB, migrations.Migrations)
	// Init creates bun's bookkeeping tables with CREATE TABLE IF NOT
	// EXISTS, which PostgreSQL does not make safe against a concurrent
	// identical statement (unique violation in pg_type): processes starting
	// together retry until the tables exist.
	for attempt := 1; ; attempt++ {
		err := m.Init(ctx)
		if err == nil {
			break
		}
		if attempt == 5 {
			return fmt.Errorf("database: init migrations: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := m.Lock(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("database: migration lock still held after 60s (a crashed migration leaves a row in bun_migration_locks): %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer m.Unlock(context.Background()) //nolint:errcheck
	if _, err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("database: migrate: %w", err)
	}
	return nil
}

// Tx runs fn in one write transaction. Functions registered with
// AfterCommit during fn run once the transaction has committed.
func (s *Store) Tx(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	ac := &afterCommit{}
	if err := s.DB.RunInTx(context.WithValue(ctx, afterCommitKey{}, ac), nil, fn); err != nil {
		return err
	}
	for _, f := range ac.fns {
		f()
	}
	return nil
}

type afterCommitKey struct{}

type afterCommit struct {
	mu  sync.Mutex
	fns []func()
}

// AfterCommit arranges for f to run after the transaction of ctx (one
// started by Store.Tx) commits; it is dropped if the transaction rolls back.
// Outside such a transaction f runs at once. Work that must see the
// committed rows, e.g. waking the federation sender, is registered this way.
func AfterCommit(ctx context.Context, f func()) {
	ac, _ := ctx.Value(afterCommitKey{}).(*afterCommit)
	if ac == nil {
		f()
		return
	}
	ac.mu.Lock()
	ac.fns = append(ac.fns, f)
	ac.mu.Unlock()
}

// IsUniqueViolation reports whether err is a unique/primary key violation.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || // SQLite
		strings.Contains(msg, "SQLSTATE 23505") || // PostgreSQL (pgx)
		strings.Contains(msg, "duplicate key value")
}
