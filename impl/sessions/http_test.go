package sessions_test

// The rules of issue 15 through real HTTP on loopback (impl/testenv), on
// SQLite and PostgreSQL.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	v1 = "/_matrix/client/v1"
	v3 = "/_matrix/client/v3"
)

func pwLogin(user string, refresh bool) map[string]any {
	return map[string]any{"type": "m.login.password", "password": pwd, "refresh_token": refresh,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

func wantSoftLogout(t *testing.T, r testenv.Response, want bool) {
	t.Helper()
	if got, _ := r.Body["soft_logout"].(bool); got != want {
		t.Fatalf("want soft_logout %v: %s", want, r.Raw)
	}
}

func TestRefreshTokensOverHTTP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.AccessTokenLifetime = 2 * time.Minute })
		// Registration with refresh_token: true.
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd,
			"refresh_token": true, "auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantStatus(t, r, 200)
		if r.Str("refresh_token") == "" || r.Body["expires_in_ms"] != float64(120000) {
			t.Fatalf("register %s", r.Raw)
		}
		// Without it, nothing expires and no refresh token is given.
		r = s.Do(t, "POST", v3+"/login", "", pwLogin("alice", false))
		testenv.WantStatus(t, r, 200)
		if _, ok := r.Body["refresh_token"]; ok {
			t.Fatalf("unasked refresh token %s", r.Raw)
		}
		if _, ok := r.Body["expires_in_ms"]; ok {
			t.Fatalf("unasked expiry %s", r.Raw)
		}
		r = s.Do(t, "POST", v3+"/login", "", pwLogin("alice", true))
		testenv.WantStatus(t, r, 200)
		at1, rt1 := r.Str("access_token"), r.Str("refresh_token")
		if rt1 == "" || r.Body["expires_in_ms"] != float64(120000) {
			t.Fatalf("login %s", r.Raw)
		}
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", at1, nil), 200)
		r = s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1})
		testenv.WantStatus(t, r, 200)
		at2, rt2 := r.Str("access_token"), r.Str("refresh_token")
		if at2 == "" || rt2 == "" || rt2 == rt1 || r.Body["expires_in_ms"] != float64(120000) {
			t.Fatalf("refresh %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "GET", v3+"/account/whoami", at1, nil), 401, "M_UNKNOWN_TOKEN")
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", at2, nil), 200)
		// A thief replays rt1: the session is revoked, the client is logged out.
		r = s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1})
		testenv.WantError(t, r, 401, "M_UNKNOWN_TOKEN")
		wantSoftLogout(t, r, false)
		r = s.Do(t, "GET", v3+"/account/whoami", at2, nil)
		testenv.WantError(t, r, 401, "M_UNKNOWN_TOKEN")
		wantSoftLogout(t, r, false)
		testenv.WantError(t, s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt2}), 401, "M_UNKNOWN_TOKEN")
	})
}

func TestExpiredAccessTokenIsSoftLogoutOverHTTP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.AccessTokenLifetime = time.Second })
		testenv.CreateUser(t, s, "alice", pwd)
		r := s.Do(t, "POST", v3+"/login", "", pwLogin("alice", true))
		testenv.WantStatus(t, r, 200)
		at, rt, dev := r.Str("access_token"), r.Str("refresh_token"), r.Str("device_id")
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", at, nil), 200) // now cached
		time.Sleep(1100 * time.Millisecond)
		r = s.Do(t, "GET", v3+"/account/whoami", at, nil)
		testenv.WantError(t, r, 401, "M_UNKNOWN_TOKEN")
		wantSoftLogout(t, r, true)
		r = s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt})
		testenv.WantStatus(t, r, 200)
		r = s.Do(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil)
		testenv.WantStatus(t, r, 200)
		if r.Str("device_id") != dev {
			t.Fatalf("device changed: %s", r.Raw)
		}
	})
}

