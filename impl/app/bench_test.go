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
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// benchStack serves GET path with a token of a user with n devices
// through the whole HTTP stack (routing, middleware, validation,
// generated handler, JSON, the request log line at the default level)
// without the network, once the token is served from the cache.
func benchStack(b *testing.B, path string, n int) {
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

	var token string
	err = a.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&storage.User{UserID: "@b:localhost", CreatedTS: 1}).Exec(ctx); err != nil {
			return err
		}
		for range n {
			l, err := a.Devices.IssueToken(ctx, tx, "@b:localhost", "", nil, "127.0.0.1")
			if err != nil {
				return err
			}
			token = l.AccessToken
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	serve := func() {
		rec := httptest.NewRecorder()
		a.Echo.ServeHTTP(rec, req.Clone(ctx))
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	cache := a.Auth.(*auth.Cache)
	for deadline := time.Now().Add(5 * time.Second); ; {
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

func BenchmarkWhoamiThroughTheStack(b *testing.B) {
	benchStack(b, "/_matrix/client/v3/account/whoami", 3)
}

func BenchmarkGetDevicesThroughTheStack(b *testing.B) {
	benchStack(b, "/_matrix/client/v3/devices", 3)
}

// The cost per listed device (compare with the three-device case).
func BenchmarkGetThousandDevicesThroughTheStack(b *testing.B) {
	benchStack(b, "/_matrix/client/v3/devices", 1000)
}
