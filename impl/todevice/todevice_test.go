package todevice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/todevice"
)

const (
	alice = "@alice:test"
	bob   = "@bob:test"
)

type fixture struct {
	st   *storage.Store
	core *devices.Core
	svc  *todevice.Service
	box  *federation.Outbox
}

func setup(t *testing.T, b testenv.Backend) *fixture {
	t.Helper()
	st, err := storage.Open(context.Background(), testenv.NewDatabase(t, b), storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{alice, bob} {
		if _, err := st.DB.NewInsert().Model(&storage.User{UserID: u, CreatedTS: 1}).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	box := &federation.Outbox{ServerName: "test"}
	f := &fixture{st: st, core: &devices.Core{Store: st}, box: box,
		svc: &todevice.Service{Store: st, ServerName: "test", Remote: box}}
	f.device(t, alice, "ALICE1")
	f.device(t, bob, "BOB1")
	f.device(t, bob, "BOB2")
	return f
}

func (f *fixture) device(t *testing.T, user, dev string) {
	t.Helper()
	err := f.st.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		_, err := f.core.IssueToken(ctx, tx, user, dev, nil, "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func msgs(user, dev, body string) todevice.Messages {
	return todevice.Messages{user: {dev: json.RawMessage(body)}}
}

func (f *fixture) pending(t *testing.T, user, dev string, after int64) todevice.Batch {
	t.Helper()
	b, err := f.svc.Pending(context.Background(), user, dev, after, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func contents(b todevice.Batch) string {
	var out []string
	for _, e := range b.Events {
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

func TestMessagesWaitUntilTheDeviceAcknowledgesThem(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		ctx := context.Background()
		for i := range 3 {
			if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", fmt.Sprint("t", i), msgs(bob, "BOB1", fmt.Sprintf(`{"n": %d}`, i))); err != nil {
				t.Fatal(err)
			}
		}
		got := f.pending(t, bob, "BOB1", 0)
		if contents(got) != `{"n":0} {"n":1} {"n":2}` || got.Next != 3 || got.More {
			t.Fatalf("pending = %s next %d more %v", contents(got), got.Next, got.More)
		}
		if e := got.Events[0]; e.Sender != alice || e.Type != "m.test" {
			t.Fatalf("event = %+v", e)
		}
		// Reading is not acknowledging: a retried sync gets them again.
		if again := f.pending(t, bob, "BOB1", 0); contents(again) != contents(got) {
			t.Fatalf("second read = %s", contents(again))
		}
		if err := f.svc.Ack(ctx, bob, "BOB1", 2); err != nil {
			t.Fatal(err)
		}
		if left := f.pending(t, bob, "BOB1", 0); contents(left) != `{"n":2}` {
			t.Fatalf("after ack up to 2: %s", contents(left))
		}
		if other := f.pending(t, bob, "BOB2", 0); len(other.Events) != 0 {
			t.Fatalf("BOB2 got %s", contents(other))
		}
	})
}

func TestAStarReachesEveryDeviceAndANamedDeviceGetsItsOwnMessage(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		m := todevice.Messages{bob: {"*": json.RawMessage(`{"all":true}`), "BOB2": json.RawMessage(`{"two":true}`), "NOSUCH": json.RawMessage(`{}`)}}
		if err := f.svc.Send(context.Background(), alice, "ALICE1", "m.test", "t1", m); err != nil {
			t.Fatal(err)
		}
		if got := contents(f.pending(t, bob, "BOB1", 0)); got != `{"all":true}` {
			t.Fatalf("BOB1: %s", got)
		}
		if got := contents(f.pending(t, bob, "BOB2", 0)); got != `{"two":true}` {
			t.Fatalf("BOB2: %s", got)
		}
	})
}

func TestARetransmittedTransactionIsNotSentAgain(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		ctx := context.Background()
		for range 2 {
			if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", "same", msgs(bob, "BOB1", `{"a":1}`)); err != nil {
				t.Fatal(err)
			}
		}
		// Another endpoint path (event type) is another request.
		if err := f.svc.Send(ctx, alice, "ALICE1", "m.other", "same", msgs(bob, "BOB1", `{"b":1}`)); err != nil {
			t.Fatal(err)
		}
		// Another device of the sender has its own transaction IDs.
		f.device(t, alice, "ALICE2")
		if err := f.svc.Send(ctx, alice, "ALICE2", "m.test", "same", msgs(bob, "BOB1", `{"c":1}`)); err != nil {
			t.Fatal(err)
		}
		if got := contents(f.pending(t, bob, "BOB1", 0)); got != `{"a":1} {"b":1} {"c":1}` {
			t.Fatalf("pending = %s", got)
		}
	})
}

