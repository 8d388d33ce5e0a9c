package auth_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const whoami = "/_matrix/client/v3/account/whoami"

// issue creates user (if new) and a device with a fresh token through core.
func issue(t *testing.T, st *storage.Store, core *devices.Core, user, device string) string {
	t.Helper()
	ctx := context.Background()
	var l devices.Login
	err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
		if _, err := tx.NewInsert().Model(&storage.User{UserID: user, CreatedTS: 1}).On("CONFLICT (user_id) DO NOTHING").Exec(ctx); err != nil {
			return err
		}
		l, err = core.IssueToken(ctx, tx, user, device, nil, "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	core.NotifyRevoked(ctx, l.Revoked)
	return l.AccessToken
}

// deleteDevice deletes a device through core, as logout and the admin CLI do.
func deleteDevice(t *testing.T, st *storage.Store, core *devices.Core, user, device string) {
	t.Helper()
	ctx := context.Background()
	var revoked []string
	err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
		_, revoked, err = core.DeleteDevices(ctx, tx, user, []string{device})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1 {
		t.Fatalf("revoked %d tokens, want 1", len(revoked))
	}
	core.NotifyRevoked(ctx, revoked)
}

// cached waits until tok is served from s's token cache.
func cached(t *testing.T, s *testenv.Server, tok string) {
	t.Helper()
	c := s.App.Auth.(*auth.Cache)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		testenv.WantStatus(t, s.Do(t, "GET", whoami, tok, nil), 200)
		before := c.Misses()
		testenv.WantStatus(t, s.Do(t, "GET", whoami, tok, nil), 200)
		if c.Misses() == before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("token never served from the cache")
}

func TestCachedTokenNeedsNoDatabaseQuery(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok := issue(t, s.App.Store, s.App.Devices, "@alice:localhost", "")
		cached(t, s, tok)
		c := s.App.Auth.(*auth.Cache)
		before := c.Misses()
		for range 100 {
			r := s.Do(t, "GET", whoami, tok, nil)
			testenv.WantStatus(t, r, 200)
			if r.Str("user_id") != "@alice:localhost" {
				t.Fatalf("whoami: %s", r.Raw)
			}
		}
		// A stalled feed (a very loaded machine) may force a few lookups;
		// one per request would be 100.
		if n := c.Misses() - before; n > 5 {
			t.Fatalf("%d of 100 requests queried the database", n)
		}
	})
}

func TestRevokedTokenIsRefusedAtOnceInTheRevokingProcess(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		st, core := s.App.Store, s.App.Devices
		gone := issue(t, st, core, "@alice:localhost", "GONE")
		cached(t, s, gone)
		deleteDevice(t, st, core, "@alice:localhost", "GONE")
		testenv.WantError(t, s.Do(t, "GET", whoami, gone, nil), 401, "M_UNKNOWN_TOKEN")

		// Logging in again with a known device revokes its previous token.
		old := issue(t, st, core, "@alice:localhost", "PHONE")
		cached(t, s, old)
		replacement := issue(t, st, core, "@alice:localhost", "PHONE")
		testenv.WantError(t, s.Do(t, "GET", whoami, old, nil), 401, "M_UNKNOWN_TOKEN")
		testenv.WantStatus(t, s.Do(t, "GET", whoami, replacement, nil), 200)
	})
}

func TestRevocationOnAnotherServerIsHonouredWithinASecond(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s1 := testenv.Start(t, b, nil)
		cfg2 := *s1.Config
		cfg2.Listen = "127.0.0.1:0"
		s2 := testenv.StartConfig(t, &cfg2)
		tok := issue(t, s1.App.Store, s1.App.Devices, "@alice:localhost", "LAPTOP")
		cached(t, s1, tok)
		cached(t, s2, tok)
		deleteDevice(t, s1.App.Store, s1.App.Devices, "@alice:localhost", "LAPTOP")
		committed := time.Now()
		testenv.WantError(t, s1.Do(t, "GET", whoami, tok, nil), 401, "M_UNKNOWN_TOKEN")
		testenv.WantTokenRefusedWithin(t, s2.URL, tok, committed, testenv.RevocationDelay)
	})
}

// The admin CLI is another process with its own store handle and a device
// core that has no cache to tell.
func TestRevocationByTheAdminCLIIsHonouredWithinASecond(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		cli, err := storage.Open(context.Background(), s.Config.Database, storage.Options{MaxConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		cliCore := &devices.Core{Store: cli}
		tok := issue(t, cli, cliCore, "@alice:localhost", "TABLET")
		cached(t, s, tok)
		deleteDevice(t, cli, cliCore, "@alice:localhost", "TABLET")
		testenv.WantTokenRefusedWithin(t, s.URL, tok, time.Now(), testenv.RevocationDelay)
	})
}

// When the LISTEN connection dies, notifications sent meanwhile are lost:
// the cache must not serve what it can no longer vouch for, and must pick
// revocations up again once reconnected.
func TestRevocationsAreHonouredAcrossALostListenerConnection(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	s := testenv.Start(t, testenv.Postgres, nil)
	cli, err := storage.Open(context.Background(), s.Config.Database, storage.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cliCore := &devices.Core{Store: cli}
	for _, dev := range []string{"ONE", "TWO"} {
		tok := issue(t, cli, cliCore, "@alice:localhost", dev)
		cached(t, s, tok)
		var killed int
		if err := cli.DB.NewRaw("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "+
			"WHERE datname = current_database() AND application_name = 'myelin-token-cache'").Scan(context.Background(), &killed); err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		if killed != 1 {
			t.Fatalf("terminated %d listener connections, want 1", killed)
		}
		deleteDevice(t, cli, cliCore, "@alice:localhost", dev)
		testenv.WantTokenRefusedWithin(t, s.URL, tok, time.Now(), testenv.RevocationDelay)
	}
}
