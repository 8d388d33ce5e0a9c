package syncstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/syncstream"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/todevice"
	"github.com/myelin-hs/myelin/impl/tokens"
	"github.com/myelin-hs/myelin/impl/wake"
)

const (
	alice = "@alice:test"
	bob   = "@bob:test"
)

// node is what one server process holds: its own pools, hub and services
// on the shared database.
type node struct {
	st   *storage.Store
	hub  *wake.Hub
	core *devices.Core
	td   *todevice.Service
	sync *syncstream.Service
}

func startNode(t *testing.T, dsn string, databaseOnly bool) *node {
	t.Helper()
	st, err := storage.Open(context.Background(), dsn, storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	hub := wake.NewHub(st, nil)
	hub.DatabaseOnly = databaseOnly
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	td := &todevice.Service{Store: st, ServerName: "test"}
	n := &node{st: st, hub: hub, td: td,
		core: &devices.Core{Store: st, Hooks: []devices.ChangeHook{syncstream.DeviceListHook}},
		sync: &syncstream.Service{Store: st, Hub: hub, Keys: syncstream.E2EKeyCounts{Keys: &e2ekeys.Service{Store: st, ServerName: "test"}},
			Sources: []syncstream.Source{syncstream.ToDeviceSource{ToDevice: td}, syncstream.DeviceListSource{Store: st}}},
	}
	if databaseOnly {
		// Wait until the hub hears the database (the LISTEN is up, or the
		// SQLite poller has its cursor).
		deadline := time.Now().Add(5 * time.Second)
		for st.Dialect == storage.Postgres && !hub.Listening() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

type session struct {
	syncstream.Device
	hash string
}

func (n *node) login(t *testing.T, user, dev string) session {
	t.Helper()
	var l devices.Login
	err := n.st.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) (err error) {
		l, err = n.core.IssueToken(ctx, tx, user, dev, nil, "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return session{syncstream.Device{UserID: user, DeviceID: l.DeviceID}, tokens.HashToken(l.AccessToken).String()}
}

func setup(t *testing.T, b testenv.Backend) (*node, string) {
	t.Helper()
	dsn := testenv.NewDatabase(t, b)
	n := startNode(t, dsn, false)
	for _, u := range []string{alice, bob} {
		if _, err := n.st.DB.NewInsert().Model(&storage.User{UserID: u, CreatedTS: 1}).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return n, dsn
}

func (n *node) syncNow(t *testing.T, s session, since string) *syncstream.Response {
	t.Helper()
	r, err := n.sync.Sync(context.Background(), syncstream.Request{Device: s.Device, TokenHash: s.hash, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (n *node) send(t *testing.T, from session, to session, body string) {
	t.Helper()
	err := n.td.Send(context.Background(), from.UserID, from.DeviceID, "m.test", tokens.NewSessionID(),
		todevice.Messages{to.UserID: {to.DeviceID: json.RawMessage(body)}})
	if err != nil {
		t.Fatal(err)
	}
}

func events(r *syncstream.Response) string {
	var out []string
	for _, e := range r.ToDevice.Events {
		out = append(out, string(e.Content))
	}
	return strings.Join(out, " ")
}

func wantMatrixError(t *testing.T, err error, status int, code string) {
	t.Helper()
	me, ok := matrixerr.As(err)
	if !ok || me.Status != status || me.Code != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
}

func TestInitialSyncDeliversWaitingMessagesAndTheNextSyncAcknowledgesThem(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		a, bb := n.login(t, alice, "A1"), n.login(t, bob, "B1")
		n.send(t, a, bb, `{"n":1}`)
		first := n.syncNow(t, bb, "")
		if events(first) != `{"n":1}` || first.ToDevice.Events[0].Sender != alice || first.DeviceLists != nil {
			t.Fatalf("initial sync: %+v", first)
		}
		body, _ := json.Marshal(first)
		for _, want := range []string{`"rooms":{"join":{},"invite":{},"leave":{},"knock":{}}`, `"presence":{"events":[]}`,
			`"account_data":{"events":[]}`, `"device_unused_fallback_key_types":[]`, `"device_one_time_keys_count":{}`} {
			if !strings.Contains(string(body), want) {
				t.Fatalf("response lacks %s: %s", want, body)
			}
		}
		// A retry of the initial sync (the answer was lost) gets them again.
		if again := n.syncNow(t, bb, ""); events(again) != `{"n":1}` {
			t.Fatalf("retried initial sync: %s", events(again))
		}
		n.send(t, a, bb, `{"n":2}`)
		second := n.syncNow(t, bb, first.NextBatch)
		if events(second) != `{"n":2}` {
			t.Fatalf("second sync: %s", events(second))
		}
		if second.DeviceLists == nil || len(second.DeviceLists.Changed) != 0 || second.DeviceLists.Left == nil {
			t.Fatalf("device_lists of an incremental sync: %+v", second.DeviceLists)
		}
		// Repeating the second sync's since (its answer was lost) gets its
		// messages again; the first one's were acknowledged.
		if retry := n.syncNow(t, bb, first.NextBatch); events(retry) != `{"n":2}` {
			t.Fatalf("retried second sync: %s", events(retry))
		}
		third := n.syncNow(t, bb, second.NextBatch)
		if len(third.ToDevice.Events) != 0 {
			t.Fatalf("third sync: %s", events(third))
		}
		left, err := n.st.R.NewSelect().Model((*storage.ToDeviceMessage)(nil)).Count(context.Background())
		if err != nil || left != 0 {
			t.Fatalf("%d messages stored after acknowledgement (%v)", left, err)
		}
	})
}

// pollFor starts a long poll and returns a channel with its answer and
// the time it was answered.
type answer struct {
	r   *syncstream.Response
	err error
	at  time.Time
}

func (n *node) poll(s session, since string, timeout time.Duration) chan answer {
	ch := make(chan answer, 1)
	go func() {
		r, err := n.sync.Sync(context.Background(), syncstream.Request{Device: s.Device, TokenHash: s.hash, Since: since, Timeout: timeout})
		ch <- answer{r, err, time.Now()}
	}()
	return ch
}

// waitUntilWaiting waits until the hub has a subscriber for user.
func waitUntilWaiting(t *testing.T, h *wake.Hub) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Waiting() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the long poll never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // past the first read of the streams
}

func TestALongPollWakesWithin100msOfAMessageForItsDevice(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		a, bb := n.login(t, alice, "A1"), n.login(t, bob, "B1")
		since := n.syncNow(t, bb, "").NextBatch
		ch := n.poll(bb, since, 20*time.Second)
		waitUntilWaiting(t, n.hub)
		start := time.Now()
		n.send(t, a, bb, `{"hello":1}`)
		sent := time.Now() // committed
		got := <-ch
		if got.err != nil || events(got.r) != `{"hello":1}` {
			t.Fatalf("poll answered %v %+v", got.err, got.r)
		}
		t.Logf("send took %v; the poll answered %v after it returned", sent.Sub(start), got.at.Sub(sent))
		if d := got.at.Sub(sent); d > 100*time.Millisecond {
			t.Fatalf("the poll answered %v after the send committed", d)
		}
	})
}

func TestALongPollWakesWithin100msOfAChangeMadeByAnotherProcess(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, dsn := setup(t, b)
		a, bb := n.login(t, alice, "A1"), n.login(t, bob, "B1")
		// This "process" hears only the database: no in-process shortcut.
		other := startNode(t, dsn, true)
		since := other.syncNow(t, bb, "").NextBatch
		var lat []time.Duration
		for i := range 5 {
			ch := other.poll(bb, since, 20*time.Second)
			waitUntilWaiting(t, other.hub)
			n.send(t, a, bb, fmt.Sprintf(`{"i":%d}`, i))
			sent := time.Now() // committed
			got := <-ch
			if got.err != nil || events(got.r) != fmt.Sprintf(`{"i":%d}`, i) {
				t.Fatalf("poll %d answered %v %s", i, got.err, events(got.r))
			}
			lat = append(lat, got.at.Sub(sent))
			since = got.r.NextBatch
		}
		slices.Sort(lat)
		t.Logf("wake-up latencies through the database: %v", lat)
		if lat[2] > 100*time.Millisecond {
			t.Fatalf("median wake-up through the database %v, want under 100ms (%v)", lat[2], lat)
		}
	})
}

func TestALongPollReturnsEmptyAtItsTimeout(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		a, bb := n.login(t, alice, "A1"), n.login(t, bob, "B1")
		since := n.syncNow(t, bb, "").NextBatch
		// A message for another device wakes the poll, which looks and
		// goes back to waiting.
		b2 := n.login(t, bob, "B2")
		since = n.syncNow(t, bb, since).NextBatch // B2's login is a device-list change
		start := time.Now()
		ch := n.poll(bb, since, 300*time.Millisecond)
		waitUntilWaiting(t, n.hub)
		n.send(t, a, b2, `{"for":"B2"}`)
		got := <-ch
		d := got.at.Sub(start)
		if got.err != nil || len(got.r.ToDevice.Events) != 0 || len(got.r.DeviceLists.Changed) != 0 {
			t.Fatalf("timed-out poll answered %v %+v", got.err, got.r)
		}
		if d < 300*time.Millisecond || d > 2*time.Second {
			t.Fatalf("the poll returned after %v, want its 300ms timeout", d)
		}
		if got.r.NextBatch != since {
			t.Fatalf("an empty answer moved the token: %s -> %s", since, got.r.NextBatch)
		}
	})
}

