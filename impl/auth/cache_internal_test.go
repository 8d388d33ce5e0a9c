package auth

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// newCache returns a cache on a fresh SQLite store holding n tokens of one
// user. With feed, its revocation feed runs until the test ends; without,
// the test says when the cache is up to date.
func newCache(t testing.TB, size, n int, feed bool) (*Cache, []string) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, filepath.Join(t.TempDir(), "m.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.DB.NewInsert().Model(&storage.User{UserID: "@a:x", CreatedTS: 1}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	toks := make([]string, n)
	for i := range toks {
		toks[i] = tokens.NewAccessToken()
		dev := storage.Device{UserID: "@a:x", DeviceID: tokens.NewDeviceID(), CreatedTS: 1}
		at := storage.AccessToken{TokenHash: tokens.HashToken(toks[i]).String(), UserID: "@a:x", DeviceID: dev.DeviceID, CreatedTS: 1}
		if _, err := st.DB.NewInsert().Model(&dev).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DB.NewInsert().Model(&at).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCache(st, size, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !feed {
		return c, toks
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for c.syncedAt.Load() == never {
		time.Sleep(time.Millisecond)
	}
	return c, toks
}

func TestCacheStaysWithinItsSize(t *testing.T) {
	c, toks := newCache(t, shardCount*2, 400, true)
	for _, tok := range toks {
		if _, err := c.Authenticate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n > shardCount*2 || n < shardCount {
		t.Fatalf("cache holds %d tokens, want at most %d (and not nearly empty)", n, shardCount*2)
	}
}

func TestCacheIsBypassedWhileTheFeedIsBehind(t *testing.T) {
	c, toks := newCache(t, 1000, 1, false)
	ctx := context.Background()
	c.synced(c.now())
	for range 2 {
		if _, err := c.Authenticate(ctx, toks[0]); err != nil {
			t.Fatal(err)
		}
	}
	if c.Misses() != 1 {
		t.Fatalf("%d database lookups for a repeated token, want 1", c.Misses())
	}
	// The feed's last proof is just too old: the entry is kept but unused.
	for range 2 {
		c.syncedAt.Store(c.now() - int64(maxStale))
		if _, err := c.Authenticate(ctx, toks[0]); err != nil {
			t.Fatal(err)
		}
	}
	if c.Misses() != 3 {
		t.Fatalf("with the feed behind: %d lookups, want 3", c.Misses())
	}
	// The feed lost its connection: nothing cached can be trusted.
	c.unsynced()
	if c.Len() != 0 {
		t.Fatalf("%d tokens still cached after the feed lost its connection", c.Len())
	}
}

// The hot path: a token seen a moment ago.
func BenchmarkCachedTokenLookup(b *testing.B) {
	c, toks := newCache(b, 1000, 1, true)
	ctx := context.Background()
	if _, err := c.Authenticate(ctx, toks[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Authenticate(ctx, toks[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	if c.Misses() != 1 {
		b.Fatalf("%d database lookups", c.Misses())
	}
}