func TestConcurrentRefreshesOverHTTPExactlyOneWins(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", pwd)
		r := s.Do(t, "POST", v3+"/login", "", pwLogin("alice", true))
		testenv.WantStatus(t, r, 200)
		rt := r.Str("refresh_token")
		var seen sync.WaitGroup
		seen.Add(2)
		sessions.SetAfterSeen(s.App.Services.Sessions, func() { seen.Done(); seen.Wait() })
		res := make([]testenv.Response, 2)
		var wg sync.WaitGroup
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt})
			}()
		}
		wg.Wait()
		sessions.SetAfterSeen(s.App.Services.Sessions, nil)
		if (res[0].Status == 200) == (res[1].Status == 200) {
			t.Fatalf("want exactly one winner: %d %s / %d %s", res[0].Status, res[0].Raw, res[1].Status, res[1].Raw)
		}
		win, lose := res[0], res[1]
		if lose.Status == 200 {
			win, lose = lose, win
		}
		testenv.WantError(t, lose, 401, "M_UNKNOWN_TOKEN")
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", win.Str("access_token"), nil), 200)
	})
}

// makeAdmin creates an admin account and returns its token.
func makeAdmin(t *testing.T, s *testenv.Server, localpart string) string {
	t.Helper()
	tok, _ := testenv.CreateUser(t, s, localpart, pwd)
	if err := s.App.Services.Sessions.SetFlag(context.Background(), "@"+localpart+":"+s.Config.ServerName, sessions.FlagAdmin, true); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLockedAccountOverHTTP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		root := makeAdmin(t, s, "root")
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		other := testenv.Login(t, s, "@alice:localhost", "OTHER")
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", alice, nil), 200)
		lock := func(on bool) {
			r := s.Do(t, "PUT", v1+"/admin/lock/@alice:localhost", root, map[string]any{"locked": on})
			testenv.WantStatus(t, r, 200)
			if r.Body["locked"] != on {
				t.Fatalf("lock %s", r.Raw)
			}
		}
		lock(true)
		r := s.Do(t, "GET", v1+"/admin/lock/@alice:localhost", root, nil)
		if r.Status != 200 || r.Body["locked"] != true {
			t.Fatalf("get lock %d %s", r.Status, r.Raw)
		}
		for _, path := range []string{v3 + "/account/whoami", v3 + "/capabilities", v3 + "/devices", "/_matrix/client/r0/account/whoami"} {
			r := s.Do(t, "GET", path, alice, nil)
			testenv.WantError(t, r, 401, "M_USER_LOCKED")
			wantSoftLogout(t, r, true)
		}
		// No new session either, once the password is proven.
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", pwLogin("alice", false)), 401, "M_USER_LOCKED")
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "password": "wrong one",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}}), 403, "M_FORBIDDEN")
		// Unlocking restores the very same session.
		lock(false)
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", alice, nil), 200)
		// Logout works while locked.
		lock(true)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/logout", alice, map[string]any{}), 200)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/logout/all", other, map[string]any{}), 200)
		lock(false)
		testenv.WantError(t, s.Do(t, "GET", v3+"/account/whoami", other, nil), 401, "M_UNKNOWN_TOKEN")
	})
}

func TestAdminEndpointsOverHTTP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		root := makeAdmin(t, s, "root")
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		testenv.CreateUser(t, s, "bob", pwd)
		for _, kind := range []string{"lock", "suspend"} {
			field := map[string]string{"lock": "locked", "suspend": "suspended"}[kind]
			testenv.WantError(t, s.Do(t, "GET", v1+"/admin/"+kind+"/@bob:localhost", alice, nil), 403, "M_FORBIDDEN")
			testenv.WantError(t, s.Do(t, "PUT", v1+"/admin/"+kind+"/@nobody:localhost", alice, map[string]any{field: true}), 403, "M_FORBIDDEN")
			testenv.WantError(t, s.Do(t, "PUT", v1+"/admin/"+kind+"/@bob:elsewhere", root, map[string]any{field: true}), 400, "M_INVALID_PARAM")
			testenv.WantError(t, s.Do(t, "PUT", v1+"/admin/"+kind+"/@nobody:localhost", root, map[string]any{field: true}), 404, "M_NOT_FOUND")
			testenv.WantError(t, s.Do(t, "PUT", v1+"/admin/"+kind+"/@root:localhost", root, map[string]any{field: true}), 403, "M_FORBIDDEN")
			testenv.WantError(t, s.Do(t, "GET", v1+"/admin/"+kind+"/@bob:localhost", "", nil), 401, "M_MISSING_TOKEN")
		}
		// Capabilities as they are for each caller.
		r := s.Do(t, "GET", v3+"/capabilities", root, nil)
		testenv.WantStatus(t, r, 200)
		caps := r.Body["capabilities"].(map[string]any)
		if m, _ := caps["m.account_moderation"].(map[string]any); m["lock"] != true || m["suspend"] != true {
			t.Fatalf("admin capabilities %s", r.Raw)
		}
		r = s.Do(t, "GET", v3+"/capabilities", alice, nil)
		caps = r.Body["capabilities"].(map[string]any)
		if _, ok := caps["m.account_moderation"]; ok {
			t.Fatalf("user capabilities %s", r.Raw)
		}
		for k, want := range map[string]bool{"m.change_password": true, "m.3pid_changes": true, "m.get_login_token": false,
			"m.set_displayname": false, "m.set_avatar_url": false, "m.profile_fields": false} {
			if caps[k].(map[string]any)["enabled"] != want {
				t.Fatalf("%s: %s", k, r.Raw)
			}
		}
		// whois: oneself and admins.
		r = s.Do(t, "GET", v3+"/admin/whois/@alice:localhost", alice, nil)
		testenv.WantStatus(t, r, 200)
		devs := r.Body["devices"].(map[string]any)
		if r.Str("user_id") != "@alice:localhost" || len(devs) != 1 {
			t.Fatalf("whois %s", r.Raw)
		}
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/admin/whois/@alice:localhost", root, nil), 200)
		testenv.WantError(t, s.Do(t, "GET", v3+"/admin/whois/@bob:localhost", alice, nil), 403, "M_FORBIDDEN")
	})
}

