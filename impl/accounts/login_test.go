package accounts_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/tokens"
)

func TestLoginFlowsArePasswordAndToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		// (With --auth both, m.login.sso comes too: impl/ssocompat's tests.)
		s := testenv.Start(t, b, func(c *config.Config) { c.Auth = config.AuthLegacy })
		r := s.Do(t, "GET", v3+"/login", "", nil)
		testenv.WantStatus(t, r, 200)
		want := []any{map[string]any{"type": "m.login.password"}, map[string]any{"type": "m.login.token"}}
		if !reflect.DeepEqual(r.Body["flows"], want) {
			t.Fatalf("flows %s", r.Raw)
		}
	})
}

func TestLoginAcceptsEveryIdentifierForm(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		if err := s.App.Services.Accounts.AddThreePID(context.Background(), a.UserID, "email", "Alice@Example.org"); err != nil {
			t.Fatal(err)
		}
		if err := s.App.Services.Accounts.AddThreePID(context.Background(), a.UserID, "msisdn", "+44 7700 900001"); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]map[string]any{
			"m.id.user localpart":       passwordLogin("alice", pwd),
			"m.id.user other case":      passwordLogin("ALICE", pwd),
			"m.id.user full user ID":    passwordLogin("@Alice:localhost", pwd),
			"legacy user":               {"type": "m.login.password", "user": "alice", "password": pwd},
			"legacy full user ID":       {"type": "m.login.password", "user": "@alice:localhost", "password": pwd},
			"m.id.thirdparty":           {"type": "m.login.password", "password": pwd, "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.ORG"}},
			"legacy medium and address": {"type": "m.login.password", "password": pwd, "medium": "email", "address": "alice@example.org"},
			"msisdn digits":             {"type": "m.login.password", "password": pwd, "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "msisdn", "address": "447700900001"}},
			"msisdn with + and spaces":  {"type": "m.login.password", "password": pwd, "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "msisdn", "address": "+44 7700 900 001"}},
		} {
			t.Run(name, func(t *testing.T) {
				r := s.Do(t, "POST", v3+"/login", "", body)
				testenv.WantStatus(t, r, 200)
				if r.Str("user_id") != a.UserID || r.Str("home_server") != "localhost" || r.Str("device_id") == "" {
					t.Fatalf("login %s", r.Raw)
				}
				wantTokenValid(t, s, r.Str("access_token"), true)
			})
		}
	})
}

func TestUnknownUserUnknown3PIDAndWrongPasswordAnswerAlike(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		register(t, s, "alice", pwd)
		var first string
		for name, body := range map[string]map[string]any{
			"unknown user":   passwordLogin("nobody", pwd),
			"other server":   passwordLogin("@alice:elsewhere", pwd),
			"unknown 3PID":   {"type": "m.login.password", "password": pwd, "medium": "email", "address": "nobody@example.org"},
			"wrong password": passwordLogin("alice", "wrong password"),
		} {
			t.Run(name, func(t *testing.T) {
				r := s.Do(t, "POST", v3+"/login", "", body)
				testenv.WantError(t, r, 403, "M_FORBIDDEN")
				if first == "" {
					first = string(r.Raw)
				} else if string(r.Raw) != first {
					t.Fatalf("answers differ: %s vs %s", r.Raw, first)
				}
			})
		}
	})
}

func TestLoginOfDeactivatedAccountIsUserDeactivated(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		if err := s.App.Services.Accounts.DeactivateUser(context.Background(), a.UserID, false); err != nil {
			t.Fatal(err)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", pwd)), 403, "M_USER_DEACTIVATED")
		// Without the password nothing tells the account apart.
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", "wrong password")), 403, "M_FORBIDDEN")
	})
}

func TestLoginWithKnownDeviceRevokesOnlyItsOldToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		body := passwordLogin("alice", pwd)
		body["device_id"] = "PHONE"
		body["initial_device_display_name"] = "Phone"
		first := login(t, s, body)
		if first.DeviceID != "PHONE" {
			t.Fatalf("device %s", first.DeviceID)
		}
		second := login(t, s, body)
		if second.DeviceID != "PHONE" || second.Token == first.Token {
			t.Fatalf("second login %+v", second)
		}
		wantTokenValid(t, s, first.Token, false)
		wantTokenValid(t, s, second.Token, true)
		wantTokenValid(t, s, a.Token, true)
		if ids := deviceIDs(t, s, a.UserID); !reflect.DeepEqual(ids, []string{a.DeviceID, "PHONE"}) && !reflect.DeepEqual(ids, []string{"PHONE", a.DeviceID}) {
			t.Fatalf("devices %v", ids)
		}
		// Without device_id: a new generated device; the others keep working.
		third := login(t, s, passwordLogin("alice", pwd))
		if third.DeviceID == "PHONE" || third.DeviceID == a.DeviceID || third.DeviceID == "" {
			t.Fatalf("third device %q", third.DeviceID)
		}
		wantTokenValid(t, s, second.Token, true)
		// A device ID of another user is just a new device of this one.
		bob := register(t, s, "bob", pwd)
		body = passwordLogin("alice", pwd)
		body["device_id"] = bob.DeviceID
		login(t, s, body)
		wantTokenValid(t, s, bob.Token, true)
	})
}

