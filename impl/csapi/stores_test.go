package csapi_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const storesPwd = "correct horse battery"

func adPath(prefix, user, typ string) string {
	return prefix + "/user/" + url.PathEscape(user) + "/account_data/" + url.PathEscape(typ)
}

func TestAccountDataOverHTTPIsTheCallersOwn(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", storesPwd)
		bobTok, _ := testenv.CreateUser(t, s, "bob", storesPwd)
		alice := "@alice:" + s.Config.ServerName
		v3, r0 := "/_matrix/client/v3", "/_matrix/client/r0"

		// bootstrapCrossSigning starts by reading this: never set is 404.
		testenv.WantError(t, s.Do(t, "GET", adPath(v3, alice, "m.cross_signing.master"), tok, nil), 404, "M_NOT_FOUND")

		content := `{"encrypted":{"keyid":{"iv":"aXY","ciphertext":"Y2lwaGVy","mac":"bWFj"}},"big":12345678901234567890}`
		testenv.WantStatus(t, s.Do(t, "PUT", adPath(v3, alice, "m.cross_signing.master"), tok, content), 200)
		r := s.Do(t, "GET", adPath(r0, alice, "m.cross_signing.master"), tok, nil)
		testenv.WantStatus(t, r, 200)
		if string(r.Raw) != content {
			t.Fatalf("stored %s, served %s", content, r.Raw)
		}

		testenv.WantError(t, s.Do(t, "GET", adPath(v3, alice, "m.cross_signing.master"), bobTok, nil), 403, "M_FORBIDDEN")
		testenv.WantError(t, s.Do(t, "PUT", adPath(v3, alice, "m.cross_signing.master"), bobTok, `{}`), 403, "M_FORBIDDEN")
		testenv.WantError(t, s.Do(t, "PUT", adPath(v3, alice, "m.push_rules"), tok, `{"global":{}}`), 405, "M_BAD_JSON")
		if r := s.Do(t, "PUT", adPath(v3, alice, "org.example"), tok, `[1]`); r.Status != 400 {
			t.Fatalf("a non-object was answered %d %s", r.Status, r.Raw)
		}
		big := fmt.Sprintf(`{"k":"%0300000d"}`, 0)
		testenv.WantError(t, s.Do(t, "PUT", adPath(v3, alice, "org.example"), tok, big), 413, "M_TOO_LARGE")
		testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/user/x/account_data/m.x", "", nil), 401, "M_MISSING_TOKEN")

		// Room account data: the spec's errors, with the reason.
		room := "/_matrix/client/v3/user/" + url.PathEscape(alice) + "/rooms/" + url.PathEscape("!r:x") + "/account_data/m.tag"
		testenv.WantError(t, s.Do(t, "PUT", room, tok, `{}`), 403, "M_FORBIDDEN")
		testenv.WantError(t, s.Do(t, "GET", room, tok, nil), 404, "M_NOT_FOUND")
		notRoom := "/_matrix/client/v3/user/" + url.PathEscape(alice) + "/rooms/" + url.PathEscape("@u:x") + "/account_data/m.tag"
		testenv.WantError(t, s.Do(t, "GET", notRoom, tok, nil), 400, "M_INVALID_PARAM")

		pos, err := s.App.Services.AccountData.Latest(context.Background(), alice)
		if err != nil || pos != 1 {
			t.Fatalf("stream position %d (%v), want 1", pos, err)
		}
	})
}

func rk(path string) string { return "/_matrix/client/v3/room_keys" + path }

func keyData(fmi, fc int, verified bool, tag string) map[string]any {
	return map[string]any{"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
		"session_data": map[string]any{"ephemeral": "e", "ciphertext": tag, "mac": "m"}}
}

func wantUpdate(t *testing.T, r testenv.Response, count int) string {
	t.Helper()
	testenv.WantStatus(t, r, 200)
	if c, ok := r.Body["count"].(float64); !ok || int(c) != count {
		t.Fatalf("count %v, want %d: %s", r.Body["count"], count, r.Raw)
	}
	if r.Str("etag") == "" {
		t.Fatalf("no etag: %s", r.Raw)
	}
	return r.Str("etag")
}

