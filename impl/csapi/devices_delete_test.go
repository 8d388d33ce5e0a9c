package csapi_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// password is an m.login.password auth dict for user (a localpart), in
// session if not "".
func password(session, user, pass string) map[string]any {
	a := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user},
		"password":   pass,
	}
	if session != "" {
		a["session"] = session
	}
	return a
}

// wantChallenge checks a UIA 401 offering m.login.password and returns its
// session.
func wantChallenge(t *testing.T, r testenv.Response) string {
	t.Helper()
	testenv.WantStatus(t, r, 401)
	flows, _ := r.Body["flows"].([]any)
	if len(flows) != 1 || fmt.Sprint(flows[0]) != "map[stages:[m.login.password]]" || r.Str("session") == "" {
		t.Fatalf("not an m.login.password challenge: %s", r.Raw)
	}
	return r.Str("session")
}

func tokenWorks(t *testing.T, s *testenv.Server, token string) bool {
	t.Helper()
	r := s.Do(t, "GET", v3+"/account/whoami", token, nil)
	if r.Status == 401 {
		testenv.WantError(t, r, 401, "M_UNKNOWN_TOKEN")
		return false
	}
	testenv.WantStatus(t, r, 200)
	return true
}

func deviceCount(t *testing.T, s *testenv.Server, model any, userID, deviceID string) int {
	t.Helper()
	n, err := s.App.Store.R.NewSelect().Model(model).Where("user_id = ? AND device_id = ?", userID, deviceID).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func TestDeletingADeviceNeedsThePasswordAndKillsItsTokenAtOnce(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, noAutoFlush)
		const alice = "@alice:localhost"
		tokA, _ := testenv.CreateUser(t, s, "alice", "alice-password")
		tokB := testenv.Login(t, s, alice, "PHONE")
		if _, err := s.App.Store.DB.NewInsert().Model(&storage.DeviceKeys{UserID: alice, DeviceID: "PHONE", KeyJSON: "{}"}).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		// PHONE is in use: its last-seen is buffered, not yet written.
		if !tokenWorks(t, s, tokB) {
			t.Fatal("PHONE's token does not work")
		}
		path := v3 + "/devices/PHONE"

		session := wantChallenge(t, s.Do(t, "DELETE", path, tokA, nil))
		r := s.Do(t, "DELETE", path, tokA, map[string]any{"auth": password(session, "alice", "wrong")})
		wantChallenge(t, r)
		if r.Str("errcode") != "M_FORBIDDEN" {
			t.Fatalf("wrong password: %s", r.Raw)
		}
		if !tokenWorks(t, s, tokB) {
			t.Fatal("a failed UIA deleted the device")
		}
		streamBefore := streamLen(t, s, alice)

		r = s.Do(t, "DELETE", path, tokA, map[string]any{"auth": password(session, "alice", "alice-password")})
		testenv.WantStatus(t, r, 200)
		if len(r.Body) != 0 {
			t.Fatalf("delete answered %s, want {}", r.Raw)
		}
		if tokenWorks(t, s, tokB) {
			t.Fatal("the deleted device's token still works")
		}
		if deviceCount(t, s, (*storage.Device)(nil), alice, "PHONE") != 0 ||
			deviceCount(t, s, (*storage.AccessToken)(nil), alice, "PHONE") != 0 ||
			deviceCount(t, s, (*storage.DeviceKeys)(nil), alice, "PHONE") != 0 {
			t.Fatal("device, token or keys left behind")
		}
		if got := streamLen(t, s, alice); got != streamBefore+1 {
			t.Fatalf("%d stream rows after the delete, want %d", got, streamBefore+1)
		}
		testenv.WantError(t, s.Do(t, "GET", path, tokA, nil), 404, "M_NOT_FOUND")

		// The buffered last-seen of PHONE must not bring it back.
		if err := s.App.LastSeen.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if deviceCount(t, s, (*storage.Device)(nil), alice, "PHONE") != 0 {
			t.Fatal("a last-seen flush resurrected the deleted device")
		}

		// Deleting it again (one request, as matrix-nio does): 200, no change.
		r = s.Do(t, "DELETE", path, tokA, map[string]any{"auth": password("", "alice", "alice-password")})
		testenv.WantStatus(t, r, 200)
		if got := streamLen(t, s, alice); got != streamBefore+1 {
			t.Fatalf("deleting a deleted device changed the stream (%d rows)", got)
		}
		if !tokenWorks(t, s, tokA) {
			t.Fatal("the caller's own token died")
		}
	})
}