func TestMessagesGoWithTheirDeviceAndARecreatedDeviceContinuesNumbering(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		ctx := context.Background()
		for i := range 2 {
			if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", fmt.Sprint(i), msgs(bob, "BOB1", `{}`)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.core.Delete(ctx, bob, []string{"BOB1"}, nil); err != nil {
			t.Fatal(err)
		}
		n, err := f.st.R.NewSelect().Model((*storage.ToDeviceMessage)(nil)).Where("user_id = ?", bob).Count(ctx)
		if err != nil || n != 0 {
			t.Fatalf("%d messages left after the device was deleted (%v)", n, err)
		}
		f.device(t, bob, "BOB1")
		if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", "after", msgs(bob, "BOB1", `{"new":1}`)); err != nil {
			t.Fatal(err)
		}
		// An old sync token of the first BOB1 (position 2) acknowledges
		// nothing of the new one.
		if err := f.svc.Ack(ctx, bob, "BOB1", 2); err != nil {
			t.Fatal(err)
		}
		got := f.pending(t, bob, "BOB1", 2)
		if contents(got) != `{"new":1}` || got.Next != 3 {
			t.Fatalf("pending = %s next %d", contents(got), got.Next)
		}
	})
}

func TestBadRequestsAnswerMatrixErrors(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		f.svc.MaxMessageBytes = 100
		ctx := context.Background()
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "m.test", "1", msgs(bob, "BOB1", `{"x":"`+strings.Repeat("a", 200)+`"}`)), http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "m.test", "2", msgs("bob", "BOB1", `{}`)), http.StatusBadRequest, "M_INVALID_PARAM")
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "m.test", "3", msgs(bob, "", `{}`)), http.StatusBadRequest, "M_INVALID_PARAM")
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "m.test", "4", msgs(bob, "BOB1", `[1]`)), http.StatusBadRequest, "M_BAD_JSON")
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "", "5", msgs(bob, "BOB1", `{}`)), http.StatusBadRequest, "M_INVALID_PARAM")
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "m.test", "", msgs(bob, "BOB1", `{}`)), http.StatusBadRequest, "M_INVALID_PARAM")
		wantMatrixError(t, f.svc.Send(ctx, alice, "ALICE1", "m.test", "6", msgs("@carol:bad_server!", "X", `{}`)), http.StatusBadRequest, "M_INVALID_PARAM")
		if got := f.pending(t, bob, "BOB1", 0); len(got.Events) != 0 {
			t.Fatalf("refused requests queued %s", contents(got))
		}
	})
}

func TestAFullInboxRefusesTheRequestAndSendsNothing(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		f.svc.MaxQueue = 3
		ctx := context.Background()
		for i := range 3 {
			if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", fmt.Sprint(i), msgs(bob, "BOB1", `{}`)); err != nil {
				t.Fatal(err)
			}
		}
		err := f.svc.Send(ctx, alice, "ALICE1", "m.test", "full", todevice.Messages{bob: {"*": json.RawMessage(`{"x":1}`)}})
		wantMatrixError(t, err, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
		if got := f.pending(t, bob, "BOB2", 0); len(got.Events) != 0 {
			t.Fatalf("BOB2 got %s from a refused request", contents(got))
		}
		// Once BOB1 acknowledges, there is room again; the refused txnId
		// was not recorded, so its retry goes through.
		if err := f.svc.Ack(ctx, bob, "BOB1", 3); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", "full", todevice.Messages{bob: {"*": json.RawMessage(`{"x":1}`)}}); err != nil {
			t.Fatal(err)
		}
		if got := contents(f.pending(t, bob, "BOB2", 0)); got != `{"x":1}` {
			t.Fatalf("BOB2: %s", got)
		}
	})
}