func TestOwnDeviceChangesAppearInDeviceListsAndWakeTheLongPoll(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		ctx := context.Background()
		bb := n.login(t, bob, "B1")
		_ = n.login(t, alice, "A1") // another user's change is not bob's
		since := n.syncNow(t, bb, "").NextBatch
		ch := n.poll(bb, since, 20*time.Second)
		waitUntilWaiting(t, n.hub)
		name := "phone"
		if err := n.core.Rename(ctx, bob, "B1", &name); err != nil {
			t.Fatal(err)
		}
		got := <-ch
		if got.err != nil || got.r.DeviceLists == nil || fmt.Sprint(got.r.DeviceLists.Changed) != "["+bob+"]" {
			t.Fatalf("after a rename: %v %+v", got.err, got.r)
		}
		since = got.r.NextBatch
		if r := n.syncNow(t, bb, since); len(r.DeviceLists.Changed) != 0 {
			t.Fatalf("the change is reported twice: %+v", r.DeviceLists)
		}
		_ = n.login(t, bob, "B2")
		if r := n.syncNow(t, bb, since); fmt.Sprint(r.DeviceLists.Changed) != "["+bob+"]" {
			t.Fatalf("after a new device: %+v", r.DeviceLists)
		}
	})
}

func TestAnotherDevicesTokenIsRefusedAndAnUnreadableOneStartsOver(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		b1, b2 := n.login(t, bob, "B1"), n.login(t, bob, "B2")
		a1 := n.login(t, alice, "A1")
		n.send(t, a1, b1, `{"kept":1}`)
		tok := n.syncNow(t, b1, "").NextBatch
		// Unreadable tokens acknowledge nothing: the message is still there.
		for _, bad := range []string{"x", "s72594_4483_1934", "s0123456789ab_t", "s0123456789ab_1", "s0123456789ab_t-1", "s0123456789zz_t1"} {
			r, err := n.sync.Sync(context.Background(), syncstream.Request{Device: b1.Device, Since: bad, Timeout: time.Minute})
			if err != nil || events(r) != `{"kept":1}` || r.DeviceLists != nil {
				t.Fatalf("since %q: %v %+v", bad, err, r)
			}
		}
		for _, s := range []session{b2, a1} {
			_, err := n.sync.Sync(context.Background(), syncstream.Request{Device: s.Device, Since: tok})
			wantMatrixError(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
		}
		_, err := n.sync.Sync(context.Background(), syncstream.Request{Device: b1.Device, Filter: "{nope"})
		wantMatrixError(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
		if _, err := n.sync.Sync(context.Background(), syncstream.Request{Device: b1.Device, Filter: `{"room":{"rooms":[]}}`}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.sync.Sync(context.Background(), syncstream.Request{Device: b1.Device, Filter: "66696p746572"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestALongPollWhoseDeviceIsDeletedAnswersUnknownToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		bb := n.login(t, bob, "B1")
		since := n.syncNow(t, bb, "").NextBatch
		ch := n.poll(bb, since, 20*time.Second)
		waitUntilWaiting(t, n.hub)
		start := time.Now()
		if _, err := n.core.Delete(context.Background(), bob, []string{"B1"}, nil); err != nil {
			t.Fatal(err)
		}
		got := <-ch
		wantMatrixError(t, got.err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		if d := got.at.Sub(start); d > time.Second {
			t.Fatalf("the logged-out poll answered after %v", d)
		}
	})
}

func TestKeysChangesListsTheUserWhenTheirDevicesChangedBetweenTwoTokens(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		ctx := context.Background()
		b1 := n.login(t, bob, "B1")
		t1 := n.syncNow(t, b1, "").NextBatch
		t2 := n.syncNow(t, b1, t1).NextBatch
		changed, left, err := n.sync.KeyChanges(ctx, bob, t1, t2)
		if err != nil || len(changed) != 0 || left == nil || len(left) != 0 {
			t.Fatalf("no change: %v %v %v", changed, left, err)
		}
		_ = n.login(t, alice, "A1")
		b2 := n.login(t, bob, "B2")
		t3 := n.syncNow(t, b1, t2).NextBatch
		changed, _, err = n.sync.KeyChanges(ctx, bob, t2, t3)
		if err != nil || fmt.Sprint(changed) != "["+bob+"]" {
			t.Fatalf("after a new device: %v %v", changed, err)
		}
		// Tokens of the user's other devices are just as good.
		t4 := n.syncNow(t, b2, "").NextBatch
		if changed, _, err = n.sync.KeyChanges(ctx, bob, t1, t4); err != nil || len(changed) != 1 {
			t.Fatalf("across devices: %v %v", changed, err)
		}
		_, _, err = n.sync.KeyChanges(ctx, alice, t1, t3)
		wantMatrixError(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
		// An unreadable from counts as the beginning: bob changed since.
		if changed, _, err = n.sync.KeyChanges(ctx, bob, "s72594_4483_1934", t2); err != nil || fmt.Sprint(changed) != "["+bob+"]" {
			t.Fatalf("from an unreadable token: %v %v", changed, err)
		}
	})
}

func TestOneTimeKeyCountsAndUnusedFallbackKeysAreReported(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		bb := n.login(t, bob, "B1")
		keys := []storage.OneTimeKey{
			{UserID: bob, DeviceID: "B1", KeyID: "signed_curve25519:a", Algorithm: "signed_curve25519", KeyJSON: "{}"},
			{UserID: bob, DeviceID: "B1", KeyID: "signed_curve25519:b", Algorithm: "signed_curve25519", KeyJSON: "{}"},
		}
		if _, err := n.st.DB.NewInsert().Model(&keys).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		fb := storage.FallbackKey{UserID: bob, DeviceID: "B1", Algorithm: "signed_curve25519", KeyID: "signed_curve25519:f", KeyJSON: "{}"}
		if _, err := n.st.DB.NewInsert().Model(&fb).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		r := n.syncNow(t, bb, "")
		if r.DeviceOneTimeKeysCount["signed_curve25519"] != 2 || fmt.Sprint(r.DeviceUnusedFallbackKeyTypes) != "[signed_curve25519]" {
			t.Fatalf("counts %+v fallback %v", r.DeviceOneTimeKeysCount, r.DeviceUnusedFallbackKeyTypes)
		}
	})
}

func TestATokenFromOneProcessContinuesOnAnother(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, dsn := setup(t, b)
		a, bb := n.login(t, alice, "A1"), n.login(t, bob, "B1")
		n.send(t, a, bb, `{"n":1}`)
		first := n.syncNow(t, bb, "")
		n.send(t, a, bb, `{"n":2}`)
		other := startNode(t, dsn, false)
		if r := other.syncNow(t, bb, first.NextBatch); events(r) != `{"n":2}` {
			t.Fatalf("the other process answered %s", events(r))
		}
	})
}

