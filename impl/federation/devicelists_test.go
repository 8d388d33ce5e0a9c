package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// receiving is server b.test receiving from a.test, a peer whose
// /user/devices answer the test sets.
type receiving struct {
	t     *testing.T
	store *storage.Store
	lists *federation.DeviceLists
	recv  *federation.Receiver
	a     *peer

	mu       sync.Mutex
	snapshot federation.UserDevices
	status   int
	fetches  atomic.Int64
	inFlight atomic.Int64
}

func newReceiving(t *testing.T, b testenv.Backend) *receiving {
	t.Helper()
	r := &receiving{t: t, store: openStore(t, b), a: newPeer(t, "a.test"), status: 200}
	id := &federation.Identity{Store: r.store, ServerName: "b.test", KeyValidity: time.Hour}
	if err := id.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	client := &federation.Client{Identity: id, Resolver: &federation.Resolver{Static: map[string]string{"a.test": r.a.srv.URL}}, HTTP: federation.NewHTTPClient()}
	r.lists = &federation.DeviceLists{Store: r.store, Client: client, Log: log}
	r.recv = &federation.Receiver{Store: r.store, Lists: r.lists, Log: log}
	r.a.setHandler(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/_matrix/federation/v1/user/devices/") {
			http.NotFound(w, req)
			return
		}
		if r.inFlight.Add(1) > 1 {
			t.Errorf("two resyncs of one user at once")
		}
		defer r.inFlight.Add(-1)
		r.fetches.Add(1)
		time.Sleep(5 * time.Millisecond)
		r.mu.Lock()
		snap, status := r.snapshot, r.status
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(snap)
	})
	return r
}

func (r *receiving) serve(snap federation.UserDevices, status int) {
	r.mu.Lock()
	r.snapshot, r.status = snap, status
	r.mu.Unlock()
}

func upd(user, dev string, stream int64, prev []int64, name string) federation.DeviceListUpdate {
	u := federation.DeviceListUpdate{UserID: user, DeviceID: dev, StreamID: stream, PrevID: prev}
	if name != "" {
		u.DeviceDisplayName = &name
	}
	return u
}

func (r *receiving) send(txnID string, updates ...federation.DeviceListUpdate) {
	r.t.Helper()
	edus := []map[string]any{}
	for _, u := range updates {
		edus = append(edus, map[string]any{"edu_type": "m.device_list_update", "content": u})
	}
	raw, _ := json.Marshal(map[string]any{"origin": "a.test", "origin_server_ts": 1, "pdus": []any{}, "edus": edus})
	if _, err := r.recv.Receive(context.Background(), "a.test", txnID, raw); err != nil {
		r.t.Fatal(err)
	}
}

// devices is the cached list of user as "DEVICE=name" in device order.
func (r *receiving) devices(user string) string {
	r.t.Helper()
	s, err := cachedDevices(context.Background(), r.store, user)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func (r *receiving) list(user string) storage.RemoteDeviceList {
	r.t.Helper()
	var row storage.RemoteDeviceList
	if err := r.store.R.NewSelect().Model(&row).Where("user_id = ?", user).Scan(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	return row
}

func (r *receiving) runWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.lists.Run(ctx); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
}

func (r *receiving) waitFor(user, want string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.devices(user) != want {
		if time.Now().After(deadline) {
			r.t.Fatalf("cache of %s is %q, want %q", user, r.devices(user), want)
		}
		r.lists.Wake()
		time.Sleep(10 * time.Millisecond)
	}
}

const bob = "@bob:a.test"

func TestUpdatesInSeriesAreAppliedWithoutResync(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.send("t1", upd(bob, "D1", 1, nil, "one"))
		r.send("t2", upd(bob, "D1", 2, []int64{1}, "uno"), upd(bob, "D2", 3, []int64{2}, "two"))
		if got := r.devices(bob); got != "D1=uno,D2=two" {
			t.Fatalf("cache %q", got)
		}
		del := upd(bob, "D1", 4, []int64{3}, "")
		del.Deleted = true
		r.send("t3", del)
		if got := r.devices(bob); got != "D2=two" {
			t.Fatalf("cache after deletion %q", got)
		}
		if l := r.list(bob); l.KnownThrough != 4 || l.StaleGen != l.ResyncedGen || r.fetches.Load() != 0 {
			t.Fatalf("list state %+v, %d fetches", l, r.fetches.Load())
		}
	})
}

