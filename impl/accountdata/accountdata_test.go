package accountdata_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/accountdata"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const alice, bob = "@alice:test", "@bob:test"

func open(t *testing.T, dsn string) *storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), dsn, storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newService(t *testing.T, b testenv.Backend) (*accountdata.Service, string) {
	t.Helper()
	dsn := testenv.NewDatabase(t, b)
	return &accountdata.Service{Store: open(t, dsn)}, dsn
}

func wantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	me, ok := matrixerr.As(err)
	if !ok || me.Status != status || me.Code != code {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
}

func mustPut(t *testing.T, s *accountdata.Service, user, typ, content string) {
	t.Helper()
	if err := s.Put(context.Background(), user, user, typ, []byte(content)); err != nil {
		t.Fatalf("put %s: %v", typ, err)
	}
}

func types(evs []accountdata.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func TestStoredContentIsServedBackAndUnsetTypesAreNotFound(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		ctx := context.Background()
		_, err := s.Get(ctx, alice, alice, "m.secret_storage.default_key")
		wantErr(t, err, 404, "M_NOT_FOUND")

		mustPut(t, s, alice, "m.secret_storage.default_key", ` {"key": "abc",  "n": [1, 2]} `)
		got, err := s.Get(ctx, alice, alice, "m.secret_storage.default_key")
		if err != nil || string(got) != `{"key":"abc","n":[1,2]}` {
			t.Fatalf("got %s, %v", got, err)
		}
		// Replacing is allowed; an empty object is content like any other.
		mustPut(t, s, alice, "m.secret_storage.default_key", `{}`)
		if got, _ := s.Get(ctx, alice, alice, "m.secret_storage.default_key"); string(got) != `{}` {
			t.Fatalf("after replace: %s", got)
		}
		// Another user's types are separate.
		_, err = s.Get(ctx, bob, bob, "m.secret_storage.default_key")
		wantErr(t, err, 404, "M_NOT_FOUND")
	})
}

func TestOnlyTheOwnerReadsOrWritesAccountData(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		ctx := context.Background()
		mustPut(t, s, alice, "org.example.a", `{"secret":1}`)
		_, err := s.Get(ctx, bob, alice, "org.example.a")
		wantErr(t, err, 403, "M_FORBIDDEN")
		wantErr(t, s.Put(ctx, bob, alice, "org.example.a", []byte(`{"secret":2}`)), 403, "M_FORBIDDEN")
		if got, _ := s.Get(ctx, alice, alice, "org.example.a"); string(got) != `{"secret":1}` {
			t.Fatalf("content changed by another user: %s", got)
		}
	})
}

func TestServerManagedTypesAndBadContentAreRefused(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		ctx := context.Background()
		wantErr(t, s.Put(ctx, alice, alice, "m.push_rules", []byte(`{"global":{}}`)), 405, "M_BAD_JSON")
		wantErr(t, s.Put(ctx, alice, alice, "m.fully_read", []byte(`{"event_id":"$e"}`)), 405, "M_BAD_JSON")
		for _, body := range []string{`[]`, `"x"`, `12`, `null`} {
			wantErr(t, s.Put(ctx, alice, alice, "org.example", []byte(body)), 400, "M_BAD_JSON")
		}
		for _, body := range []string{``, `{`, `{"a":}`, `{} {}`} {
			wantErr(t, s.Put(ctx, alice, alice, "org.example", []byte(body)), 400, "M_NOT_JSON")
		}
		wantErr(t, s.Put(ctx, alice, alice, "", []byte(`{}`)), 400, "M_INVALID_PARAM")
		wantErr(t, s.Put(ctx, alice, alice, strings.Repeat("x", 256), []byte(`{}`)), 400, "M_INVALID_PARAM")
		if pos, _ := s.Latest(ctx, alice); pos != 0 {
			t.Fatalf("refused writes advanced the stream to %d", pos)
		}
	})
}