func TestSuspendedAccountReadsButCannotRemove3PIDs(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		root := makeAdmin(t, s, "root")
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		ctx := context.Background()
		if err := s.App.Services.Accounts.AddThreePID(ctx, "@alice:localhost", "email", "alice@example.org"); err != nil {
			t.Fatal(err)
		}
		r := s.Do(t, "PUT", v1+"/admin/suspend/@alice:localhost", root, map[string]any{"suspended": true})
		testenv.WantStatus(t, r, 200)
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", alice, nil), 200)
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/3pid", alice, nil), 200)
		r = s.Do(t, "GET", v3+"/capabilities", alice, nil)
		if r.Body["capabilities"].(map[string]any)["m.3pid_changes"].(map[string]any)["enabled"] != false {
			t.Fatalf("suspended capabilities %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/account/3pid/delete", alice, map[string]any{"medium": "email", "address": "alice@example.org"}), 403, "M_USER_SUSPENDED")
		testenv.WantStatus(t, s.Do(t, "PUT", v1+"/admin/suspend/@alice:localhost", root, map[string]any{"suspended": false}), 200)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/account/3pid/delete", alice, map[string]any{"medium": "email", "address": "alice@example.org"}), 200)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/logout", alice, map[string]any{}), 200)
	})
}

func TestThreePIDsAreListedAndRemovedAsLoginNormalisesThem(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		bob, _ := testenv.CreateUser(t, s, "bob", pwd)
		ctx := context.Background()
		for _, tp := range [][2]string{{"email", "Alice@Example.org"}, {"msisdn", "+44 7700 900001"}} {
			if err := s.App.Services.Accounts.AddThreePID(ctx, "@alice:localhost", tp[0], tp[1]); err != nil {
				t.Fatal(err)
			}
		}
		r := s.Do(t, "GET", v3+"/account/3pid", alice, nil)
		testenv.WantStatus(t, r, 200)
		list := r.Body["threepids"].([]any)
		if len(list) != 2 {
			t.Fatalf("3pids %s", r.Raw)
		}
		first := list[0].(map[string]any)
		if first["medium"] != "email" || first["address"] != "alice@example.org" || first["added_at"] == nil || first["validated_at"] == nil {
			t.Fatalf("3pid %s", r.Raw)
		}
		// Another account cannot remove alice's.
		r = s.Do(t, "POST", v3+"/account/3pid/delete", bob, map[string]any{"medium": "email", "address": "alice@example.org"})
		testenv.WantStatus(t, r, 200)
		if r.Str("id_server_unbind_result") != "no-support" {
			t.Fatalf("unbind result %s", r.Raw)
		}
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "password": pwd,
			"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}}), 200)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/account/3pid/delete", alice, map[string]any{"medium": "email", "address": "ALICE@example.ORG"}), 200)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/account/3pid/delete", alice, map[string]any{"medium": "msisdn", "address": "447700900001"}), 200)
		r = s.Do(t, "GET", v3+"/account/3pid", alice, nil)
		if l, _ := r.Body["threepids"].([]any); len(l) != 0 {
			t.Fatalf("3pids left %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "password": pwd,
			"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}}), 403, "M_FORBIDDEN")
	})
}

