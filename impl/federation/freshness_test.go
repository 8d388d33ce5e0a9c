package federation_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// query is the device IDs of user that lists answers, and its failures.
func query(t *testing.T, lists *federation.DeviceLists, user string) string {
	t.Helper()
	got, failed := lists.QueryDevices(context.Background(), map[string][]string{user: nil})
	var ids []string
	for id := range got[user] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(failed) > 0 {
		return fmt.Sprint(ids, failed)
	}
	return fmt.Sprint(ids)
}

func snapshot(stream int64, devs ...string) federation.UserDevices {
	out := federation.UserDevices{UserID: bob, StreamID: stream, Devices: []federation.UserDevice{}}
	for _, d := range devs {
		out.Devices = append(out.Devices, federation.UserDevice{DeviceID: d, Keys: keysOf(bob, d)})
	}
	return out
}

// age makes the list of user look fetched (and updated) d ago, rather
// than sleeping out a TTL that a loaded machine might exceed anyway.
func (r *receiving) age(user string, d time.Duration) {
	r.t.Helper()
	ts := time.Now().Add(-d).UnixMilli()
	if _, err := r.store.DB.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).
		Set("fetched_ts = CASE WHEN fetched_ts > 0 THEN ? ELSE 0 END", ts).
		Set("update_ts = CASE WHEN update_ts > 0 THEN ? ELSE 0 END", ts).
		Where("user_id = ?", user).Exec(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

func keysOf(user, dev string) []byte {
	return []byte(`{"user_id":"` + user + `","device_id":"` + dev + `","algorithms":["a"],"keys":{"ed25519:` + dev + `":"k"},"signatures":{}}`)
}

// A server sends device-list updates only to servers sharing a room with
// the user: without updates, a cached list is only served for the TTL.
func TestAListNobodyKeepsCurrentIsFetchedAgainAfterTheTTL(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.lists.TTL = 5 * time.Second
		r.serve(snapshot(1, "D1"), 200)
		if got := query(t, r.lists, bob); got != "[D1]" {
			t.Fatalf("first query %s", got)
		}
		r.serve(snapshot(2, "D1", "D2"), 200)
		if got := query(t, r.lists, bob); got != "[D1]" || r.fetches.Load() != 1 {
			t.Fatalf("query within the TTL: %s after %d fetches", got, r.fetches.Load())
		}
		r.age(bob, r.lists.TTL+time.Second)
		if got := query(t, r.lists, bob); got != "[D1 D2]" || r.fetches.Load() != 2 {
			t.Fatalf("query after the TTL: %s after %d fetches", got, r.fetches.Load())
		}
		// The background worker leaves such lists alone, even stale.
		r.age(bob, r.lists.TTL+time.Second)
		if _, err := r.store.DB.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).Set("stale_gen = stale_gen + 1").
			Where("user_id = ?", bob).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.runWorker()
		r.lists.Wake()
		time.Sleep(500 * time.Millisecond)
		if n := r.fetches.Load(); n != 2 {
			t.Fatalf("%d fetches without a query", n)
		}
	})
}

func TestABurstOfQueriesInTwoProcessesMakesOneRemoteCall(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		// A second process: its own DeviceLists on the same database.
		other := &federation.DeviceLists{Store: r.store, Client: r.lists.Client, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), TTL: r.lists.TTL}
		r.serve(snapshot(1, "D1"), 200)
		query(t, r.lists, bob)
		r.age(bob, time.Minute)
		r.serve(snapshot(2, "D1", "D2"), 200)
		before := r.fetches.Load()
		var wg sync.WaitGroup
		results := make([]string, 16)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := r.lists
				if i%2 == 1 {
					l = other
				}
				results[i] = query(t, l, bob)
			}()
		}
		wg.Wait()
		if n := r.fetches.Load() - before; n != 1 {
			t.Fatalf("%d remote calls for a burst of 16 queries in two processes, want 1", n)
		}
		for _, res := range results {
			if res != "[D1 D2]" {
				t.Fatalf("answers %v", results)
			}
		}
	})
}

func TestListsKeptCurrentByUpdatesOrPeersAreServedFromTheCache(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.lists.Trust = time.Hour
		// Updates arrive: the list they build is current however old.
		r.send("t1", upd(bob, "D1", 1, nil, "one"))
		r.age(bob, time.Minute)
		if got := query(t, r.lists, bob); got != "[]" || r.fetches.Load() != 0 {
			// D1 has no keys, so no device is listed; none is fetched.
			t.Fatalf("query of a list kept current: %s after %d fetches", got, r.fetches.Load())
		}
		// Updates stopped an hour ago: the list is fetched again.
		r.age(bob, time.Hour+time.Second)
		r.serve(snapshot(5, "D1", "D5"), 200)
		if got := query(t, r.lists, bob); got != "[D1 D5]" || r.fetches.Load() != 1 {
			t.Fatalf("query after the updates stopped: %s after %d fetches", got, r.fetches.Load())
		}
		// A peer's users' lists are kept current by its updates.
		r.lists.Peers = []string{"a.test"}
		r.serve(snapshot(6, "D6"), 200)
		r.age(bob, 2*time.Hour)
		if got := query(t, r.lists, bob); got != "[D1 D5]" || r.fetches.Load() != 1 {
			t.Fatalf("query of a peer's user: %s after %d fetches", got, r.fetches.Load())
		}
		// and resynced in the background when an update shows a gap.
		r.send("t9", upd(bob, "D9", 9, []int64{8}, "nine"))
		r.age(bob, 2*time.Hour) // current by being a peer's, not by this update
		r.runWorker()
		eventually(t, 10*time.Second, "the background resync of a peer's user", func() (bool, string) {
			got := query(t, r.lists, bob)
			return got == "[D6]", got
		})
	})
}

func TestWhenARefetchFailsTheLastCopyIsAnsweredAndBacksOff(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.serve(snapshot(1, "D1"), 200)
		query(t, r.lists, bob)
		r.age(bob, time.Minute)
		r.serve(federation.UserDevices{}, 502)
		if got := query(t, r.lists, bob); got != "[D1]" || r.fetches.Load() != 2 {
			t.Fatalf("query while the server fails: %s after %d fetches", got, r.fetches.Load())
		}
		if l := r.list(bob); l.Failures != 1 || l.NextAttemptTS <= time.Now().UnixMilli() {
			t.Fatalf("no backoff after a failed fetch: %+v", l)
		}
		if got := query(t, r.lists, bob); got != "[D1]" || r.fetches.Load() != 2 {
			t.Fatalf("query during the backoff: %s after %d fetches", got, r.fetches.Load())
		}
	})
}
