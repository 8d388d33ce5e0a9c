package uia_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/uia"
)

const (
	alice    = "@alice:test"
	bob      = "@bob:test"
	alicePwd = "correct horse battery"
)

var (
	passwordFlow = []uia.Flow{{Stages: []string{uia.StagePassword}}}
	dummyFlow    = []uia.Flow{{Stages: []string{uia.StageDummy}}}
	tokenFlow    = []uia.Flow{{Stages: []string{uia.StageRegistrationToken}}}
)

// clock is a settable time source shared by engines in one test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type fixture struct {
	store  *storage.Store
	dsn    string
	hasher *passwords.Hasher
	clock  *clock
}

func newFixture(t *testing.T, b testenv.Backend) *fixture {
	t.Helper()
	f := &fixture{dsn: testenv.NewDatabase(t, b), clock: &clock{time.Now()}}
	f.hasher = passwords.New(passwords.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, nil)
	f.store = f.open(t)
	ctx := context.Background()
	for _, u := range []string{alice, bob} {
		h, err := f.hasher.Hash(alicePwd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.DB.NewInsert().Model(&storage.User{UserID: u, PasswordHash: h, CreatedTS: 1}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.DB.NewInsert().Model(&storage.ThreePID{Medium: "email", Address: "alice@example.org", UserID: alice, AddedTS: 1}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

// open opens another Store on the fixture's database, as a restarted or a
// second server process would.
func (f *fixture) open(t *testing.T) *storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), f.dsn, storage.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (f *fixture) engine(st *storage.Store) *uia.Engine {
	return &uia.Engine{
		Store:       st,
		Credentials: &credentials.Checker{Store: st, Hasher: f.hasher, ServerName: "test"},
		TTL:         time.Minute,
		Now:         f.clock.now,
	}
}

// challenge asserts err is a 401 UIA answer with errcode code ("" for a
// bare challenge) and returns its session.
func challenge(t *testing.T, err error, code string) (session string, completed []any) {
	t.Helper()
	me, ok := matrixerr.As(err)
	if !ok || me.Status != 401 || me.Code != code {
		t.Fatalf("want 401 challenge with errcode %q, got %v (%#v)", code, err, me)
	}
	body := me.Body()
	if _, ok := body["params"].(map[string]any); !ok {
		t.Fatalf("challenge without params object: %v", body)
	}
	if _, ok := body["flows"]; !ok {
		t.Fatalf("challenge without flows: %v", body)
	}
	js, _ := json.Marshal(body)
	var back map[string]any
	_ = json.Unmarshal(js, &back)
	session, _ = back["session"].(string)
	completed, ok = back["completed"].([]any)
	if session == "" || !ok {
		t.Fatalf("challenge without session or completed: %s", js)
	}
	if code == "" && back["errcode"] != nil {
		t.Fatalf("bare challenge carries an errcode: %s", js)
	}
	return session, completed
}

func wantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	me, ok := matrixerr.As(err)
	if !ok || me.Status != status || me.Code != code {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
}

func pw(session, user, password string) map[string]any {
	a := map[string]any{"type": uia.StagePassword, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
	if session != "" {
		a["session"] = session
	}
	return a
}

func TestNoAuthAnswersChallengeWithParamsSessionAndCompleted(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		_, err := f.engine(f.store).Authenticate(context.Background(), uia.Request{
			Operation: uia.OpDeactivate(), UserID: alice, Flows: passwordFlow})
		_, completed := challenge(t, err, "")
		if len(completed) != 0 {
			t.Fatalf("completed = %v", completed)
		}
	})
}

func TestOneStageFlowCompletesInOneRequestWithoutSession(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		res, err := e.Authenticate(context.Background(), uia.Request{Operation: uia.OpRegister(), Flows: dummyFlow,
			Auth: map[string]any{"type": uia.StageDummy}, Params: map[string]any{"username": "carol"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.SessionID == "" || res.Params["username"] != "carol" || res.Replay != nil {
			t.Fatalf("result %+v", res)
		}
		res2, err := e.Authenticate(context.Background(), uia.Request{Operation: uia.OpDeleteDevice("PHONE"), UserID: alice,
			Flows: passwordFlow, Auth: pw("", "alice", alicePwd)})
		if err != nil || res2.SessionID == "" {
			t.Fatalf("password in one request: %+v %v", res2, err)
		}
	})
}

func TestWrongPasswordFailsTheStageInTheSameSession(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		req := uia.Request{Operation: uia.OpChangePassword(), UserID: alice, Flows: passwordFlow}
		_, err := e.Authenticate(ctx, req)
		sid, _ := challenge(t, err, "")
		req.Auth = pw(sid, "alice", "wrong password")
		_, err = e.Authenticate(ctx, req)
		sid2, completed := challenge(t, err, "M_FORBIDDEN")
		if sid2 != sid || len(completed) != 0 {
			t.Fatalf("failed stage changed session %q→%q or completed %v", sid, sid2, completed)
		}
		req.Auth = pw(sid, "alice", alicePwd)
		res, err := e.Authenticate(ctx, req)
		if err != nil || res.SessionID != sid {
			t.Fatalf("correct password: %+v %v", res, err)
		}
	})
}

func TestPasswordStageAcceptsEveryIdentifierForm(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		forms := map[string]map[string]any{
			"localpart, other case": pw("", "ALICE", alicePwd),
			"full user ID":          pw("", "@Alice:test", alicePwd),
			"legacy user":           {"type": uia.StagePassword, "user": "alice", "password": alicePwd},
			"m.id.thirdparty": {"type": uia.StagePassword, "password": alicePwd,
				"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "Alice@Example.org"}},
			"legacy medium and address": {"type": uia.StagePassword, "password": alicePwd, "medium": "email", "address": "alice@example.org"},
		}
		for name, a := range forms {
			t.Run(name, func(t *testing.T) {
				_, err := e.Authenticate(context.Background(), uia.Request{Operation: uia.OpDeactivate(), UserID: alice, Flows: passwordFlow, Auth: a})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

func TestPasswordStageForAnotherAccountIsForbidden(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		// Bob's own correct password, presented in Alice's request.
		_, err := e.Authenticate(ctx, uia.Request{Operation: uia.OpDeactivate(), UserID: alice, Flows: passwordFlow, Auth: pw("", "bob", alicePwd)})
		wantErr(t, err, 403, "M_FORBIDDEN")
		// Registration has no user: a password stage there authenticates nobody.
		_, err = e.Authenticate(ctx, uia.Request{Operation: uia.OpRegister(), Flows: passwordFlow, Auth: pw("", "alice", alicePwd)})
		wantErr(t, err, 403, "M_FORBIDDEN")
	})
}

func TestSessionCannotBeReplayedForAnotherOperationOrUser(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		res, err := e.Authenticate(ctx, uia.Request{Operation: uia.OpDeleteDevice("A"), UserID: alice, Flows: passwordFlow, Auth: pw("", "alice", alicePwd)})
		if err != nil {
			t.Fatal(err)
		}
		session := map[string]any{"session": res.SessionID}
		for name, req := range map[string]uia.Request{
			"other device":    {Operation: uia.OpDeleteDevice("B"), UserID: alice, Flows: passwordFlow, Auth: session},
			"other endpoint":  {Operation: uia.OpDeactivate(), UserID: alice, Flows: passwordFlow, Auth: session},
			"other user":      {Operation: uia.OpDeleteDevice("A"), UserID: bob, Flows: passwordFlow, Auth: session},
			"other devices":   {Operation: uia.OpDeleteDevices([]string{"A", "B"}), UserID: alice, Flows: passwordFlow, Auth: session},
			"with a password": {Operation: uia.OpDeleteDevice("B"), UserID: alice, Flows: passwordFlow, Auth: pw(res.SessionID, "alice", alicePwd)},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := e.Authenticate(ctx, req)
				wantErr(t, err, 403, "M_FORBIDDEN")
			})
		}
		// The session still serves what it was started for.
		if _, err := e.Authenticate(ctx, uia.Request{Operation: uia.OpDeleteDevice("A"), UserID: alice, Flows: passwordFlow, Auth: session}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeleteDevicesOperationIgnoresOrderAndDuplicates(t *testing.T) {
	if uia.OpDeleteDevices([]string{"B", "A", "A"}) != uia.OpDeleteDevices([]string{"A", "B"}) ||
		uia.OpDeleteDevices([]string{"A"}) == uia.OpDeleteDevices([]string{"A", "B"}) {
		t.Fatal("OpDeleteDevices must identify the set of device IDs")
	}
}

func TestExpiredAndUnknownSessionsAreRejected(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		req := uia.Request{Operation: uia.OpDeactivate(), UserID: alice, Flows: passwordFlow}
		_, err := e.Authenticate(ctx, req)
		sid, _ := challenge(t, err, "")
		f.clock.t = f.clock.t.Add(61 * time.Second)
		req.Auth = pw(sid, "alice", alicePwd)
		_, err = e.Authenticate(ctx, req)
		wantErr(t, err, 400, "M_UNKNOWN")
		req.Auth = pw("no-such-session", "alice", alicePwd)
		_, err = e.Authenticate(ctx, req)
		wantErr(t, err, 400, "M_UNKNOWN")
	})
}

func TestSessionWorksAcrossStoresOnOneDatabase(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		req := uia.Request{Operation: uia.OpChangePassword(), UserID: alice, Flows: passwordFlow}
		_, err := f.engine(f.store).Authenticate(ctx, req)
		sid, _ := challenge(t, err, "")
		// A second process (or the restarted server) continues the session.
		other := f.engine(f.open(t))
		req.Auth = pw(sid, "alice", alicePwd)
		res, err := other.Authenticate(ctx, req)
		if err != nil || res.SessionID != sid {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func TestFinishedSessionReplaysItsResponse(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		req := uia.Request{Operation: uia.OpRegister(), Flows: dummyFlow, Auth: map[string]any{"type": uia.StageDummy},
			Params: map[string]any{"username": "carol"}}
		res, err := e.Authenticate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		finish := func() error {
			return f.store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
				return e.Finish(ctx, tx, res.SessionID, map[string]string{"user_id": "@carol:test"})
			})
		}
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		if err := finish(); !errors.Is(err, uia.ErrAlreadyFinished) {
			t.Fatalf("second Finish: %v", err)
		}
		req.Auth["session"] = res.SessionID
		req.Params = map[string]any{"username": "dave"}
		again, err := e.Authenticate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if string(again.Replay) != `{"user_id":"@carol:test"}` || again.Params["username"] != "carol" {
			t.Fatalf("replay %s params %v", again.Replay, again.Params)
		}
	})
}

func TestFirstRequestParamsWinAndMissingOnesAreAdded(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		_, err := e.Authenticate(ctx, uia.Request{Operation: uia.OpRegister(), Flows: dummyFlow,
			Params: map[string]any{"username": "carol"}})
		sid, _ := challenge(t, err, "")
		res, err := e.Authenticate(ctx, uia.Request{Operation: uia.OpRegister(), Flows: dummyFlow,
			Auth:   map[string]any{"type": uia.StageDummy, "session": sid},
			Params: map[string]any{"username": "mallory", "device_id": "PHONE"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Params["username"] != "carol" || res.Params["device_id"] != "PHONE" {
			t.Fatalf("params %v", res.Params)
		}
	})
}

func TestStageNotOfferedFailsWithoutCompleting(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		_, err := f.engine(f.store).Authenticate(context.Background(), uia.Request{Operation: uia.OpRegister(), Flows: tokenFlow,
			Auth: map[string]any{"type": uia.StageDummy}})
		if _, completed := challenge(t, err, "M_UNRECOGNIZED"); len(completed) != 0 {
			t.Fatalf("completed %v", completed)
		}
	})
}