func TestKeyBackupOverHTTP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", storesPwd)
		bobTok, _ := testenv.CreateUser(t, s, "bob", storesPwd)
		algo := "m.megolm_backup.v1.curve25519-aes-sha2"

		testenv.WantError(t, s.Do(t, "GET", rk("/version"), tok, nil), 404, "M_NOT_FOUND")
		testenv.WantError(t, s.Do(t, "PUT", rk("/keys?version=1"), tok, map[string]any{"rooms": map[string]any{}}), 404, "M_NOT_FOUND")

		r := s.Do(t, "POST", rk("/version"), tok, map[string]any{"algorithm": algo, "auth_data": map[string]any{"public_key": "pk1"}})
		testenv.WantStatus(t, r, 200)
		v1 := r.Str("version")
		r = s.Do(t, "POST", rk("/version"), tok, map[string]any{"algorithm": algo, "auth_data": map[string]any{"public_key": "pk2"}})
		v2 := r.Str("version")
		if v1 != "1" || v2 != "2" {
			t.Fatalf("versions %q %q", v1, v2)
		}
		r = s.Do(t, "GET", rk("/version"), tok, nil)
		testenv.WantStatus(t, r, 200)
		if r.Str("version") != v2 || r.Str("algorithm") != algo || r.Body["count"] != 0.0 || r.Str("etag") == "" ||
			r.Body["auth_data"].(map[string]any)["public_key"] != "pk2" {
			t.Fatalf("current version: %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "GET", rk("/version"), bobTok, nil), 404, "M_NOT_FOUND")

		// Keys go to the current version only.
		r = s.Do(t, "PUT", rk("/keys/!r:x/s1?version="+v1), tok, keyData(0, 0, false, "a"))
		testenv.WantError(t, r, 403, "M_WRONG_ROOM_KEYS_VERSION")
		if r.Str("current_version") != v2 {
			t.Fatalf("current_version: %s", r.Raw)
		}
		e1 := wantUpdate(t, s.Do(t, "PUT", rk("/keys/!r:x/s1?version="+v2), tok, keyData(5, 1, false, "first")), 1)
		wantUpdate(t, s.Do(t, "PUT", rk("/keys/!r:x?version="+v2), tok,
			map[string]any{"sessions": map[string]any{"s2": keyData(0, 0, false, "b")}}), 2)
		e3 := wantUpdate(t, s.Do(t, "PUT", rk("/keys?version="+v2), tok, map[string]any{"rooms": map[string]any{
			"!other:y": map[string]any{"sessions": map[string]any{"s3": keyData(0, 0, false, "c")}}}}), 3)
		if e1 == e3 {
			t.Fatal("etag did not change with the keys")
		}
		// A worse key changes nothing; a better one replaces the stored key.
		if e := wantUpdate(t, s.Do(t, "PUT", rk("/keys/!r:x/s1?version="+v2), tok, keyData(6, 0, false, "worse")), 3); e != e3 {
			t.Fatalf("a refused key changed the etag from %s to %s", e3, e)
		}
		wantUpdate(t, s.Do(t, "PUT", rk("/keys/!r:x/s1?version="+v2), tok, keyData(5, 0, false, "better")), 3)

		r = s.Do(t, "GET", rk("/keys/!r:x/s1?version="+v2), tok, nil)
		testenv.WantStatus(t, r, 200)
		if r.Body["session_data"].(map[string]any)["ciphertext"] != "better" || r.Body["forwarded_count"] != 0.0 {
			t.Fatalf("stored key: %s", r.Raw)
		}
		r = s.Do(t, "GET", rk("/keys/!r:x?version="+v2), tok, nil)
		testenv.WantStatus(t, r, 200)
		if len(r.Body["sessions"].(map[string]any)) != 2 {
			t.Fatalf("room keys: %s", r.Raw)
		}
		r = s.Do(t, "GET", rk("/keys/!none:x?version="+v2), tok, nil)
		testenv.WantStatus(t, r, 200)
		if sessions, ok := r.Body["sessions"].(map[string]any); !ok || len(sessions) != 0 {
			t.Fatalf("a room without keys: %s", r.Raw)
		}
		r = s.Do(t, "GET", rk("/keys?version="+v2), tok, nil)
		testenv.WantStatus(t, r, 200)
		if len(r.Body["rooms"].(map[string]any)) != 2 {
			t.Fatalf("all keys: %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "GET", rk("/keys/!r:x/nope?version="+v2), tok, nil), 404, "M_NOT_FOUND")
		testenv.WantError(t, s.Do(t, "GET", rk("/keys?version="+v2), bobTok, nil), 404, "M_NOT_FOUND")
		if r := s.Do(t, "PUT", rk("/keys/!r:x/s9?version="+v2), tok, map[string]any{"first_message_index": -1,
			"forwarded_count": 0, "is_verified": false, "session_data": map[string]any{}}); r.Status != 400 {
			t.Fatalf("a negative index was answered %d %s", r.Status, r.Raw)
		}

		// auth_data can be updated, with the same algorithm and version.
		testenv.WantStatus(t, s.Do(t, "PUT", rk("/version/"+v2), tok, map[string]any{"algorithm": algo,
			"auth_data": map[string]any{"public_key": "pk2", "signatures": map[string]any{}}, "version": v2}), 200)
		testenv.WantError(t, s.Do(t, "PUT", rk("/version/"+v2), tok, map[string]any{"algorithm": algo,
			"auth_data": map[string]any{"public_key": "pk2"}, "version": v1}), 400, "M_INVALID_PARAM")
		testenv.WantError(t, s.Do(t, "PUT", rk("/version/7"), tok, map[string]any{"algorithm": algo,
			"auth_data": map[string]any{"public_key": "pk2"}}), 404, "M_NOT_FOUND")

		wantUpdate(t, s.Do(t, "DELETE", rk("/keys/!r:x/s1?version="+v2), tok, nil), 2)
		wantUpdate(t, s.Do(t, "DELETE", rk("/keys/!r:x?version="+v2), tok, nil), 1)
		wantUpdate(t, s.Do(t, "DELETE", rk("/keys?version="+v2), tok, nil), 0)

		testenv.WantStatus(t, s.Do(t, "DELETE", rk("/version/"+v2), tok, nil), 200)
		testenv.WantStatus(t, s.Do(t, "DELETE", rk("/version/"+v2), tok, nil), 200)
		testenv.WantError(t, s.Do(t, "DELETE", rk("/version/9"), tok, nil), 404, "M_NOT_FOUND")
		testenv.WantError(t, s.Do(t, "GET", rk("/version/"+v2), tok, nil), 404, "M_NOT_FOUND")
		if r := s.Do(t, "GET", rk("/version"), tok, nil); r.Str("version") != v1 {
			t.Fatalf("after deleting %s the current version is %s", v2, r.Raw)
		}
	})
}

func TestDeactivationTakesAccountDataAndKeyBackupsAlong(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", storesPwd)
		bobTok, _ := testenv.CreateUser(t, s, "bob", storesPwd)
		alice := "@alice:" + s.Config.ServerName
		bob := "@bob:" + s.Config.ServerName
		for _, who := range []struct{ user, tok string }{{alice, tok}, {bob, bobTok}} {
			testenv.WantStatus(t, s.Do(t, "PUT", adPath("/_matrix/client/v3", who.user, "m.secret_storage.default_key"), who.tok, `{"key":"k"}`), 200)
			r := s.Do(t, "POST", rk("/version"), who.tok, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "p"}})
			testenv.WantStatus(t, r, 200)
			wantUpdate(t, s.Do(t, "PUT", rk("/keys/!r:x/s?version="+r.Str("version")), who.tok, keyData(0, 0, false, "x")), 1)
		}
		r := s.Do(t, "POST", "/_matrix/client/v3/account/deactivate", tok, map[string]any{"auth": map[string]any{
			"type": "m.login.password", "password": storesPwd, "identifier": map[string]any{"type": "m.id.user", "user": alice}}})
		testenv.WantStatus(t, r, 200)

		ctx := context.Background()
		for _, m := range []any{(*storage.AccountData)(nil), (*storage.AccountDataStream)(nil), (*storage.KeyBackupVersion)(nil), (*storage.KeyBackupSession)(nil)} {
			n, err := s.App.Store.R.NewSelect().Model(m).Where("user_id = ?", alice).Count(ctx)
			if err != nil || n != 0 {
				t.Fatalf("%T: %d rows of the deactivated user left (%v)", m, n, err)
			}
			if n, _ := s.App.Store.R.NewSelect().Model(m).Where("user_id = ?", bob).Count(ctx); n == 0 {
				t.Fatalf("%T: bob's rows went too", m)
			}
		}
	})
}