// memAccountData is a minimal account data stream for the composition
// test: events with positions 1..n.
type memAccountData []json.RawMessage

func (m memAccountData) since(_ context.Context, _ string, after int64) ([]json.RawMessage, int64, error) {
	if after > int64(len(m)) {
		return nil, 0, errors.New("position past the end")
	}
	return m[after:], int64(len(m)), nil
}

func TestAStreamAddedLaterStartsFromItsBeginningForOldTokens(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		bb := n.login(t, bob, "B1")
		old := n.syncNow(t, bb, "").NextBatch
		ad := memAccountData{json.RawMessage(`{"type":"m.x","content":{}}`)}
		n.sync.Sources = append(n.sync.Sources, syncstream.AccountDataSource{Since: ad.since})
		r := n.syncNow(t, bb, old)
		if len(r.AccountData.Events) != 1 || !strings.Contains(r.NextBatch, "_a1") {
			t.Fatalf("account data %v, token %s", r.AccountData.Events, r.NextBatch)
		}
		if r2 := n.syncNow(t, bb, r.NextBatch); len(r2.AccountData.Events) != 0 {
			t.Fatalf("account data repeated: %v", r2.AccountData.Events)
		}
	})
}

func TestStoppingAnswersWaitingLongPollsAtOnce(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		bb := n.login(t, bob, "B1")
		since := n.syncNow(t, bb, "").NextBatch
		ch := n.poll(bb, since, 20*time.Second)
		waitUntilWaiting(t, n.hub)
		start := time.Now()
		n.sync.Stop()
		got := <-ch
		if got.err != nil || got.r.NextBatch != since {
			t.Fatalf("stopped poll answered %v %+v", got.err, got.r)
		}
		if d := got.at.Sub(start); d > time.Second {
			t.Fatalf("the poll answered %v after Stop", d)
		}
		// Later polls do not wait either.
		start = time.Now()
		if r, err := n.sync.Sync(context.Background(), syncstream.Request{Device: bb.Device, Since: since, Timeout: 20 * time.Second}); err != nil || time.Since(start) > time.Second {
			t.Fatalf("a poll after Stop: %v %+v after %v", err, r, time.Since(start))
		}
	})
}

