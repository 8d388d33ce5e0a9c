package storage

import (
	"context"
	"database/sql"
)

// LogEnd reads the last sequence number of an append-only log table
// (token_revocations, sync_wakeups) through one statement prepared on the
// reader pool. On SQLite every process polls these logs several times a
// second (impl/auth, impl/wake): built by bun, each poll's query cost about
// 6 KB of garbage even when nothing had changed, so an idle server's heap
// grew by ~150 KB/s until the next collection (+4 MB of idle RSS). A poll
// asks LogEnd first and runs its query only when the log has grown.
type LogEnd struct {
	stmt *sql.Stmt
}

// NewLogEnd prepares the look-up for the log table of model (a pointer to a
// model with an int64 seq column, e.g. (*SyncWakeup)(nil)).
func (s *Store) NewLogEnd(ctx context.Context, model any) (*LogEnd, error) {
	query := s.R.NewSelect().Model(model).ColumnExpr("COALESCE(MAX(seq), 0)").String()
	stmt, err := s.R.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &LogEnd{stmt: stmt}, nil
}

// Seq returns the highest sequence number in the log (0 when it is empty).
func (l *LogEnd) Seq(ctx context.Context) (int64, error) {
	var seq int64
	err := l.stmt.QueryRowContext(ctx).Scan(&seq)
	return seq, err
}

// Close releases the prepared statement.
func (l *LogEnd) Close() error { return l.stmt.Close() }
