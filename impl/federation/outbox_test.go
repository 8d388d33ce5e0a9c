package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// recorder plays the receiving servers: it records every PUT /send per
// destination (from the X-Matrix header), checks that a destination never
// has two transactions in flight, and answers with fail(…, dest, n) (n counts
// that destination's requests from 1) or 200.
type recorder struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	inFlight map[string]int
	tries    map[string][]string                      // dest → txn IDs in arrival order
	accepted map[string]map[string]bool               // dest → txn IDs answered 200
	edus     map[string][]federation.DeviceListUpdate // dest → EDUs of accepted txns
	sizes    map[string][]int
	fail     func(ctx context.Context, dest string, n int) int
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{t: t, inFlight: map[string]int{}, tries: map[string][]string{},
		accepted: map[string]map[string]bool{}, edus: map[string][]federation.DeviceListUpdate{}, sizes: map[string][]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	a, err := signing.ParseXMatrix(req.Header.Get("Authorization"))
	if err != nil || req.Method != "PUT" || !strings.HasPrefix(req.URL.Path, "/_matrix/federation/v1/send/") {
		r.t.Errorf("unexpected request %s %s (%v)", req.Method, req.URL.Path, err)
		w.WriteHeader(400)
		return
	}
	dest, txnID := a.Destination, strings.TrimPrefix(req.URL.Path, "/_matrix/federation/v1/send/")
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.inFlight[dest]++
	if r.inFlight[dest] > 1 {
		r.t.Errorf("two transactions in flight to %s", dest)
	}
	r.tries[dest] = append(r.tries[dest], txnID)
	n := len(r.tries[dest])
	fail := r.fail
	r.mu.Unlock()
	time.Sleep(time.Millisecond) // widen the window for overlapping sends
	status := 200
	if fail != nil {
		status = fail(req.Context(), dest, n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight[dest]--
	if status == 200 && !r.accepted[dest][txnID] {
		if r.accepted[dest] == nil {
			r.accepted[dest] = map[string]bool{}
		}
		r.accepted[dest][txnID] = true
		var txn struct {
			Origin string `json:"origin"`
			EDUs   []struct {
				Type    string                      `json:"edu_type"`
				Content federation.DeviceListUpdate `json:"content"`
			} `json:"edus"`
		}
		if err := json.Unmarshal(body, &txn); err != nil || txn.Origin != "a.test" {
			r.t.Errorf("bad transaction (%v): %s", err, body)
		}
		r.sizes[dest] = append(r.sizes[dest], len(txn.EDUs))
		for _, e := range txn.EDUs {
			r.edus[dest] = append(r.edus[dest], e.Content)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"pdus":{}}`))
}

func (r *recorder) snapshot(dest string) (edus []federation.DeviceListUpdate, tries []string, sizes []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]federation.DeviceListUpdate(nil), r.edus[dest]...), append([]string(nil), r.tries[dest]...), append([]int(nil), r.sizes[dest]...)
}

type origin struct {
	store  *storage.Store
	core   *devices.Core
	outbox *federation.Outbox
	client *federation.Client
}

// newOrigin is server a.test on store, its device-list changes queued for
// its subscribers and peers, its requests resolved to the recorder.
func newOrigin(t *testing.T, store *storage.Store, rec *recorder, peers ...string) *origin {
	t.Helper()
	id := &federation.Identity{Store: store, ServerName: "a.test", KeyValidity: time.Hour}
	if err := id.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	static := map[string]string{}
	for _, d := range []string{"b.test", "c.test", "d.test"} {
		static[d] = rec.srv.URL
	}
	o := &origin{store: store,
		outbox: &federation.Outbox{ServerName: "a.test", Peers: peers, PublishNames: true},
		client: &federation.Client{Identity: id, Resolver: &federation.Resolver{Static: static}, HTTP: federation.NewHTTPClient()}}
	o.core = &devices.Core{Store: store, Hooks: []devices.ChangeHook{o.outbox.Hook}}
	return o
}

func (o *origin) sender(t *testing.T) *federation.Sender {
	s := &federation.Sender{Store: o.store, Client: o.client, ServerName: "a.test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), PollInterval: 10 * time.Millisecond, BackoffBase: 5 * time.Millisecond}
	return s
}

// run runs s until the test ends (or stop is called).
func run(t *testing.T, s *federation.Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// newDevices creates n devices of user in one transaction (n changes).
func (o *origin) newDevices(t *testing.T, user string, n int) {
	t.Helper()
	err := o.store.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&storage.User{UserID: user, CreatedTS: 1}).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
			return err
		}
		for range n {
			if _, err := o.core.IssueToken(ctx, tx, user, "", nil, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitOutboxEmpty(t *testing.T, st *storage.Store) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := st.R.NewSelect().Model((*storage.OutboxEDU)(nil)).Count(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %d EDUs", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkSeries checks that edus are user's updates from stream id first on,
// consecutive, each naming its predecessor in prev_id.
func checkSeries(t *testing.T, edus []federation.DeviceListUpdate, user string, first, n int64) {
	t.Helper()
	var got []federation.DeviceListUpdate
	for _, e := range edus {
		if e.UserID == user {
			got = append(got, e)
		}
	}
	if int64(len(got)) != n {
		t.Fatalf("%d EDUs for %s delivered, want %d", len(got), user, n)
	}
	for i, e := range got {
		want := first + int64(i)
		if e.StreamID != want {
			t.Fatalf("EDU %d of %s has stream_id %d, want %d (order lost or duplicates)", i, user, e.StreamID, want)
		}
		if prev := fmt.Sprint(e.PrevID); (want == 1 && prev != "[]") || (want > 1 && prev != fmt.Sprintf("[%d]", want-1)) {
			t.Fatalf("EDU %d has prev_id %s", want, prev)
		}
	}
}

func TestOutboxDeliversInOrderInBatchesOfAtMost100(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		rec := newRecorder(t)
		o := newOrigin(t, openStore(t, b), rec, "b.test")
		o.newDevices(t, "@alice:a.test", 250)
		run(t, o.sender(t))
		waitOutboxEmpty(t, o.store)
		edus, tries, sizes := rec.snapshot("b.test")
		checkSeries(t, edus, "@alice:a.test", 1, 250)
		if fmt.Sprint(sizes) != "[100 100 50]" {
			t.Fatalf("transaction sizes %v, want [100 100 50]", sizes)
		}
		if len(tries) != 3 || tries[0] == tries[1] || tries[1] == tries[2] {
			t.Fatalf("txn IDs %v, want three distinct", tries)
		}
	})
}

func TestOutboxRetriesTheSameTransactionUntilAccepted(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		rec := newRecorder(t)
		rec.fail = func(_ context.Context, _ string, n int) int {
			if n <= 3 {
				return 503
			}
			return 200
		}
		o := newOrigin(t, openStore(t, b), rec, "b.test")
		o.newDevices(t, "@alice:a.test", 120)
		run(t, o.sender(t))
		waitOutboxEmpty(t, o.store)
		edus, tries, _ := rec.snapshot("b.test")
		checkSeries(t, edus, "@alice:a.test", 1, 120)
		if len(tries) != 5 || tries[0] != tries[1] || tries[1] != tries[2] || tries[2] != tries[3] || tries[3] == tries[4] {
			t.Fatalf("txn IDs tried %v: want the first retried 3 times, then a new one", tries)
		}
		// The lease is given back once the sender finds nothing more to send.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var d storage.Destination
			if err := o.store.R.NewSelect().Model(&d).Where("destination = ?", "b.test").Scan(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d.Failures == 0 && d.NextAttemptTS == 0 && d.LeaseOwner == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("destination state after success: %+v", d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestOutboxSurvivesARestartMidTransaction(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		rec := newRecorder(t)
		var blocked atomic.Bool
		released := make(chan struct{})
		rec.fail = func(ctx context.Context, _ string, n int) int {
			if n == 1 {
				blocked.Store(true)
				<-ctx.Done() // the sender stops while waiting for the answer
				close(released)
				return 503
			}
			return 200
		}
		o := newOrigin(t, openStore(t, b), rec, "b.test")
		o.newDevices(t, "@alice:a.test", 5)
		stop := run(t, o.sender(t))
		for !blocked.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		stop() // shutdown while the transaction is in flight
		<-released
		more := newOrigin(t, o.store, rec, "b.test")
		more.newDevices(t, "@alice:a.test", 3)
		run(t, more.sender(t))
		waitOutboxEmpty(t, o.store)
		edus, tries, sizes := rec.snapshot("b.test")
		checkSeries(t, edus, "@alice:a.test", 1, 8)
		if len(tries) != 3 || tries[0] != tries[1] || fmt.Sprint(sizes) != "[5 3]" {
			t.Fatalf("after the restart the same transaction must be resent first: tries %v sizes %v", tries, sizes)
		}
	})
}

func TestTwoSenderProcessesDeliverEachEDUOnceInOrder(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		rec := newRecorder(t)
		dsn := testenv.NewDatabase(t, b)
		open := func() *storage.Store {
			st, err := storage.Open(context.Background(), dsn, storage.Options{MaxConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		p1 := newOrigin(t, open(), rec, "b.test", "c.test", "d.test")
		p2 := newOrigin(t, open(), rec, "b.test", "c.test", "d.test")
		run(t, p1.sender(t))
		run(t, p2.sender(t))
		var wg sync.WaitGroup
		for i, p := range []*origin{p1, p2, p1, p2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				user := fmt.Sprintf("@u%d:a.test", i)
				for range 15 {
					p.newDevices(t, user, 10)
				}
			}()
		}
		wg.Wait()
		waitOutboxEmpty(t, p1.store)
		for _, dest := range []string{"b.test", "c.test", "d.test"} {
			edus, _, _ := rec.snapshot(dest)
			for i := range 4 {
				checkSeries(t, edus, fmt.Sprintf("@u%d:a.test", i), 1, 150)
			}
		}
	})
}

func TestTestDropSwitchDropsEveryNthEDU(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		rec := newRecorder(t)
		o := newOrigin(t, openStore(t, b), rec, "b.test")
		o.newDevices(t, "@alice:a.test", 9)
		s := o.sender(t)
		s.DropEvery = 3
		run(t, s)
		waitOutboxEmpty(t, o.store)
		edus, _, _ := rec.snapshot("b.test")
		var ids []int64
		for _, e := range edus {
			ids = append(ids, e.StreamID)
		}
		if fmt.Sprint(ids) != "[1 2 4 5 7 8]" {
			t.Fatalf("delivered stream ids %v, want every 3rd dropped", ids)
		}
	})
}

func TestRefusedTransactionIsDroppedAndTheQueueMovesOn(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		rec := newRecorder(t)
		rec.fail = func(_ context.Context, _ string, n int) int {
			if n == 1 {
				return 400
			}
			return 200
		}
		o := newOrigin(t, openStore(t, b), rec, "b.test")
		o.newDevices(t, "@alice:a.test", 2)
		run(t, o.sender(t))
		waitOutboxEmpty(t, o.store)
		o.newDevices(t, "@alice:a.test", 1)
		waitOutboxEmpty(t, o.store)
		edus, tries, _ := rec.snapshot("b.test")
		if len(tries) != 2 || len(edus) != 1 || edus[0].StreamID != 3 {
			t.Fatalf("tries %v edus %+v: the refused batch must be dropped, the next one sent", tries, edus)
		}
	})
}

func TestChangesAreQueuedForSubscribersAndPeersWithTheDeviceState(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		rec := newRecorder(t)
		st := openStore(t, b)
		o := newOrigin(t, st, rec, "b.test", "a.test")
		if _, err := st.DB.NewInsert().Model(&storage.DeviceListSubscriber{UserID: "@alice:a.test", ServerName: "c.test", CreatedTS: 1}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		name := "Phone"
		keys, _ := testenv.SignedDeviceKeys(t, "@alice:a.test", "PHONE")
		err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewInsert().Model(&storage.User{UserID: "@alice:a.test", CreatedTS: 1}).Exec(ctx); err != nil {
				return err
			}
			if _, err := o.core.IssueToken(ctx, tx, "@alice:a.test", "PHONE", &name, ""); err != nil {
				return err
			}
			canon, _ := signing.Canonical(keys)
			if _, err := tx.NewInsert().Model(&storage.DeviceKeys{UserID: "@alice:a.test", DeviceID: "PHONE", KeyJSON: string(canon)}).Exec(ctx); err != nil {
				return err
			}
			if _, err := o.core.AppendChanges(ctx, tx, "@alice:a.test", []string{"PHONE"}, false); err != nil {
				return err
			}
			_, _, err := o.core.DeleteDevices(ctx, tx, "@alice:a.test", []string{"PHONE"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var rows []storage.OutboxEDU
		if err := st.R.NewSelect().Model(&rows).Order("id").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		byDest := map[string][]federation.DeviceListUpdate{}
		for _, r := range rows {
			var u federation.DeviceListUpdate
			if err := json.Unmarshal([]byte(r.Content), &u); err != nil {
				t.Fatal(err)
			}
			byDest[r.Destination] = append(byDest[r.Destination], u)
		}
		if len(byDest) != 2 || len(byDest["b.test"]) != 3 || len(byDest["c.test"]) != 3 {
			t.Fatalf("destinations %v: want the peer b.test and the subscriber c.test, never ourselves", byDest)
		}
		created, keyed, deleted := byDest["c.test"][0], byDest["c.test"][1], byDest["c.test"][2]
		if created.DeviceDisplayName == nil || *created.DeviceDisplayName != "Phone" || created.Keys != nil || created.Deleted {
			t.Fatalf("creation EDU %+v", created)
		}
		if keyed.StreamID != 2 || len(keyed.Keys) == 0 || !strings.Contains(string(keyed.Keys), `"ed25519:PHONE"`) {
			t.Fatalf("key upload EDU %+v", keyed)
		}
		if !deleted.Deleted || deleted.Keys != nil || deleted.DeviceDisplayName != nil || fmt.Sprint(deleted.PrevID) != "[2]" {
			t.Fatalf("deletion EDU %+v", deleted)
		}
		// Withheld names are not published.
		o.outbox.PublishNames = false
		o.newDevices(t, "@alice:a.test", 1)
		var last storage.OutboxEDU
		if err := st.R.NewSelect().Model(&last).Order("id DESC").Limit(1).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(last.Content, "device_display_name") {
			t.Fatalf("display name published although withheld: %s", last.Content)
		}
	})
}

func TestHearingFromABackedOffDestinationRetriesItAtOnce(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		rec := newRecorder(t)
		o := newOrigin(t, openStore(t, b), rec, "b.test")
		far := time.Now().Add(time.Hour).UnixMilli()
		if _, err := o.store.DB.NewInsert().Model(&storage.Destination{Destination: "b.test", Failures: 7, NextAttemptTS: far}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		o.newDevices(t, "@alice:a.test", 1)
		s := o.sender(t)
		run(t, s)
		s.PeerAlive(ctx, "b.test")
		waitOutboxEmpty(t, o.store)
		if edus, _, _ := rec.snapshot("b.test"); len(edus) != 1 {
			t.Fatalf("%d EDUs delivered", len(edus))
		}
	})
}