func outbox(t *testing.T, st *storage.Store) []storage.OutboxEDU {
	t.Helper()
	var rows []storage.OutboxEDU
	if err := st.R.NewSelect().Model(&rows).Order("id").Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestRemoteRecipientsGoOutAsOneEDUPerServer(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		poked := 0
		f.box.Poke = func() { poked++ }
		m := todevice.Messages{
			"@carol:one.example": {"C1": json.RawMessage(`{"c":1}`)},
			"@dave:one.example":  {"*": json.RawMessage(`{"d":1}`)},
			"@erin:two.example":  {"E1": json.RawMessage(`{"e":1}`)},
			bob:                  {"BOB1": json.RawMessage(`{"b":1}`)},
		}
		if err := f.svc.Send(context.Background(), alice, "ALICE1", "m.room_key_request", "t1", m); err != nil {
			t.Fatal(err)
		}
		rows := outbox(t, f.st)
		if len(rows) != 2 || rows[0].Destination != "one.example" || rows[1].Destination != "two.example" || poked == 0 {
			t.Fatalf("outbox %+v, poked %d", rows, poked)
		}
		var one todevice.DirectToDevice
		if err := json.Unmarshal([]byte(rows[0].Content), &one); err != nil {
			t.Fatal(err)
		}
		if rows[0].EDUType != todevice.EDUType || one.Sender != alice || one.Type != "m.room_key_request" || one.MessageID == "" ||
			len(one.Messages) != 2 || string(one.Messages["@dave:one.example"]["*"]) != `{"d":1}` {
			t.Fatalf("EDU %s %+v", rows[0].EDUType, one)
		}
		if got := contents(f.pending(t, bob, "BOB1", 0)); got != `{"b":1}` {
			t.Fatalf("local recipient got %s", got)
		}
		// The retransmission queues nothing more.
		if err := f.svc.Send(context.Background(), alice, "ALICE1", "m.room_key_request", "t1", m); err != nil {
			t.Fatal(err)
		}
		if n := len(outbox(t, f.st)); n != 2 {
			t.Fatalf("outbox has %d rows after a retransmission", n)
		}
	})
}

func receive(t *testing.T, f *fixture, origin string, content any) {
	t.Helper()
	raw, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	err = f.st.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		return f.svc.Receive(ctx, tx, origin, raw)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIncomingMessagesAreAppliedOncePerMessageIDAndOnlyFromTheOriginsUsers(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		edu := map[string]any{"sender": "@carol:remote.example", "type": "m.room.encrypted", "message_id": "m1",
			"messages": map[string]any{bob: map[string]any{"*": map[string]any{"ciphertext": "x"}}, "@zed:elsewhere": map[string]any{"Z": map[string]any{}}}}
		receive(t, f, "remote.example", edu)
		receive(t, f, "remote.example", edu) // the same message_id again
		// A sender who is not a user of the origin: dropped.
		forged := map[string]any{"sender": "@mallory:other.example", "type": "m.room.encrypted", "message_id": "m2",
			"messages": map[string]any{bob: map[string]any{"BOB1": map[string]any{"forged": true}}}}
		receive(t, f, "remote.example", forged)
		// Malformed: dropped without failing the transaction.
		receive(t, f, "remote.example", map[string]any{"sender": 7})
		for _, d := range []string{"BOB1", "BOB2"} {
			got := f.pending(t, bob, d, 0)
			if contents(got) != `{"ciphertext":"x"}` || got.Events[0].Sender != "@carol:remote.example" || got.Events[0].Type != "m.room.encrypted" {
				t.Fatalf("%s: %s %+v", d, contents(got), got.Events)
			}
		}
		// The same message_id from another origin is another message.
		edu["sender"] = "@carol:third.example"
		receive(t, f, "third.example", edu)
		if got := f.pending(t, bob, "BOB1", 0); len(got.Events) != 2 {
			t.Fatalf("BOB1 has %d messages, want 2", len(got.Events))
		}
	})
}

