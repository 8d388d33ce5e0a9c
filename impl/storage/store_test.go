package storage_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
)

// An acknowledged write must survive an OS crash or a power cut, not only
// a crash of the process: SQLite syncs its WAL at every commit.
func TestSQLiteSyncsEveryCommitToDisk(t *testing.T) {
	ctx := context.Background()
	st, err := storage.Open(ctx, filepath.Join(t.TempDir(), "m.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mode string
	var sync int
	if err := st.DB.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := st.DB.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode=%s synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
}
