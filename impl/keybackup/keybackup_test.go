package keybackup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/keybackup"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	alice, bob = "@alice:test", "@bob:test"
	algo       = "m.megolm_backup.v1.curve25519-aes-sha2"
	room       = "!room:test"
)

var ctx = context.Background()

func open(t *testing.T, dsn string) *storage.Store {
	t.Helper()
	st, err := storage.Open(ctx, dsn, storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newService(t *testing.T, b testenv.Backend) (*keybackup.Service, string) {
	t.Helper()
	dsn := testenv.NewDatabase(t, b)
	return &keybackup.Service{Store: open(t, dsn)}, dsn
}

func wantErr(t *testing.T, err error, status int, code string) *matrixerr.Error {
	t.Helper()
	me, ok := matrixerr.As(err)
	if !ok || me.Status != status || me.Code != code {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
	return me
}

func create(t *testing.T, s *keybackup.Service, user, pub string) string {
	t.Helper()
	v, err := s.CreateVersion(ctx, user, algo, []byte(`{"public_key":"`+pub+`","signatures":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func key(fmi, fc int64, verified bool, tag string) keybackup.KeyData {
	return keybackup.KeyData{FirstMessageIndex: fmi, ForwardedCount: fc, IsVerified: verified,
		SessionData: json.RawMessage(`{"ephemeral":"e","ciphertext":"` + tag + `","mac":"m"}`)}
}

func put(t *testing.T, s *keybackup.Service, user, version string, keys keybackup.Keys) keybackup.Update {
	t.Helper()
	u, err := s.PutKeys(ctx, user, version, keys)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func one(roomID, session string, k keybackup.KeyData) keybackup.Keys {
	return keybackup.Keys{roomID: {session: k}}
}

// ciphertext is the tag of the stored key of a session.
func ciphertext(t *testing.T, s *keybackup.Service, version, roomID, session string) string {
	t.Helper()
	k, err := s.GetKey(ctx, alice, version, roomID, session)
	if err != nil {
		t.Fatal(err)
	}
	var sd struct{ Ciphertext string }
	_ = json.Unmarshal(k.SessionData, &sd)
	return sd.Ciphertext
}

func TestVersionsAreCreatedNumberedAndDescribed(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		_, err := s.GetVersion(ctx, alice, "")
		wantErr(t, err, 404, "M_NOT_FOUND")

		if v := create(t, s, alice, "pub1"); v != "1" {
			t.Fatalf("first version %q", v)
		}
		info, err := s.GetVersion(ctx, alice, "")
		if err != nil || info.Version != "1" || info.Algorithm != algo || info.Count != 0 || info.Etag == "" ||
			string(info.AuthData) != `{"public_key":"pub1","signatures":{}}` {
			t.Fatalf("current: %+v %v", info, err)
		}
		if v := create(t, s, alice, "pub2"); v != "2" {
			t.Fatalf("second version %q", v)
		}
		if info, _ := s.GetVersion(ctx, alice, ""); info.Version != "2" {
			t.Fatalf("current is %s, want 2", info.Version)
		}
		if info, _ := s.GetVersion(ctx, alice, "1"); !strings.Contains(string(info.AuthData), "pub1") {
			t.Fatalf("version 1 lost: %+v", info)
		}
		for _, v := range []string{"3", "0", "-1", "01", "abc"} {
			_, err := s.GetVersion(ctx, alice, v)
			wantErr(t, err, 404, "M_NOT_FOUND")
		}
		// Backups are per user.
		_, err = s.GetVersion(ctx, bob, "1")
		wantErr(t, err, 404, "M_NOT_FOUND")
		if v := create(t, s, bob, "b"); v != "1" {
			t.Fatalf("bob's first version %q", v)
		}
	})
}

func TestCreateRefusesBadAuthData(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		for _, ad := range []string{``, `[]`, `"x"`, `{`} {
			_, err := s.CreateVersion(ctx, alice, algo, []byte(ad))
			wantErr(t, err, 400, "M_BAD_JSON")
		}
		_, err := s.CreateVersion(ctx, alice, "", []byte(`{}`))
		wantErr(t, err, 400, "M_INVALID_PARAM")
		s.Limits.MaxAuthDataBytes = 20
		_, err = s.CreateVersion(ctx, alice, algo, []byte(`{"public_key":"`+strings.Repeat("k", 20)+`"}`))
		wantErr(t, err, 413, "M_TOO_LARGE")
		_, err = s.GetVersion(ctx, alice, "")
		wantErr(t, err, 404, "M_NOT_FOUND")
	})
}

func TestCreatingVersionsIsRateLimitedPerAccount(t *testing.T) {
	s, _ := newService(t, testenv.SQLite)
	rl := config.Defaults().RateLimit
	rl.Enabled, rl.PerAccount = true, config.Bucket{Rate: 0.001, Burst: 2}
	s.Rate = ratelimit.New(rl, s.Store)
	create(t, s, alice, "p")
	create(t, s, alice, "p")
	_, err := s.CreateVersion(ctx, alice, algo, []byte(`{"public_key":"p"}`))
	if me := wantErr(t, err, 429, "M_LIMIT_EXCEEDED"); me.RetryAfter <= 0 {
		t.Fatalf("no retry_after: %+v", me)
	}
	create(t, s, bob, "p") // another account has its own bucket
	// Writing keys is not limited: a client backs up in many requests.
	for i := range 5 {
		put(t, s, alice, "2", one(room, fmt.Sprint(i), key(0, 0, false, "k")))
	}
}

func TestUpdateReplacesAuthDataOnlyWithTheSameAlgorithmAndVersion(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		v := create(t, s, alice, "pub1")
		newAD := []byte(`{"public_key":"pub1","signatures":{"@alice:test":{"ed25519:DEV":"sig"}}}`)
		wantErr(t, s.UpdateVersion(ctx, alice, v, "org.other", newAD, nil), 400, "M_INVALID_PARAM")
		other := "2"
		wantErr(t, s.UpdateVersion(ctx, alice, v, algo, newAD, &other), 400, "M_INVALID_PARAM")
		wantErr(t, s.UpdateVersion(ctx, alice, "9", algo, newAD, nil), 404, "M_NOT_FOUND")
		wantErr(t, s.UpdateVersion(ctx, bob, v, algo, newAD, nil), 404, "M_NOT_FOUND")
		if err := s.UpdateVersion(ctx, alice, v, algo, newAD, &v); err != nil {
			t.Fatal(err)
		}
		info, _ := s.GetVersion(ctx, alice, v)
		if !strings.Contains(string(info.AuthData), "ed25519:DEV") {
			t.Fatalf("auth_data not updated: %s", info.AuthData)
		}
		if err := s.DeleteVersion(ctx, alice, v); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.UpdateVersion(ctx, alice, v, algo, newAD, nil), 404, "M_NOT_FOUND")
	})
}

func TestDeletingAVersionDropsItsKeysAndIsRepeatable(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		v1 := create(t, s, alice, "p1")
		v2 := create(t, s, alice, "p2")
		put(t, s, alice, v2, one(room, "s1", key(0, 0, false, "a")))
		wantErr(t, s.DeleteVersion(ctx, alice, "7"), 404, "M_NOT_FOUND")
		if err := s.DeleteVersion(ctx, alice, v2); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteVersion(ctx, alice, v2); err != nil {
			t.Fatalf("deleting again: %v", err)
		}
		_, err := s.GetVersion(ctx, alice, v2)
		wantErr(t, err, 404, "M_NOT_FOUND")
		_, err = s.GetKeys(ctx, alice, v2, "")
		wantErr(t, err, 404, "M_NOT_FOUND")
		// The previous version is current again; numbers are not reused.
		if info, _ := s.GetVersion(ctx, alice, ""); info.Version != v1 {
			t.Fatalf("current %q, want %s", info.Version, v1)
		}
		if v := create(t, s, alice, "p3"); v != "3" {
			t.Fatalf("new version %q, want 3", v)
		}
		n, err := s.Store.R.NewSelect().Model((*storage.KeyBackupSession)(nil)).Where("user_id = ?", alice).Count(ctx)
		if err != nil || n != 0 {
			t.Fatalf("%d keys left (%v)", n, err)
		}
	})
}

func TestKeysGoOnlyToTheCurrentVersion(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		_, err := s.PutKeys(ctx, alice, "1", one(room, "s", key(0, 0, false, "a")))
		wantErr(t, err, 404, "M_NOT_FOUND")
		v1 := create(t, s, alice, "p1")
		v2 := create(t, s, alice, "p2")
		_, err = s.PutKeys(ctx, alice, v1, one(room, "s", key(0, 0, false, "a")))
		me := wantErr(t, err, 403, "M_WRONG_ROOM_KEYS_VERSION")
		if me.Extra["current_version"] != v2 {
			t.Fatalf("current_version %v, want %s", me.Extra["current_version"], v2)
		}
		_, err = s.PutKeys(ctx, alice, "5", one(room, "s", key(0, 0, false, "a")))
		wantErr(t, err, 404, "M_NOT_FOUND")
		// Bob has no version 2 of his own.
		_, err = s.PutKeys(ctx, bob, v2, one(room, "s", key(0, 0, false, "a")))
		wantErr(t, err, 404, "M_NOT_FOUND")
		if u := put(t, s, alice, v2, one(room, "s", key(0, 0, false, "a"))); u.Count != 1 {
			t.Fatalf("count %d", u.Count)
		}
		// Old versions stay readable and deletable.
		if keys, err := s.GetKeys(ctx, alice, v1, ""); err != nil || len(keys) != 0 {
			t.Fatalf("v1: %v %v", keys, err)
		}
		if _, err := s.DeleteKeys(ctx, alice, v1, "", ""); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAStoredKeyIsReplacedOnlyByABetterOne(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		v := create(t, s, alice, "p")
		steps := []struct {
			k    keybackup.KeyData
			want string // the stored key afterwards
		}{
			{key(5, 2, false, "first"), "first"},
			{key(5, 2, false, "equal"), "first"},          // equal on all three: kept
			{key(6, 0, false, "later-index"), "first"},    // higher first_message_index loses
			{key(5, 3, false, "more-forwarded"), "first"}, // higher forwarded_count loses
			{key(5, 1, false, "less-forwarded"), "less-forwarded"},
			{key(3, 9, false, "earlier-index"), "earlier-index"}, // index beats forwarded_count
			{key(9, 9, true, "verified"), "verified"},            // verified beats everything
			{key(0, 0, false, "unverified"), "verified"},         // unverified never replaces verified
			{key(8, 9, true, "verified-earlier"), "verified-earlier"},
		}
		for i, st := range steps {
			put(t, s, alice, v, one(room, "sess", st.k))
			if got := ciphertext(t, s, v, room, "sess"); got != st.want {
				t.Fatalf("step %d (%+v): stored %q, want %q", i, st.k, got, st.want)
			}
		}
		k, _ := s.GetKey(ctx, alice, v, room, "sess")
		if k.FirstMessageIndex != 8 || k.ForwardedCount != 9 || !k.IsVerified {
			t.Fatalf("metadata %+v", k)
		}
	})
}

func TestBetterFollowsTheSpecsOrder(t *testing.T) {
	cases := []struct {
		n, o keybackup.KeyData
		want bool
	}{
		{key(10, 10, true, ""), key(0, 0, false, ""), true},
		{key(0, 0, false, ""), key(10, 10, true, ""), false},
		{key(1, 10, false, ""), key(2, 0, false, ""), true},
		{key(2, 0, true, ""), key(1, 10, true, ""), false},
		{key(1, 0, false, ""), key(1, 1, false, ""), true},
		{key(1, 1, false, ""), key(1, 1, false, ""), false},
	}
	for i, c := range cases {
		if got := keybackup.Better(c.n, c.o); got != c.want {
			t.Errorf("case %d: Better = %v", i, got)
		}
	}
}

func TestEtagAndCountFollowTheStoredKeys(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		v := create(t, s, alice, "p")
		info, _ := s.GetVersion(ctx, alice, v)
		e0 := info.Etag
		u1 := put(t, s, alice, v, keybackup.Keys{
			room:         {"s1": key(0, 0, false, "a"), "s2": key(0, 0, false, "b")},
			"!other:elk": {"s1": key(0, 0, false, "c")},
		})
		if u1.Count != 3 || u1.Etag == e0 {
			t.Fatalf("after adding 3: %+v (etag before %s)", u1, e0)
		}
		// Nothing better: nothing changes, not even the etag.
		u2 := put(t, s, alice, v, one(room, "s1", key(1, 0, false, "worse")))
		if u2 != u1 {
			t.Fatalf("a refused key changed %+v to %+v", u1, u2)
		}
		// A replacement changes the etag, not the count.
		u3 := put(t, s, alice, v, one(room, "s1", key(0, 0, true, "better")))
		if u3.Count != 3 || u3.Etag == u1.Etag {
			t.Fatalf("after a replacement: %+v", u3)
		}
		info, _ = s.GetVersion(ctx, alice, v)
		if info.Count != 3 || info.Etag != u3.Etag {
			t.Fatalf("version says %+v, last write %+v", info, u3)
		}
		u4, err := s.DeleteKeys(ctx, alice, v, room, "nope")
		if err != nil || u4 != u3 {
			t.Fatalf("deleting nothing: %+v %v", u4, err)
		}
		u5, _ := s.DeleteKeys(ctx, alice, v, room, "s2")
		if u5.Count != 2 || u5.Etag == u3.Etag {
			t.Fatalf("after deleting one: %+v", u5)
		}
		u6, _ := s.DeleteKeys(ctx, alice, v, room, "")
		if u6.Count != 1 {
			t.Fatalf("after deleting a room: %+v", u6)
		}
		u7, _ := s.DeleteKeys(ctx, alice, v, "", "")
		if u7.Count != 0 {
			t.Fatalf("after deleting all: %+v", u7)
		}
		// Etags never repeat, so a client cannot mistake a new state for
		// one it saw.
		etags := []string{e0, u1.Etag, u3.Etag, u5.Etag, u6.Etag, u7.Etag}
		slices.Sort(etags)
		if len(slices.Compact(etags)) != 6 {
			t.Fatalf("etags repeat: %v", etags)
		}
	})
}

func TestKeysAreReadByVersionRoomAndSession(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		v := create(t, s, alice, "p")
		put(t, s, alice, v, keybackup.Keys{room: {"s1": key(0, 0, false, "a"), "s2": key(1, 0, false, "b")}, "!r2:x": {"s3": key(0, 0, false, "c")}})
		all, err := s.GetKeys(ctx, alice, v, "")
		if err != nil || len(all) != 2 || len(all[room]) != 2 || len(all["!r2:x"]) != 1 {
			t.Fatalf("all: %v %v", all, err)
		}
		r, err := s.GetKeys(ctx, alice, v, room)
		if err != nil || len(r) != 1 || len(r[room]) != 2 {
			t.Fatalf("room: %v %v", r, err)
		}
		if r, err := s.GetKeys(ctx, alice, v, "!empty:x"); err != nil || len(r) != 0 {
			t.Fatalf("a room without keys: %v %v", r, err)
		}
		if got := ciphertext(t, s, v, room, "s2"); got != "b" {
			t.Fatalf("s2: %q", got)
		}
		_, err = s.GetKey(ctx, alice, v, room, "missing")
		wantErr(t, err, 404, "M_NOT_FOUND")
		_, err = s.GetKey(ctx, alice, "9", room, "s1")
		wantErr(t, err, 404, "M_NOT_FOUND")
		// Bob sees none of it.
		_, err = s.GetKeys(ctx, bob, v, "")
		wantErr(t, err, 404, "M_NOT_FOUND")
	})
}

func TestBadKeysAreRefusedWholly(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		s.Limits = keybackup.Limits{MaxSessionDataBytes: 100, MaxKeys: 3}
		v := create(t, s, alice, "p")
		good := key(0, 0, false, "ok")
		bad := []struct {
			keys   keybackup.Keys
			status int
			code   string
		}{
			{keybackup.Keys{room: {"s": good, "t": key(-1, 0, false, "x")}}, 400, "M_BAD_JSON"},
			{keybackup.Keys{room: {"s": good, "t": key(0, -1, false, "x")}}, 400, "M_BAD_JSON"},
			{keybackup.Keys{room: {"s": good, "t": {SessionData: json.RawMessage(`"x"`)}}}, 400, "M_BAD_JSON"},
			{keybackup.Keys{room: {"s": good, "t": {}}}, 400, "M_BAD_JSON"},
			{keybackup.Keys{room: {"s": good}, "": {"s": good}}, 400, "M_INVALID_PARAM"},
			{keybackup.Keys{room: {"s": good, "": good}}, 400, "M_INVALID_PARAM"},
			{keybackup.Keys{room: {"s": good, strings.Repeat("s", 256): good}}, 400, "M_INVALID_PARAM"},
			{keybackup.Keys{room: {"s": good, "t": key(0, 0, false, strings.Repeat("x", 100))}}, 413, "M_TOO_LARGE"},
			{keybackup.Keys{room: {"a": good, "b": good, "c": good, "d": good}}, 413, "M_TOO_LARGE"},
		}
		for _, c := range bad {
			_, err := s.PutKeys(ctx, alice, v, c.keys)
			wantErr(t, err, c.status, c.code)
		}
		if info, _ := s.GetVersion(ctx, alice, v); info.Count != 0 {
			t.Fatalf("a refused request stored %d keys", info.Count)
		}
		put(t, s, alice, v, keybackup.Keys{room: {"a": good, "b": good, "c": good}})
		put(t, s, alice, v, keybackup.Keys{room: {"a": key(0, 0, true, "v")}}) // replacing stays within the limit
		_, err := s.PutKeys(ctx, alice, v, one(room, "d", good))
		wantErr(t, err, 413, "M_TOO_LARGE")
	})
}

func TestConcurrentWritersOnOneDatabaseKeepVersionsAndCountsExact(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s1, dsn := newService(t, b)
		// A second Service on its own handles stands for a second process.
		s2 := &keybackup.Service{Store: open(t, dsn)}
		var wg sync.WaitGroup
		versions := make(chan string, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := []*keybackup.Service{s1, s2}[i%2]
				v, err := s.CreateVersion(ctx, alice, algo, []byte(`{"public_key":"p"}`))
				if err != nil {
					t.Error(err)
				}
				versions <- v
			}()
		}
		wg.Wait()
		close(versions)
		var got []string
		for v := range versions {
			got = append(got, v)
		}
		slices.Sort(got)
		if fmt.Sprint(got) != "[1 10 2 3 4 5 6 7 8 9]" {
			t.Fatalf("versions %v", got)
		}
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := []*keybackup.Service{s1, s2}[i%2]
				// Every session is written twice, by both "processes".
				_, err := s.PutKeys(ctx, alice, "10", one(room, fmt.Sprintf("s%d", i/2), key(int64(i%2), 0, false, "x")))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		info, _ := s1.GetVersion(ctx, alice, "10")
		n, _ := s1.Store.R.NewSelect().Model((*storage.KeyBackupSession)(nil)).Where("user_id = ? AND version = 10", alice).Count(ctx)
		if info.Count != 20 || n != 20 {
			t.Fatalf("count %d, rows %d; want 20", info.Count, n)
		}
		keys, _ := s2.GetKeys(ctx, alice, "10", room)
		for sess, k := range keys[room] {
			if k.FirstMessageIndex != 0 {
				t.Fatalf("%s kept the worse key (index %d)", sess, k.FirstMessageIndex)
			}
		}
	})
}

func TestBackupsSurviveARestart(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		dsn := testenv.NewDatabase(t, b)
		st, err := storage.Open(ctx, dsn, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := &keybackup.Service{Store: st}
		v := create(t, s, alice, "p")
		u := put(t, s, alice, v, one(room, "s", key(0, 0, false, "kept")))
		st.Close()

		s = &keybackup.Service{Store: open(t, dsn)}
		info, err := s.GetVersion(ctx, alice, "")
		if err != nil || info.Version != v || info.Count != 1 || info.Etag != u.Etag {
			t.Fatalf("after restart: %+v %v (last write %+v)", info, err, u)
		}
		if got := ciphertext(t, s, v, room, "s"); got != "kept" {
			t.Fatalf("key %q", got)
		}
	})
}

func TestDeleteUserRemovesEveryBackupOfTheUser(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s, _ := newService(t, b)
		v := create(t, s, alice, "p")
		put(t, s, alice, v, one(room, "s", key(0, 0, false, "a")))
		vb := create(t, s, bob, "p")
		put(t, s, bob, vb, one(room, "s", key(0, 0, false, "b")))
		if err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			return keybackup.DeleteUser(ctx, tx, alice)
		}); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetVersion(ctx, alice, "")
		wantErr(t, err, 404, "M_NOT_FOUND")
		n, _ := s.Store.R.NewSelect().Model((*storage.KeyBackupSession)(nil)).Where("user_id = ?", alice).Count(ctx)
		if n != 0 {
			t.Fatalf("%d keys left", n)
		}
		if info, err := s.GetVersion(ctx, bob, ""); err != nil || info.Count != 1 {
			t.Fatalf("bob's backup: %+v %v", info, err)
		}
	})
}