// gateSource is a stream that takes a while to read and records how many
// reads ran at once.
type gateSource struct {
	running, most, reads *atomic.Int64
}

func (gateSource) Key() string { return "g" }

func (g gateSource) Collect(_ context.Context, _ syncstream.Device, from int64, _ bool, _ *syncstream.Response) (int64, bool, error) {
	n := g.running.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond)
	g.running.Add(-1)
	g.reads.Add(1)
	return from, false, nil
}

func TestManyLongPollsArrivingTogetherReadTheStreamsAFewAtATime(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		n, _ := setup(t, b)
		bb := n.login(t, bob, "B1")
		since := n.syncNow(t, bb, "").NextBatch
		g := gateSource{new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)}
		n.sync.Sources = append(n.sync.Sources, g)
		const polls = 200
		chans := make([]chan answer, polls)
		for i := range chans {
			chans[i] = n.poll(bb, since, 20*time.Second)
		}
		deadline := time.Now().Add(10 * time.Second)
		for g.reads.Load() < polls {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d polls read their streams", g.reads.Load(), polls)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Each poll's reads wait for the database pool anyway: beyond
		// twice its size (8 here), a waiting reader only holds memory.
		if most := g.most.Load(); most > 16 {
			t.Fatalf("%d polls read at once, want at most 16", most)
		}
		n.sync.Stop()
		for _, ch := range chans {
			if got := <-ch; got.err != nil {
				t.Fatalf("a poll answered %v", got.err)
			}
		}
	})
}