func TestStoresAreSharedByServersOnOneDatabase(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	a := testenv.Start(t, testenv.Postgres, nil)
	cfg := *a.Config
	cfg.Listen = "127.0.0.1:0"
	other := testenv.StartConfig(t, &cfg)
	tok, _ := testenv.CreateUser(t, a, "alice", storesPwd)
	alice := "@alice:" + a.Config.ServerName

	testenv.WantStatus(t, a.Do(t, "PUT", adPath("/_matrix/client/v3", alice, "m.megolm_backup.v1"), tok, `{"encrypted":{}}`), 200)
	testenv.WantStatus(t, other.Do(t, "GET", adPath("/_matrix/client/v3", alice, "m.megolm_backup.v1"), tok, nil), 200)

	r := a.Do(t, "POST", rk("/version"), tok, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "p"}})
	v := r.Str("version")
	wantUpdate(t, other.Do(t, "PUT", rk("/keys/!r:x/s?version="+v), tok, keyData(0, 0, false, "x")), 1)
	testenv.WantStatus(t, a.Do(t, "POST", rk("/version"), tok, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "q"}}), 200)
	r = other.Do(t, "PUT", rk("/keys/!r:x/s?version="+v), tok, keyData(0, 0, false, "x"))
	testenv.WantError(t, r, 403, "M_WRONG_ROOM_KEYS_VERSION")
}
