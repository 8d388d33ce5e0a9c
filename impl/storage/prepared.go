package storage

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/uptrace/bun"
)

// A Read is a query of the reader pool that a hot request runs, built once
// by bun and prepared once per connection, its values passed as
// parameters. bun writes values into the SQL text, so each of its queries
// is a new statement for the database to parse and plan: on SQLite
// (through cgo) preparing the device list of GET /devices cost 31 of its
// 49 µs. Define one as a package variable with NewRead; run it with
// Store.ScanRead.
type Read struct {
	name  string
	build func(r *bun.DB, p *Params) fmt.Stringer
}

// NewRead defines a prepared read. build returns the query, built on r
// (the reader pool, so that its dialect quotes it) with p.Next() where
// each parameter goes; name identifies it in errors.
func NewRead(name string, build func(r *bun.DB, p *Params) fmt.Stringer) *Read {
	return &Read{name: name, build: build}
}

// Params hands out the placeholders of a Read's parameters, in the order
// they are passed to ScanRead.
type Params struct {
	dialect Dialect
	n       int
}

// Next returns the placeholder of the next parameter.
func (p *Params) Next() bun.Safe {
	p.n++
	if p.dialect == Postgres {
		return bun.Safe(fmt.Sprintf("$%d", p.n))
	}
	return bun.Safe("?")
}

// ScanRead runs rd on the reader pool with args and scans its rows into
// dest as bun's Scan does (a slice of models, or columns).
func (s *Store) ScanRead(ctx context.Context, rd *Read, dest any, args ...any) error {
	stmt, err := s.prepared(ctx, rd)
	if err != nil {
		return err
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", rd.name, err)
	}
	if err := s.R.ScanRows(ctx, rows, dest); err != nil {
		return fmt.Errorf("%s: %w", rd.name, err)
	}
	return nil
}

func (s *Store) prepared(ctx context.Context, rd *Read) (*sql.Stmt, error) {
	if v, ok := s.reads.Load(rd); ok {
		return v.(*sql.Stmt), nil
	}
	p := &Params{dialect: s.Dialect}
	stmt, err := s.R.DB.PrepareContext(ctx, rd.build(s.R, p).String())
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", rd.name, err)
	}
	if v, loaded := s.reads.LoadOrStore(rd, stmt); loaded {
		stmt.Close()
		return v.(*sql.Stmt), nil
	}
	return stmt, nil
}

// closeReads closes the prepared reads (on Close).
func (s *Store) closeReads() {
	s.reads.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		s.reads.Delete(k)
		return true
	})
}