func TestAnIncomingMessageSkipsOnlyTheDeviceWhoseInboxIsFull(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		f.svc.MaxQueue = 2
		ctx := context.Background()
		for i := range 2 {
			if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", fmt.Sprint(i), msgs(bob, "BOB1", `{}`)); err != nil {
				t.Fatal(err)
			}
		}
		receive(t, f, "remote.example", map[string]any{"sender": "@carol:remote.example", "type": "m.test", "message_id": "m1",
			"messages": map[string]any{bob: map[string]any{"*": map[string]any{"from": "carol"}}}})
		if got := contents(f.pending(t, bob, "BOB1", 0)); got != "{} {}" {
			t.Fatalf("BOB1 (full): %s", got)
		}
		if got := contents(f.pending(t, bob, "BOB2", 0)); got != `{"from":"carol"}` {
			t.Fatalf("BOB2: %s", got)
		}
	})
}

func TestConcurrentSendersGetGapFreeOrderedPositions(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		ctx := context.Background()
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Both of bob's devices in every request: senders lock the
				// same rows, in one order.
				errs <- f.svc.Send(ctx, alice, "ALICE1", "m.test", fmt.Sprint(i), todevice.Messages{bob: {"*": json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{"BOB1", "BOB2"} {
			var pos []int64
			if err := f.st.R.NewSelect().Model((*storage.ToDeviceMessage)(nil)).Column("pos").
				Where("user_id = ? AND device_id = ?", bob, d).Order("pos").Scan(ctx, &pos); err != nil {
				t.Fatal(err)
			}
			for i, p := range pos {
				if p != int64(i+1) {
					t.Fatalf("%s positions %v: not 1..%d", d, pos, n)
				}
			}
			if len(pos) != n {
				t.Fatalf("%s has %d messages, want %d", d, len(pos), n)
			}
		}
	})
}

func TestPendingHandsOutAtMostOneBatch(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		ctx := context.Background()
		for i := range todevice.MaxBatch + 5 {
			if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", fmt.Sprint(i), msgs(bob, "BOB1", fmt.Sprintf(`{"i":%d}`, i))); err != nil {
				t.Fatal(err)
			}
		}
		first := f.pending(t, bob, "BOB1", 0)
		if len(first.Events) != todevice.MaxBatch || !first.More || first.Next != todevice.MaxBatch {
			t.Fatalf("first batch: %d events, more %v, next %d", len(first.Events), first.More, first.Next)
		}
		rest := f.pending(t, bob, "BOB1", first.Next)
		if len(rest.Events) != 5 || rest.More || string(rest.Events[0].Content) != fmt.Sprintf(`{"i":%d}`, todevice.MaxBatch) {
			t.Fatalf("rest: %s more %v", contents(rest), rest.More)
		}
	})
}

func TestPruneForgetsOldIdempotencyRecordsOnly(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := setup(t, b)
		ctx := context.Background()
		if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", "old", msgs(bob, "BOB1", `{}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.DB.NewUpdate().Model((*storage.ToDeviceTxn)(nil)).Set("created_ts = 1").Where("txn_id = 'old'").Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Send(ctx, alice, "ALICE1", "m.test", "new", msgs(bob, "BOB1", `{}`)); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		var ids []string
		if err := f.st.R.NewSelect().Model((*storage.ToDeviceTxn)(nil)).Column("txn_id").Scan(ctx, &ids); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != "[new]" {
			t.Fatalf("txn ids after prune: %v", ids)
		}
	})
}
