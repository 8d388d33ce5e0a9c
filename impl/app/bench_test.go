package app_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// BenchmarkWhoamiThroughTheStack serves GET /account/whoami with a cached
// token through the whole HTTP stack (routing, middleware, validation,
// generated handler, JSON, the request log line at the default level),
// without the network.
func BenchmarkWhoamiThroughTheStack(b *testing.B) {
	ctx := context.Background()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	cfg := testenv.TestConfig(b, testenv.SQLite)
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(devnull, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Serve(serveCtx, ln) }()
	defer func() { stop(); <-done; a.Close() }()

	var l devices.Login
	err = a.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
		if _, err := tx.NewInsert().Model(&storage.User{UserID: "@b:localhost", CreatedTS: 1}).Exec(ctx); err != nil {
			return err
		}
		l, err = a.Devices.IssueToken(ctx, tx, "@b:localhost", "", nil, "")
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/account/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+l.AccessToken)
	serve := func() {
		rec := httptest.NewRecorder()
		a.Echo.ServeHTTP(rec, req.Clone(ctx))
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	cache := a.Auth.(*auth.Cache)
	for deadline := time.Now().Add(5 * time.Second); ; { // until served from the cache
		serve()
		m := cache.Misses()
		serve()
		if cache.Misses() == m {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("token never cached")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve()
	}
}
