package storage_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestLogEndReadsTheLastSequenceNumberAndAllocatesLittleWhenIdle(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st, err := storage.Open(ctx, testenv.NewDatabase(t, b), storage.Options{MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		end, err := st.NewLogEnd(ctx, (*storage.SyncWakeup)(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer end.Close()
		if seq, err := end.Seq(ctx); err != nil || seq != 0 {
			t.Fatalf("empty log: seq %d, %v", seq, err)
		}
		for _, u := range []string{"@a:x", "@b:x", "@c:x"} {
			if _, err := st.DB.NewInsert().Model(&storage.SyncWakeup{UserID: u, CreatedTS: 1}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var want int64
		if err := st.R.NewSelect().Model((*storage.SyncWakeup)(nil)).ColumnExpr("MAX(seq)").Scan(ctx, &want); err != nil {
			t.Fatal(err)
		}
		if seq, err := end.Seq(ctx); err != nil || seq != want || want == 0 {
			t.Fatalf("seq %d, %v; want %d", seq, err, want)
		}

		// What an idle poll costs, against the bun query it replaces.
		perCall := func(f func()) uint64 {
			f()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			const n = 200
			for range n {
				f()
			}
			runtime.ReadMemStats(&m1)
			return (m1.TotalAlloc - m0.TotalAlloc) / n
		}
		logEnd := perCall(func() { _, _ = end.Seq(ctx) })
		viaBun := perCall(func() {
			var rows []storage.SyncWakeup
			_ = st.R.NewSelect().Model(&rows).Column("seq", "user_id").Where("seq > ?", want).Order("seq").Limit(1000).Scan(ctx)
		})
		t.Logf("%s: bytes allocated per idle poll: LogEnd %d, bun query %d", b, logEnd, viaBun)
		if logEnd > 2048 || logEnd*3 > viaBun {
			t.Errorf("LogEnd allocates %d bytes a call (bun query: %d)", logEnd, viaBun)
		}
	})
}