func TestSizeLimitsAnswerTooLarge(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		s.Limits = accountdata.Limits{MaxContentBytes: 100, MaxTypes: 3, MaxTotalBytes: 250}
		ctx := context.Background()
		big := `{"k":"` + strings.Repeat("a", 100) + `"}`
		wantErr(t, s.Put(ctx, alice, alice, "t.big", []byte(big)), 413, "M_TOO_LARGE")

		val := `{"k":"` + strings.Repeat("a", 80) + `"}` // 88 bytes
		mustPut(t, s, alice, "t.1", val)
		mustPut(t, s, alice, "t.2", val)
		// A third of 88 bytes would pass 250 in all.
		wantErr(t, s.Put(ctx, alice, alice, "t.3", []byte(val)), 413, "M_TOO_LARGE")
		mustPut(t, s, alice, "t.3", `{}`)
		// A fourth type is one too many; replacing an existing one is fine.
		wantErr(t, s.Put(ctx, alice, alice, "t.4", []byte(`{}`)), 413, "M_TOO_LARGE")
		mustPut(t, s, alice, "t.3", `{"x":1}`)
		// Another user has a budget of its own.
		mustPut(t, s, bob, "t.1", val)
	})
}

func TestEachChangeAdvancesTheStreamAndSinceReturnsWhatChanged(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		ctx := context.Background()
		evs, latest, err := s.Since(ctx, alice, 0)
		if err != nil || len(evs) != 0 || latest != 0 {
			t.Fatalf("empty stream: %v %d %v", evs, latest, err)
		}
		mustPut(t, s, alice, "a", `{"v":1}`)
		mustPut(t, s, alice, "b", `{"v":1}`)
		mustPut(t, s, bob, "a", `{"v":1}`) // bob's stream is his own
		p, _ := s.Latest(ctx, alice)
		if p != 2 {
			t.Fatalf("latest %d, want 2", p)
		}
		mustPut(t, s, alice, "a", `{"v":2}`)
		mustPut(t, s, alice, "a", `{"v":2}`) // identical: no change
		mustPut(t, s, alice, "c", `{"v":1}`)

		evs, latest, err = s.Since(ctx, alice, 0)
		if err != nil || fmt.Sprint(types(evs)) != "[b a c]" || latest != 4 {
			t.Fatalf("since 0: %v latest %d %v", types(evs), latest, err)
		}
		if string(evs[1].Content) != `{"v":2}` {
			t.Fatalf("since serves the current content, got %s", evs[1].Content)
		}
		evs, latest, _ = s.Since(ctx, alice, p)
		if fmt.Sprint(types(evs)) != "[a c]" || latest != 4 {
			t.Fatalf("since %d: %v latest %d", p, types(evs), latest)
		}
		evs, latest, _ = s.Since(ctx, alice, 4)
		if len(evs) != 0 || latest != 4 {
			t.Fatalf("since latest: %v %d", types(evs), latest)
		}
		if l, _ := s.Latest(ctx, alice); l != 4 {
			t.Fatalf("latest %d after an identical write, want 4", l)
		}
	})
}

// recorder is a Waker that records what it is told.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) AccountDataChanged(ctx context.Context, tx bun.IDB, userID string, pos int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, fmt.Sprintf("%s@%d", userID, pos))
	return nil
}

func TestSyncEventsCarryTypeAndContent(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		mustPut(t, s, alice, "m.secret_storage.key.k1", `{"algorithm":"m.secret_storage.v1.aes-hmac-sha2","iv":"i","mac":"m"}`)
		mustPut(t, s, alice, "m.secret_storage.default_key", `{"key":"k1"}`)
		evs, latest, err := s.SyncEvents(context.Background(), alice, 1)
		if err != nil || latest != 2 || len(evs) != 1 {
			t.Fatalf("%s latest %d %v", evs, latest, err)
		}
		if string(evs[0]) != `{"type":"m.secret_storage.default_key","content":{"key":"k1"}}` {
			t.Fatalf("event %s", evs[0])
		}
	})
}

func TestTheWakerIsToldOfEachChangeWithItsPosition(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		w := &recorder{}
		s.Waker = w
		mustPut(t, s, alice, "a", `{}`)
		mustPut(t, s, alice, "a", `{}`)
		mustPut(t, s, alice, "b", `{}`)
		_ = s.Put(context.Background(), alice, alice, "m.push_rules", []byte(`{}`))
		if fmt.Sprint(w.seen) != "[@alice:test@1 @alice:test@2]" {
			t.Fatalf("waker saw %v", w.seen)
		}
	})
}

// failingWaker fails inside the transaction: the change must not commit.
var failingWaker = accountdata.WakerFunc(func(context.Context, bun.IDB, string, int64) error {
	return fmt.Errorf("wake-up failed")
})

func TestAChangeWhoseWakeUpFailsIsNotStored(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		s.Waker = failingWaker
		if err := s.Put(context.Background(), alice, alice, "a", []byte(`{}`)); err == nil {
			t.Fatal("put succeeded although its wake-up failed")
		}
		_, err := s.Get(context.Background(), alice, alice, "a")
		wantErr(t, err, 404, "M_NOT_FOUND")
		if l, _ := s.Latest(context.Background(), alice); l != 0 {
			t.Fatalf("latest %d", l)
		}
	})
}