func TestUsersCannotDeleteEachOthersDevices(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tokA, devA := testenv.CreateUser(t, s, "alice", "alice-password")
		tokB, devB := testenv.CreateUser(t, s, "bob", "bob-password")

		// Alice's token with bob's password: the UIA user must be the caller.
		r := s.Do(t, "DELETE", v3+"/devices/"+devB, tokA, map[string]any{"auth": password("", "bob", "bob-password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		r = s.Do(t, "POST", v3+"/delete_devices", tokA, map[string]any{"devices": []string{devB}, "auth": password("", "bob", "bob-password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")

		// Bob authenticates as himself, naming alice's device: nothing of
		// alice's goes, and the answer does not reveal that it exists.
		r = s.Do(t, "DELETE", v3+"/devices/"+devA, tokB, map[string]any{"auth": password("", "bob", "bob-password")})
		testenv.WantStatus(t, r, 200)
		r = s.Do(t, "POST", v3+"/delete_devices", tokB, map[string]any{"devices": []string{devA}, "auth": password("", "bob", "bob-password")})
		testenv.WantStatus(t, r, 200)

		if !tokenWorks(t, s, tokA) || !tokenWorks(t, s, tokB) {
			t.Fatal("a device of the other user was deleted")
		}
		if streamLen(t, s, "@alice:localhost") != 1 || streamLen(t, s, "@bob:localhost") != 1 {
			t.Fatal("the streams changed")
		}
	})
}

func TestUIASessionForOneDeviceCannotDeleteAnother(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		const alice = "@alice:localhost"
		tok, _ := testenv.CreateUser(t, s, "alice", "alice-password")
		tokA := testenv.Login(t, s, alice, "DEVA")
		tokB := testenv.Login(t, s, alice, "DEVB")

		sessA := wantChallenge(t, s.Do(t, "DELETE", v3+"/devices/DEVA", tok, nil))
		r := s.Do(t, "DELETE", v3+"/devices/DEVB", tok, map[string]any{"auth": password(sessA, "alice", "alice-password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		r = s.Do(t, "POST", v3+"/delete_devices", tok, map[string]any{"devices": []string{"DEVA", "DEVB"}, "auth": password(sessA, "alice", "alice-password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")

		// A bulk session is bound to its exact set of devices.
		sessBulk := wantChallenge(t, s.Do(t, "POST", v3+"/delete_devices", tok, map[string]any{"devices": []string{"DEVA"}}))
		r = s.Do(t, "POST", v3+"/delete_devices", tok, map[string]any{"devices": []string{"DEVA", "DEVB"}, "auth": password(sessBulk, "alice", "alice-password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		if !tokenWorks(t, s, tokA) || !tokenWorks(t, s, tokB) {
			t.Fatal("a refused session deleted a device")
		}

		// The session does delete the device it was started for.
		r = s.Do(t, "DELETE", v3+"/devices/DEVA", tok, map[string]any{"auth": password(sessA, "alice", "alice-password")})
		testenv.WantStatus(t, r, 200)
		if tokenWorks(t, s, tokA) || !tokenWorks(t, s, tokB) {
			t.Fatal("the session did not delete exactly DEVA")
		}
	})
}

func TestDeleteDevicesRemovesAllListedDevicesOnR0WithQueryToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		const alice = "@alice:localhost"
		tok, own := testenv.CreateUser(t, s, "alice", "alice-password")
		toks := map[string]string{}
		for _, d := range []string{"D1", "D2", "D3", "KEEP"} {
			toks[d] = testenv.Login(t, s, alice, d)
		}
		path := "/_matrix/client/r0/delete_devices?access_token=" + tok
		list := []string{"D1", "D2", "D3", "D2", "NEVER"}
		session := wantChallenge(t, s.Do(t, "POST", path, "", map[string]any{"devices": list}))
		r := s.Do(t, "POST", path, "", map[string]any{"devices": list, "auth": password(session, "alice", "alice-password")})
		testenv.WantStatus(t, r, 200)
		for d, tk := range toks {
			if works := tokenWorks(t, s, tk); works != (d == "KEEP") {
				t.Errorf("device %s: token works = %v", d, works)
			}
		}
		var deleted []string
		if err := s.App.Store.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Column("device_id").
			Where("user_id = ? AND deleted", alice).Order("device_id").Scan(context.Background(), &deleted); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(deleted) != "[D1 D2 D3]" {
			t.Fatalf("deletion stream rows %v", deleted)
		}
		ds := rawDevices(t, s.Do(t, "GET", v3+"/devices", tok, nil))
		if len(ds) != 2 {
			t.Fatalf("%d devices left, want %s and KEEP", len(ds), own)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/delete_devices", tok, map[string]any{"auth": password("", "alice", "alice-password")}), 400, "M_BAD_JSON")
	})
}

// BenchmarkDeleteDevices10000OverHTTP measures POST /delete_devices with
// 10,000 IDs, UIA included (one-request password auth with cheap argon2).
func BenchmarkDeleteDevices10000OverHTTP(b *testing.B) {
	for _, backend := range []testenv.Backend{testenv.SQLite, testenv.Postgres} {
		b.Run(string(backend), func(b *testing.B) {
			testenv.RequireBackend(b, backend)
			s := testenv.Start(b, backend, nil)
			tok, _ := testenv.CreateUser(b, s, "alice", "alice-password")
			ids := make([]string, 10000)
			for i := range ids {
				ids[i] = fmt.Sprintf("DEV%06d", i)
			}
			body := map[string]any{"devices": ids, "auth": password("", "alice", "alice-password")}
			for b.Loop() {
				b.StopTimer()
				testenv.InsertDevices(b, s.App.Store, "@alice:localhost", ids)
				b.StartTimer()
				testenv.WantStatus(b, s.Do(b, "POST", v3+"/delete_devices", tok, body), 200)
			}
		})
	}
}