func TestAGapInPrevIDIsRepairedByAResync(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.send("t1", upd(bob, "D1", 1, nil, "one"))
		// Update 2 is lost; 3 names it.
		r.send("t3", upd(bob, "D3", 3, []int64{2}, "three"))
		if got := r.devices(bob); got != "D1=one" {
			t.Fatalf("an update after a gap was applied: %q", got)
		}
		if l := r.list(bob); l.StaleGen <= l.ResyncedGen {
			t.Fatalf("list not marked stale: %+v", l)
		}
		two, three := "two", "three"
		r.serve(federation.UserDevices{UserID: bob, StreamID: 3, Devices: []federation.UserDevice{
			{DeviceID: "D1", DisplayName: &two}, {DeviceID: "D3", DisplayName: &three}}}, 200)
		r.runWorker()
		r.waitFor(bob, "D1=two,D3=three")
		if l := r.list(bob); l.KnownThrough != 3 || l.StaleGen != l.ResyncedGen || l.Failures != 0 {
			t.Fatalf("list after resync %+v", l)
		}
		// The series continues from the snapshot.
		r.send("t4", upd(bob, "D4", 4, []int64{3}, "four"))
		if got := r.devices(bob); got != "D1=two,D3=three,D4=four" {
			t.Fatalf("cache %q", got)
		}
	})
}

func TestFirstUpdateNamingUnknownPredecessorsResyncs(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.send("t1", upd(bob, "D9", 9, []int64{8}, "nine"))
		if got := r.devices(bob); got != "" {
			t.Fatalf("applied without the list: %q", got)
		}
		nine := "nine"
		r.serve(federation.UserDevices{UserID: bob, StreamID: 9, Devices: []federation.UserDevice{{DeviceID: "D9", DisplayName: &nine}, {DeviceID: "D5"}}}, 200)
		r.runWorker()
		r.waitFor(bob, "D5=,D9=nine")
	})
}

func TestRepeatedTransactionAndStaleUpdatesAreIgnored(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.send("t1", upd(bob, "D1", 1, nil, "one"))
		r.send("t1", upd(bob, "D1", 2, []int64{1}, "replayed txn"))
		r.send("t2", upd(bob, "D1", 1, nil, "old update again"))
		if got := r.devices(bob); got != "D1=one" {
			t.Fatalf("cache %q", got)
		}
		r.send("t3", upd(bob, "D1", 2, []int64{1}, "two"))
		if got := r.devices(bob); got != "D1=two" {
			t.Fatalf("cache %q", got)
		}
	})
}

func TestUpdatesAboutUsersOfOtherServersAreDropped(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.send("t1", upd("@carol:c.test", "D1", 1, nil, "forged"), upd("@dave:b.test", "D1", 1, nil, "ours"))
		if n, _ := r.store.R.NewSelect().Model((*storage.RemoteDeviceList)(nil)).Count(context.Background()); n != 0 {
			t.Fatalf("%d lists created from updates about other servers' users", n)
		}
	})
}

func TestUpdatesOutOfSeriesAreAppliedWhenTheirPrevIDsAreKnown(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.serve(federation.UserDevices{UserID: bob, StreamID: 5, Devices: []federation.UserDevice{}}, 200)
		if _, failed := r.lists.QueryDevices(context.Background(), map[string][]string{bob: nil}); len(failed) != 0 {
			t.Fatal(failed)
		}
		// A clustered sender emitted 6 and 7 concurrently (both after 5)
		// and 7 arrives first; 8 then names both.
		r.send("t7", upd(bob, "D7", 7, []int64{5}, "seven"))
		r.send("t6", upd(bob, "D6", 6, []int64{5}, "six"))
		r.send("t8", upd(bob, "D8", 8, []int64{6, 7}, "eight"))
		if got := r.devices(bob); got != "D6=six,D7=seven,D8=eight" {
			t.Fatalf("cache %q", got)
		}
		l := r.list(bob)
		seen, _ := r.store.R.NewSelect().Model((*storage.RemoteDeviceSeen)(nil)).Count(context.Background())
		if l.KnownThrough != 8 || seen != 0 || l.StaleGen != l.ResyncedGen || r.fetches.Load() != 1 {
			t.Fatalf("list %+v with %d seen ids, %d fetches", l, seen, r.fetches.Load())
		}
	})
}