func TestLoginTokenIsSingleUseAndExpires(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		a := register(t, s, "alice", pwd)
		tok, exp, err := s.App.Services.Accounts.NewLoginToken(ctx, a.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(exp); d <= 0 || d > s.Config.LoginTokenTTL {
			t.Fatalf("expiry in %s", d)
		}
		l := login(t, s, map[string]any{"type": "m.login.token", "token": tok})
		if l.UserID != a.UserID {
			t.Fatalf("token login as %s", l.UserID)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": tok}), 403, "M_FORBIDDEN")
		expired := "myl_login_expired"
		if _, err := s.App.Store.DB.NewInsert().Model(&storage.LoginToken{TokenHash: tokens.HashToken(expired).String(),
			UserID: a.UserID, ExpiresTS: time.Now().Add(-time.Second).UnixMilli()}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": expired}), 403, "M_FORBIDDEN")
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": "nope"}), 403, "M_FORBIDDEN")
	})
}

func TestLoginUpgradesBcryptAndOutdatedArgon2Hashes(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		a := register(t, s, "alice", pwd)
		bc, err := bcrypt.GenerateFromPassword([]byte(pwd), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		// An argon2id hash with other parameters than the configured ones.
		old := s.App.Services.Accounts.Credentials.Hasher
		weaker := *s.Config
		weaker.Argon2.MemoryKiB = 512
		oldHash, err := app.PasswordHasher(&weaker).Hash(pwd)
		if err != nil {
			t.Fatal(err)
		}
		for name, h := range map[string]string{"bcrypt": string(bc), "outdated argon2id": oldHash} {
			t.Run(name, func(t *testing.T) {
				if _, err := s.App.Store.DB.NewUpdate().Model((*storage.User)(nil)).Set("password_hash = ?", h).
					Where("user_id = ?", a.UserID).Exec(ctx); err != nil {
					t.Fatal(err)
				}
				testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", "wrong password")), 403, "M_FORBIDDEN")
				if userRow(t, s, a.UserID).PasswordHash != h {
					t.Fatal("a failed login changed the hash")
				}
				login(t, s, passwordLogin("alice", pwd))
				now := userRow(t, s, a.UserID).PasswordHash
				if now == h || !strings.HasPrefix(now, "$argon2id$") {
					t.Fatalf("hash not upgraded: %s", now)
				}
				if ok, rehash, err := old.Verify(pwd, now); !ok || rehash || err != nil {
					t.Fatalf("upgraded hash: ok=%v rehash=%v err=%v", ok, rehash, err)
				}
				login(t, s, passwordLogin("alice", pwd))
			})
		}
	})
}

func TestLoginBodyErrors(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		register(t, s, "alice", pwd)
		long := passwordLogin("alice", pwd)
		long["device_id"] = strings.Repeat("D", 513)
		for name, c := range map[string]struct {
			body    map[string]any
			errcode string
		}{
			"no identifier":           {map[string]any{"type": "m.login.password", "password": pwd}, "M_MISSING_PARAM"},
			"no password":             {map[string]any{"type": "m.login.password", "user": "alice"}, "M_MISSING_PARAM"},
			"unknown identifier type": {map[string]any{"type": "m.login.password", "password": pwd, "identifier": map[string]any{"type": "m.id.phone"}}, "M_UNKNOWN"},
			"password over 512 bytes": {passwordLogin("alice", strings.Repeat("p", 513)), "M_BAD_JSON"},
			"device_id over 512":      {long, "M_INVALID_PARAM"},
		} {
			t.Run(name, func(t *testing.T) {
				testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", c.body), 400, c.errcode)
			})
		}
	})
}

func TestLogoutDeletesTheDeviceAndLogoutAllEveryDevice(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		l1 := login(t, s, passwordLogin("alice", pwd))
		l2 := login(t, s, passwordLogin("alice", pwd))
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/logout", l1.Token, map[string]any{}), 200)
		wantTokenValid(t, s, l1.Token, false)
		wantTokenValid(t, s, l2.Token, true)
		if ids := deviceIDs(t, s, a.UserID); len(ids) != 2 {
			t.Fatalf("devices after logout %v", ids)
		}
		testenv.WantStatus(t, s.Do(t, "POST", r0+"/logout/all?access_token="+l2.Token, "", map[string]any{}), 200)
		wantTokenValid(t, s, l2.Token, false)
		wantTokenValid(t, s, a.Token, false)
		if ids := deviceIDs(t, s, a.UserID); len(ids) != 0 {
			t.Fatalf("devices after logout/all %v", ids)
		}
	})
}

func TestConcurrentLoginsToOneDeviceEachSucceedAndLeaveOneLiveToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		register(t, s, "alice", pwd)
		body := passwordLogin("alice", pwd)
		body["device_id"] = "RETRYDEV"
		login(t, s, body) // the device exists: each login below replaces its token
		const n = 6
		answers := make([]testenv.Response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = s.Do(t, "POST", v3+"/login", "", body) }()
		}
		wg.Wait()
		alive := 0
		for _, a := range answers {
			testenv.WantStatus(t, a, 200)
			if whoami(t, s, a.Str("access_token")).Status == 200 {
				alive++
			}
		}
		if alive != 1 {
			t.Fatalf("%d of the answered tokens work, want 1", alive)
		}
	})
}