func TestGetLoginTokenOverHTTP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.GetLoginToken = true })
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		r := s.Do(t, "GET", v3+"/login", "", nil)
		flows := r.Body["flows"].([]any)
		if f := flows[1].(map[string]any); f["type"] != "m.login.token" || f["get_login_token"] != true {
			t.Fatalf("flows %s", r.Raw)
		}
		r = s.Do(t, "GET", v3+"/capabilities", alice, nil)
		if r.Body["capabilities"].(map[string]any)["m.get_login_token"].(map[string]any)["enabled"] != true {
			t.Fatalf("capabilities %s", r.Raw)
		}
		r = s.Do(t, "POST", v1+"/login/get_token", alice, map[string]any{})
		if r.Status != 401 || r.Str("session") == "" {
			t.Fatalf("want a challenge: %d %s", r.Status, r.Raw)
		}
		r = s.Do(t, "POST", v1+"/login/get_token", alice, map[string]any{"auth": map[string]any{"type": "m.login.password",
			"session": r.Str("session"), "password": pwd, "identifier": map[string]any{"type": "m.id.user", "user": "alice"}}})
		testenv.WantStatus(t, r, 200)
		lt := r.Str("login_token")
		if lt == "" || r.Body["expires_in_ms"] != float64(s.Config.LoginTokenTTL.Milliseconds()) {
			t.Fatalf("get_token %s", r.Raw)
		}
		r = s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": lt})
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") != "@alice:localhost" {
			t.Fatalf("login %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": lt}), 403, "M_FORBIDDEN")
	})
}

func TestGetLoginTokenIsOffByDefaultAndRateLimited(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		testenv.WantError(t, s.Do(t, "POST", v1+"/login/get_token", alice, map[string]any{}), 404, "M_UNRECOGNIZED")
		r := s.Do(t, "GET", v3+"/login", "", nil)
		if _, ok := r.Body["flows"].([]any)[1].(map[string]any)["get_login_token"]; ok {
			t.Fatalf("flows %s", r.Raw)
		}
		s = testenv.Start(t, b, func(c *config.Config) {
			c.GetLoginToken = true
			c.RateLimit.Enabled = true
			c.RateLimit.LoginToken = config.Bucket{Rate: 1.0 / 3600, Burst: 1}
		})
		alice, _ = testenv.CreateUser(t, s, "alice", pwd)
		get := func() testenv.Response {
			return s.Do(t, "POST", v1+"/login/get_token", alice, map[string]any{"auth": map[string]any{"type": "m.login.password",
				"password": pwd, "identifier": map[string]any{"type": "m.id.user", "user": "alice"}}})
		}
		testenv.WantStatus(t, get(), 200)
		testenv.WantError(t, get(), 429, "M_LIMIT_EXCEEDED")
	})
}

func TestRegistrationTokenValidityDoesNotUseTheTokenUp(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.Registration = config.RegistrationToken })
		one := int64(1)
		if _, err := s.App.Services.Accounts.CreateRegistrationToken(context.Background(), "once", &one, nil); err != nil {
			t.Fatal(err)
		}
		valid := func(tok string) any {
			r := s.Do(t, "GET", v1+"/register/m.login.registration_token/validity?token="+tok, "", nil)
			testenv.WantStatus(t, r, 200)
			return r.Body["valid"]
		}
		for range 3 {
			if valid("once") != true {
				t.Fatal("valid token said invalid")
			}
		}
		if valid("never") != false || valid("bad%20token") != false {
			t.Fatal("unknown token said valid")
		}
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd,
			"auth": map[string]any{"type": "m.login.registration_token", "token": "once"}})
		if r.Status == 401 && r.Str("session") != "" {
			r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd,
				"auth": map[string]any{"type": "m.login.registration_token", "token": "once", "session": r.Str("session")}})
		}
		testenv.WantStatus(t, r, 200)
		if valid("once") != false {
			t.Fatal("used-up token said valid")
		}
		closed := testenv.Start(t, b, nil)
		closed.Config.Registration = config.RegistrationDisabled
		testenv.WantError(t, closed.Do(t, "GET", v1+"/register/m.login.registration_token/validity?token=once", "", nil), 403, "M_FORBIDDEN")
	})
}