func TestConcurrentWritersOnOneDatabaseGetDistinctIncreasingPositions(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s1, dsn := newService(t, b)
		// A second Service on its own handles stands for a second process.
		s2 := &accountdata.Service{Store: open(t, dsn)}
		ctx := context.Background()
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			for j, s := range []*accountdata.Service{s1, s2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- s.Put(ctx, alice, alice, fmt.Sprintf("t.%d.%d", j, i), []byte(`{}`))
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		evs, latest, err := s2.Since(ctx, alice, 0)
		if err != nil || len(evs) != 2*n || latest != 2*n {
			t.Fatalf("%d events, latest %d, %v; want %d", len(evs), latest, err, 2*n)
		}
		pos := make([]int64, len(evs))
		for i, e := range evs {
			pos[i] = e.StreamID
		}
		if !slices.IsSorted(pos) || pos[0] != 1 || pos[len(pos)-1] != 2*n {
			t.Fatalf("positions %v", pos)
		}
	})
}

func TestAccountDataSurvivesARestart(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		dsn := testenv.NewDatabase(t, b)
		st, err := storage.Open(context.Background(), dsn, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := &accountdata.Service{Store: st}
		mustPut(t, s, alice, "m.cross_signing.master", `{"encrypted":{"k":{"iv":"i","ciphertext":"c","mac":"m"}}}`)
		st.Close()

		s = &accountdata.Service{Store: open(t, dsn)}
		got, err := s.Get(context.Background(), alice, alice, "m.cross_signing.master")
		if err != nil || !json.Valid(got) || !strings.Contains(string(got), `"ciphertext":"c"`) {
			t.Fatalf("after restart: %s %v", got, err)
		}
		mustPut(t, s, alice, "b", `{}`)
		if l, _ := s.Latest(context.Background(), alice); l != 2 {
			t.Fatalf("the stream restarted at %d", l)
		}
	})
}

func TestDeleteUserRemovesAllOfTheUsersAccountData(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		ctx := context.Background()
		mustPut(t, s, alice, "a", `{}`)
		mustPut(t, s, bob, "a", `{}`)
		if err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			return accountdata.DeleteUser(ctx, tx, alice)
		}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Get(ctx, alice, alice, "a")
		wantErr(t, err, 404, "M_NOT_FOUND")
		if evs, _, _ := s.Since(ctx, alice, 0); len(evs) != 0 {
			t.Fatalf("left: %v", types(evs))
		}
		if _, err := s.Get(ctx, bob, bob, "a"); err != nil {
			t.Fatalf("bob's data went too: %v", err)
		}
	})
}

func TestRoomAccountDataAnswersTheSpecsErrorsBecauseThereAreNoRooms(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		ctx := context.Background()
		room := "!room:test"
		wantErr(t, s.PutRoom(ctx, bob, alice, room, "m.tag", []byte(`{}`)), 403, "M_FORBIDDEN")
		wantErr(t, s.PutRoom(ctx, alice, alice, "@notaroom:test", "m.tag", []byte(`{}`)), 400, "M_INVALID_PARAM")
		wantErr(t, s.PutRoom(ctx, alice, alice, room, "m.fully_read", []byte(`{}`)), 405, "M_BAD_JSON")
		wantErr(t, s.PutRoom(ctx, alice, alice, room, "m.tag", []byte(`[]`)), 400, "M_BAD_JSON")
		err := s.PutRoom(ctx, alice, alice, room, "m.tag", []byte(`{"tags":{}}`))
		wantErr(t, err, 403, "M_FORBIDDEN")
		if !strings.Contains(err.Error(), "no rooms") {
			t.Fatalf("no reason given: %v", err)
		}
		_, err = s.GetRoom(ctx, alice, alice, room, "m.tag")
		wantErr(t, err, 404, "M_NOT_FOUND")
		_, err = s.GetRoom(ctx, alice, alice, "room", "m.tag")
		wantErr(t, err, 400, "M_INVALID_PARAM")
		_, err = s.GetRoom(ctx, bob, alice, room, "m.tag")
		wantErr(t, err, 403, "M_FORBIDDEN")
		if l, _ := s.Latest(ctx, alice); l != 0 {
			t.Fatalf("room writes advanced the global stream to %d", l)
		}
	})
}
