package wake_test

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/wake"
)

func open(t *testing.T, dsn string) *storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), dsn, storage.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func run(t *testing.T, h *wake.Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func publish(t *testing.T, st *storage.Store, users ...string) {
	t.Helper()
	if err := st.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		return wake.Publish(ctx, tx, users...)
	}); err != nil {
		t.Fatal(err)
	}
}

func woken(ch <-chan struct{}, within time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(within):
		return false
	}
}

func TestAPublishedChangeWakesExactlyItsUsersWaiters(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		dsn := testenv.NewDatabase(t, b)
		st := open(t, dsn)
		here := wake.NewHub(st, nil)
		run(t, here)
		// Another process: hears the database only.
		there := wake.NewHub(open(t, dsn), nil)
		there.DatabaseOnly = true
		run(t, there)
		time.Sleep(300 * time.Millisecond) // listener up / poller at the end of the log

		alice, stopA := here.Subscribe("@alice:test")
		defer stopA()
		bob, stopB := here.Subscribe("@bob:test")
		defer stopB()
		aliceThere, stopT := there.Subscribe("@alice:test")
		defer stopT()

		publish(t, st, "@alice:test", "@alice:test", "@carol:test")
		if !woken(alice, 100*time.Millisecond) {
			t.Fatal("alice's waiter in the publishing process was not woken")
		}
		if !woken(aliceThere, 200*time.Millisecond) {
			t.Fatal("alice's waiter in the other process was not woken")
		}
		if woken(bob, 150*time.Millisecond) {
			t.Fatal("bob's waiter was woken by a change for alice")
		}
		// A rolled-back change wakes nobody.
		_ = st.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
			if err := wake.Publish(ctx, tx, "@bob:test"); err != nil {
				return err
			}
			return context.Canceled
		})
		if woken(bob, 150*time.Millisecond) {
			t.Fatal("a rolled-back change woke bob")
		}
		if n := here.Waiting(); n != 2 {
			t.Fatalf("%d waiting, want 2", n)
		}
	})
}

func TestWhileThePostgresListenerIsDownWaitersAreWokenToCheckForThemselves(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	st := open(t, testenv.NewDatabase(t, testenv.Postgres))
	h := wake.NewHub(st, nil)
	h.FallbackInterval = 50 * time.Millisecond
	run(t, h)
	deadline := time.Now().Add(5 * time.Second)
	for !h.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("the listener never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ch, stop := h.Subscribe("@alice:test")
	defer stop()
	if woken(ch, 200*time.Millisecond) {
		t.Fatal("woken with nothing published while the listener is up")
	}
	// Kill the listener's connection (and keep it from coming back for a
	// moment by killing it again): waiters must be woken without any
	// notification.
	kill := func() {
		if _, err := st.DB.ExecContext(context.Background(),
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'myelin-sync-wake' AND datname = current_database()"); err != nil {
			t.Fatal(err)
		}
	}
	kill()
	if !woken(ch, time.Second) {
		t.Fatal("not woken after the listener was lost")
	}
	deadline = time.Now().Add(5 * time.Second)
	for !h.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("the listener never reconnected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Drain the wake-ups of the outage and the reconnection.
	time.Sleep(100 * time.Millisecond)
	for woken(ch, 0) {
	}
	publish(t, st, "@alice:test")
	if !woken(ch, 100*time.Millisecond) {
		t.Fatal("not woken by a change after the reconnection")
	}
}