func TestConcurrentFirstQueriesFetchAListOnceAndFailuresBackOff(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		r := newReceiving(t, b)
		r.serve(federation.UserDevices{}, 500)
		_, failed := r.lists.QueryDevices(context.Background(), map[string][]string{bob: nil})
		if failed["a.test"] == nil {
			t.Fatal("an unreachable list was not reported as a failure")
		}
		l := r.list(bob)
		if l.Failures != 1 || l.NextAttemptTS <= time.Now().UnixMilli() || l.ClaimedUntil != 0 {
			t.Fatalf("no backoff after a failed resync: %+v", l)
		}

		if _, again := r.lists.QueryDevices(context.Background(), map[string][]string{bob: nil}); again["a.test"] == nil || r.fetches.Load() != 1 {
			t.Fatalf("a query during the backoff fetched again (%d fetches)", r.fetches.Load())
		}
		time.Sleep(time.Until(time.UnixMilli(l.NextAttemptTS))) // the backoff passes

		one := "one"
		r.serve(federation.UserDevices{UserID: bob, StreamID: 2, Devices: []federation.UserDevice{{DeviceID: "D1", DisplayName: &one,
			Keys: json.RawMessage(`{"user_id":"` + bob + `","device_id":"D1","algorithms":["a"],"keys":{"ed25519:D1":"k"},"signatures":{}}`)}}}, 200)
		before := r.fetches.Load()
		var wg sync.WaitGroup
		results := make([]string, 8)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, failed := r.lists.QueryDevices(context.Background(), map[string][]string{bob: nil})
				var ids []string
				for id := range got[bob] {
					ids = append(ids, id)
				}
				sort.Strings(ids)
				results[i] = fmt.Sprint(ids, len(failed))
			}()
		}
		wg.Wait()
		for _, res := range results {
			if res != "[D1] 0" {
				t.Fatalf("query results %v", results)
			}
		}
		if n := r.fetches.Load() - before; n != 1 {
			t.Fatalf("%d fetches for concurrent first queries, want 1", n)
		}
	})
}

func TestTransactionsAnswerEachPDUAndCheckTheOrigin(t *testing.T) {
	r := newReceiving(t, testenv.SQLite)
	raw := []byte(`{"origin":"a.test","origin_server_ts":1,"pdus":[{"event_id":"$e1:a.test","type":"m.room.message"},{"type":"x"}]}`)
	res, err := r.recv.Receive(context.Background(), "a.test", "p1", raw)
	if err != nil || len(res) != 1 || res["$e1:a.test"].Error != "" {
		t.Fatalf("PDU results %v, %v", res, err)
	}
	_, err = r.recv.Receive(context.Background(), "c.test", "p2", raw)
	if me, ok := matrixerr.As(err); !ok || me.Status != 403 {
		t.Fatalf("a transaction whose origin is not the sender's was accepted: %v", err)
	}
	// Transaction IDs are remembered for a day, then forgotten.
	old := storage.ReceivedTxn{Origin: "a.test", TxnID: "old", ReceivedTS: time.Now().Add(-25 * time.Hour).UnixMilli()}
	if _, err := r.store.DB.NewInsert().Model(&old).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.recv.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	_ = r.store.R.NewSelect().Model((*storage.ReceivedTxn)(nil)).Column("txn_id").Scan(context.Background(), &ids)
	if fmt.Sprint(ids) != "[p1]" {
		t.Fatalf("remembered transactions after pruning: %v", ids)
	}
}