func addToken(t *testing.T, st *storage.Store, tok string, uses *int64, expiry *int64) {
	t.Helper()
	if _, err := st.DB.NewInsert().Model(&storage.RegistrationToken{Token: tok, UsesAllowed: uses, ExpiryTS: expiry, CreatedTS: 1}).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func getToken(t *testing.T, st *storage.Store, tok string) storage.RegistrationToken {
	t.Helper()
	var rt storage.RegistrationToken
	if err := st.DB.NewSelect().Model(&rt).Where("token = ?", tok).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestRegistrationTokenUsesAreReservedThenCountedOnFinish(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		one := int64(1)
		addToken(t, f.store, "once", &one, nil)
		tokenAuth := func(tok string) uia.Request {
			return uia.Request{Operation: uia.OpRegister(), Flows: tokenFlow, Auth: map[string]any{"type": uia.StageRegistrationToken, "token": tok}}
		}
		res, err := e.Authenticate(ctx, tokenAuth("once"))
		if err != nil {
			t.Fatal(err)
		}
		if rt := getToken(t, f.store, "once"); rt.Pending != 1 || rt.Completed != 0 {
			t.Fatalf("after stage: %+v", rt)
		}
		// The only use is reserved: another registration cannot take it.
		_, err = e.Authenticate(ctx, tokenAuth("once"))
		challenge(t, err, "M_FORBIDDEN")
		if err := f.store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			return e.Finish(ctx, tx, res.SessionID, map[string]string{})
		}); err != nil {
			t.Fatal(err)
		}
		if rt := getToken(t, f.store, "once"); rt.Pending != 0 || rt.Completed != 1 {
			t.Fatalf("after finish: %+v", rt)
		}
		_, err = e.Authenticate(ctx, tokenAuth("once"))
		challenge(t, err, "M_FORBIDDEN")
		_, err = e.Authenticate(ctx, tokenAuth("unknown"))
		challenge(t, err, "M_FORBIDDEN")
		_, err = e.Authenticate(ctx, tokenAuth("bad token!"))
		challenge(t, err, "M_FORBIDDEN")
		past := f.clock.t.Add(-time.Second).UnixMilli()
		addToken(t, f.store, "expired", nil, &past)
		_, err = e.Authenticate(ctx, tokenAuth("expired"))
		challenge(t, err, "M_FORBIDDEN")
		addToken(t, f.store, "unlimited", nil, nil)
		for range 3 {
			if _, err := e.Authenticate(ctx, tokenAuth("unlimited")); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestExpiredUnfinishedSessionReleasesItsTokenUse(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		f := newFixture(t, b)
		e := f.engine(f.store)
		ctx := context.Background()
		one := int64(1)
		addToken(t, f.store, "once", &one, nil)
		req := uia.Request{Operation: uia.OpRegister(), Flows: tokenFlow, Auth: map[string]any{"type": uia.StageRegistrationToken, "token": "once"}}
		if _, err := e.Authenticate(ctx, req); err != nil {
			t.Fatal(err)
		}
		f.clock.t = f.clock.t.Add(2 * time.Minute)
		// The next new session sweeps the expired one and frees the use.
		if _, err := e.Authenticate(ctx, req); err != nil {
			t.Fatal(err)
		}
		if rt := getToken(t, f.store, "once"); rt.Pending != 1 || rt.Completed != 0 {
			t.Fatalf("token %+v", rt)
		}
	})
}