func TestDeactivateWithEraseKeepsOnlyTheID(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, _ := testenv.CreateUser(t, s, "alice", pwd)
		ctx := context.Background()
		if err := s.App.Services.Accounts.AddThreePID(ctx, "@alice:localhost", "email", "alice@example.org"); err != nil {
			t.Fatal(err)
		}
		r := s.Do(t, "POST", v3+"/account/deactivate", alice, map[string]any{"erase": true, "auth": map[string]any{
			"type": "m.login.password", "password": pwd, "identifier": map[string]any{"type": "m.id.user", "user": "alice"}}})
		testenv.WantStatus(t, r, 200)
		var u storage.User
		if err := s.App.Store.R.NewSelect().Model(&u).Where("user_id = ?", "@alice:localhost").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if !u.Deactivated || !u.Erased || u.PasswordHash != "" {
			t.Fatalf("user row %+v", u)
		}
		for _, m := range []any{(*storage.Device)(nil), (*storage.ThreePID)(nil), (*storage.DeviceKeys)(nil)} {
			if n, err := s.App.Store.R.NewSelect().Model(m).Where("user_id = ?", "@alice:localhost").Count(ctx); err != nil || n != 0 {
				t.Fatalf("%T left: %d %v", m, n, err)
			}
		}
		// With the password gone, a login learns no more than a wrong one.
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", pwLogin("alice", false)), 403, "M_FORBIDDEN")
		// Without erase, the right password still tells the account is deactivated.
		bob, _ := testenv.CreateUser(t, s, "bob", pwd)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/account/deactivate", bob, map[string]any{"auth": map[string]any{
			"type": "m.login.password", "password": pwd, "identifier": map[string]any{"type": "m.id.user", "user": "bob"}}}), 200)
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", pwLogin("bob", false)), 403, "M_USER_DEACTIVATED")
	})
}

func TestLockReachesAnotherServerOnTheSameDatabaseWithinASecond(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	cfg := testenv.TestConfig(t, testenv.Postgres)
	a := testenv.StartConfig(t, cfg)
	cfg2 := *cfg
	cfg2.Listen = "127.0.0.1:0"
	other := testenv.StartConfig(t, &cfg2)
	root := makeAdmin(t, a, "root")
	alice, _ := testenv.CreateUser(t, a, "alice", pwd)
	testenv.WantStatus(t, other.Do(t, "GET", v3+"/account/whoami", alice, nil), 200) // cached there
	testenv.WantStatus(t, a.Do(t, "PUT", v1+"/admin/lock/@alice:localhost", root, map[string]any{"locked": true}), 200)
	since := time.Now()
	for {
		r := other.Do(t, "GET", v3+"/account/whoami", alice, nil)
		if r.Status == 401 {
			testenv.WantError(t, r, 401, "M_USER_LOCKED")
			break
		}
		if time.Since(since) > testenv.RevocationDelay {
			t.Fatalf("lock not seen by the other server after %s", time.Since(since))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRefreshAndTheftRevokeOnAnotherServerWithinASecond(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	cfg := testenv.TestConfig(t, testenv.Postgres)
	a := testenv.StartConfig(t, cfg)
	cfg2 := *cfg
	cfg2.Listen = "127.0.0.1:0"
	other := testenv.StartConfig(t, &cfg2)
	testenv.CreateUser(t, a, "alice", pwd)
	r := a.Do(t, "POST", v3+"/login", "", pwLogin("alice", true))
	testenv.WantStatus(t, r, 200)
	at1, rt1 := r.Str("access_token"), r.Str("refresh_token")
	testenv.WantStatus(t, other.Do(t, "GET", v3+"/account/whoami", at1, nil), 200) // cached there
	r = a.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1})
	testenv.WantStatus(t, r, 200)
	testenv.WantTokenRefusedWithin(t, other.URL, at1, time.Now(), testenv.RevocationDelay)
	at2 := r.Str("access_token")
	testenv.WantStatus(t, other.Do(t, "GET", v3+"/account/whoami", at2, nil), 200) // first use, on the other server
	testenv.WantError(t, a.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1}), 401, "M_UNKNOWN_TOKEN")
	testenv.WantTokenRefusedWithin(t, other.URL, at2, time.Now(), testenv.RevocationDelay)
}
