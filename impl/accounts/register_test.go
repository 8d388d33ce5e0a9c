package accounts_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestRegistrationDisabledIsForbidden(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.Registration = config.RegistrationDisabled })
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd,
			"auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
	})
}

func TestOpenRegistrationChallengesWithDummyFlowThenRegisters(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		body := map[string]any{"username": "alice", "password": pwd}
		r := s.Do(t, "POST", v3+"/register", "", body)
		session := wantChallenge(t, r, "")
		if flows := r.Body["flows"].([]any); len(flows) != 1 ||
			!reflect.DeepEqual(flows[0], map[string]any{"stages": []any{"m.login.dummy"}}) {
			t.Fatalf("flows %v", flows)
		}
		body["auth"] = map[string]any{"type": "m.login.dummy", "session": session}
		r = s.Do(t, "POST", v3+"/register", "", body)
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") != "@alice:localhost" || r.Str("home_server") != "localhost" || r.Str("device_id") == "" {
			t.Fatalf("register: %s", r.Raw)
		}
		me := whoami(t, s, r.Str("access_token"))
		testenv.WantStatus(t, me, 200)
		if me.Str("user_id") != "@alice:localhost" || me.Str("device_id") != r.Str("device_id") {
			t.Fatalf("whoami %s", me.Raw)
		}
	})
}

func TestRegistrationOverR0WithQueryTokenAsMatrixNioDoes(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		r := s.Do(t, "POST", r0+"/register", "", map[string]any{"username": "nio", "password": pwd,
			"device_id": "NIODEVICE", "auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantStatus(t, r, 200)
		me := s.Do(t, "GET", r0+"/account/whoami?access_token="+r.Str("access_token"), "", nil)
		testenv.WantStatus(t, me, 200)
		if me.Str("user_id") != "@nio:localhost" || me.Str("device_id") != "NIODEVICE" {
			t.Fatalf("whoami %s", me.Raw)
		}
		l := s.Do(t, "POST", r0+"/login", "", passwordLogin("nio", pwd))
		testenv.WantStatus(t, l, 200)
	})
}

func TestUsernameIsDowncasedThenCheckedBeforeUIA(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		if a := register(t, s, "Alice.Smith_1=x-y/z", pwd); a.UserID != "@alice.smith_1=x-y/z:localhost" {
			t.Fatalf("user ID %s", a.UserID)
		}
		// The longest allowed localpart makes a user ID of exactly 255 bytes.
		longest := strings.Repeat("a", 255-len("@:localhost"))
		register(t, s, longest, pwd)
		for name, u := range map[string]string{
			"trailing newline": "bob\n",
			"space":            "bo b",
			"non-ASCII":        "bøb",
			"Kelvin sign":      "\u212aelvin",
			"colon":            "bob:localhost",
			"empty":            "",
			"too long":         longest + "a",
		} {
			t.Run(name, func(t *testing.T) {
				// No auth at all: the answer comes before UIA starts.
				r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": u, "password": pwd})
				testenv.WantError(t, r, 400, "M_INVALID_USERNAME")
			})
		}
	})
}

func TestTakenUsernameIsRefusedBeforeUIA(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		register(t, s, "alice", pwd)
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "ALICE", "password": pwd})
		testenv.WantError(t, r, 400, "M_USER_IN_USE")
	})
}

func TestRegistrationWithoutUsernameGeneratesOne(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"password": pwd, "auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantStatus(t, r, 200)
		uid := r.Str("user_id")
		if !strings.HasPrefix(uid, "@") || !strings.HasSuffix(uid, ":localhost") || len(uid) < len("@a:localhost") {
			t.Fatalf("generated user ID %q", uid)
		}
		login(t, s, passwordLogin(uid, pwd))
	})
}

func TestRegistrationWithoutPasswordIsMissingParam(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantError(t, r, 400, "M_MISSING_PARAM")
	})
}

func TestPasswordPolicyOnRegistration(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) {
			c.Password = config.PasswordPolicy{MinLength: 8, RequireDigit: true, RequireSymbol: true, RequireUpper: true, RequireLower: true}
		})
		for name, c := range map[string]struct {
			password string
			errcode  string
		}{
			"too short":      {"Ab1!", "M_WEAK_PASSWORD"},
			"no digit":       {"Abcdefg!", "M_WEAK_PASSWORD"},
			"no symbol":      {"Abcdefg1", "M_WEAK_PASSWORD"},
			"no upper":       {"abcdefg1!", "M_WEAK_PASSWORD"},
			"no lower":       {"ABCDEFG1!", "M_WEAK_PASSWORD"},
			"over 512 bytes": {"Ab1!" + strings.Repeat("x", 509), "M_BAD_JSON"},
		} {
			t.Run(name, func(t *testing.T) {
				r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": c.password})
				testenv.WantError(t, r, 400, c.errcode)
			})
		}
		// Non-ASCII letters count as characters of their case, and log in.
		const p = "Pässwörd✓7"
		register(t, s, "alice", p)
		login(t, s, passwordLogin("alice", p))
	})
}

func TestRegistrationIsIdempotentBySessionAndRemembersFirstParams(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		first := map[string]any{"username": "alice", "password": pwd, "device_id": "FIRSTDEV", "initial_device_display_name": "First"}
		session := wantChallenge(t, s.Do(t, "POST", v3+"/register", "", first), "")
		// The final request names other values: the first request's win.
		final := map[string]any{"username": "mallory", "password": "other password", "device_id": "OTHERDEV",
			"auth": map[string]any{"type": "m.login.dummy", "session": session}}
		r1 := s.Do(t, "POST", v3+"/register", "", final)
		testenv.WantStatus(t, r1, 200)
		if r1.Str("user_id") != "@alice:localhost" || r1.Str("device_id") != "FIRSTDEV" {
			t.Fatalf("register %s", r1.Raw)
		}
		// The session keeps no token: the database holds tokens only as
		// hashes.
		var kept string
		if err := s.App.Store.R.NewSelect().Model((*storage.UIASession)(nil)).Column("result").
			Where("session_id = ?", session).Scan(context.Background(), &kept); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(kept, r1.Str("access_token")) || !strings.Contains(kept, "FIRSTDEV") {
			t.Fatalf("the session keeps %s", kept)
		}
		// A repeat gets the same account and device with a new token, which
		// ends the first one (one live token per device).
		sameAccount := func(r testenv.Response, prev string) string {
			t.Helper()
			testenv.WantStatus(t, r, 200)
			if r.Str("user_id") != "@alice:localhost" || r.Str("device_id") != "FIRSTDEV" || r.Str("access_token") == "" || r.Str("access_token") == prev {
				t.Fatalf("repeat answered %s, before %s", r.Raw, r1.Raw)
			}
			testenv.WantError(t, s.Do(t, "GET", v3+"/account/whoami", prev, nil), 401, "M_UNKNOWN_TOKEN")
			testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil), 200)
			return r.Str("access_token")
		}
		tok := sameAccount(s.Do(t, "POST", v3+"/register", "", final), r1.Str("access_token"))
		// The plain retry of a client that lost the answer names the
		// username it just registered: still that account, not in use.
		first["auth"] = final["auth"]
		sameAccount(s.Do(t, "POST", v3+"/register", "", first), tok)
		// Another session is still told the name is taken.
		delete(first, "auth")
		testenv.WantError(t, s.Do(t, "POST", v3+"/register", "", first), 400, "M_USER_IN_USE")
		login(t, s, passwordLogin("alice", pwd))
		var dev storage.Device
		if err := s.App.Store.R.NewSelect().Model(&dev).Where("user_id = ? AND device_id = ?", "@alice:localhost", "FIRSTDEV").Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		if dev.DisplayName == nil || *dev.DisplayName != "First" {
			t.Fatalf("device %+v", dev)
		}
		if n, _ := s.App.Store.R.NewSelect().Model((*storage.User)(nil)).Where("user_id = ?", "@mallory:localhost").Count(context.Background()); n != 0 {
			t.Fatal("the final request's username was registered too")
		}
	})
}

func TestRegistrationDeviceIDLimit(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		long := strings.Repeat("D", 512)
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd, "device_id": long,
			"auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantStatus(t, r, 200)
		if r.Str("device_id") != long {
			t.Fatalf("device_id %q", r.Str("device_id"))
		}
		r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "bob", "password": pwd, "device_id": long + "D",
			"auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantError(t, r, 400, "M_INVALID_PARAM")
	})
}

func TestInhibitLoginReturnsOnlyTheUserID(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd, "inhibit_login": true,
			"auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantStatus(t, r, 200)
		if len(r.Body) != 1 || r.Str("user_id") != "@alice:localhost" {
			t.Fatalf("inhibit_login answered %s", r.Raw)
		}
		if ids := deviceIDs(t, s, "@alice:localhost"); len(ids) != 0 {
			t.Fatalf("devices %v", ids)
		}
	})
}

func TestGuestRegistration(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		off := testenv.Start(t, b, nil)
		testenv.WantError(t, off.Do(t, "POST", v3+"/register?kind=guest", "", map[string]any{}), 403, "M_GUEST_ACCESS_FORBIDDEN")

		s := testenv.Start(t, b, func(c *config.Config) { c.GuestsEnabled = true; c.Registration = config.RegistrationDisabled })
		// Everything but initial_device_display_name is ignored.
		r := s.Do(t, "POST", v3+"/register?kind=guest", "", map[string]any{"username": "alice", "password": pwd,
			"device_id": "CHOSEN", "initial_device_display_name": "Guest phone"})
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") == "@alice:localhost" || r.Str("device_id") == "CHOSEN" || r.Str("access_token") == "" {
			t.Fatalf("guest %s", r.Raw)
		}
		me := whoami(t, s, r.Str("access_token"))
		testenv.WantStatus(t, me, 200)
		if me.Body["is_guest"] != true {
			t.Fatalf("whoami %s", me.Raw)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin(r.Str("user_id"), pwd)), 403, "M_FORBIDDEN")
		testenv.WantError(t, s.Do(t, "POST", v3+"/account/password", r.Str("access_token"), map[string]any{"new_password": pwd}),
			403, "M_GUEST_ACCESS_FORBIDDEN")
	})
}

func TestRegisterAvailable(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		register(t, s, "alice", pwd)
		r := s.Do(t, "GET", v3+"/register/available?username=bob", "", nil)
		testenv.WantStatus(t, r, 200)
		if r.Body["available"] != true {
			t.Fatalf("available %s", r.Raw)
		}
		testenv.WantError(t, s.Do(t, "GET", v3+"/register/available?username=Alice", "", nil), 400, "M_USER_IN_USE")
		testenv.WantError(t, s.Do(t, "GET", v3+"/register/available?username=a%20b", "", nil), 400, "M_INVALID_USERNAME")
	})
}

func TestDeactivatedUserIDCanNeverBeRegisteredAgain(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		r := s.Do(t, "POST", v3+"/account/deactivate", a.Token, map[string]any{"auth": pwAuth("", "alice", pwd)})
		testenv.WantStatus(t, r, 200)
		testenv.WantError(t, s.Do(t, "GET", r0+"/register/available?username=alice", "", nil), 400, "M_USER_IN_USE")
		r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd, "auth": map[string]any{"type": "m.login.dummy"}})
		testenv.WantError(t, r, 400, "M_USER_IN_USE")
	})
}

func TestTokenRegistration(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.Registration = config.RegistrationToken })
		ctx := context.Background()
		one := int64(1)
		if _, err := s.App.Services.Accounts.CreateRegistrationToken(ctx, "letmein", &one, nil); err != nil {
			t.Fatal(err)
		}
		body := map[string]any{"username": "alice", "password": pwd}
		r := s.Do(t, "POST", v3+"/register", "", body)
		session := wantChallenge(t, r, "")
		if !reflect.DeepEqual(r.Body["flows"], []any{map[string]any{"stages": []any{"m.login.registration_token"}}}) {
			t.Fatalf("flows %s", r.Raw)
		}
		body["auth"] = map[string]any{"type": "m.login.registration_token", "token": "wrong", "session": session}
		if wantChallenge(t, s.Do(t, "POST", v3+"/register", "", body), "M_FORBIDDEN") != session {
			t.Fatal("failed stage changed the session")
		}
		// Dummy is not offered in token mode.
		body["auth"] = map[string]any{"type": "m.login.dummy", "session": session}
		wantChallenge(t, s.Do(t, "POST", v3+"/register", "", body), "M_UNRECOGNIZED")
		body["auth"] = map[string]any{"type": "m.login.registration_token", "token": "letmein", "session": session}
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/register", "", body), 200)
		// Its one use is spent.
		r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "bob", "password": pwd,
			"auth": map[string]any{"type": "m.login.registration_token", "token": "letmein"}})
		wantChallenge(t, r, "M_FORBIDDEN")
		toks, err := s.App.Services.Accounts.ListRegistrationTokens(ctx)
		if err != nil || len(toks) != 1 || toks[0].Completed != 1 || toks[0].Pending != 0 {
			t.Fatalf("tokens %+v %v", toks, err)
		}
	})
}

func TestThreePIDRequestTokenEndpointsSayVerificationIsNotConfigured(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		email := map[string]any{"client_secret": "secret", "email": "a@example.org", "send_attempt": 1}
		phone := map[string]any{"client_secret": "secret", "country": "GB", "phone_number": "07700900001", "send_attempt": 1}
		for path, body := range map[string]map[string]any{
			"/register/email/requestToken":          email,
			"/register/msisdn/requestToken":         phone,
			"/account/password/email/requestToken":  email,
			"/account/password/msisdn/requestToken": phone,
		} {
			t.Run(path, func(t *testing.T) {
				r := s.Do(t, "POST", v3+path, "", body)
				testenv.WantError(t, r, 400, "M_UNKNOWN")
				if !strings.Contains(r.Str("error"), "not configured") {
					t.Fatalf("error %s", r.Raw)
				}
			})
		}
	})
}

func TestConcurrentFinalRequestsOfOneSessionRegisterOnce(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		for name, body := range map[string]map[string]any{
			"chosen username":    {"username": "alice", "password": pwd},
			"generated username": {"password": pwd},
		} {
			t.Run(name, func(t *testing.T) {
				session := wantChallenge(t, s.Do(t, "POST", v3+"/register", "", body), "")
				body["auth"] = map[string]any{"type": "m.login.dummy", "session": session}
				const n = 6
				answers := make([]testenv.Response, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Add(1)
					go func() { defer wg.Done(); answers[i] = s.Do(t, "POST", v3+"/register", "", body) }()
				}
				wg.Wait()
				// One account and device; each answer has its own token, and
				// only one of them is still alive (one token per device).
				alive := 0
				for _, a := range answers {
					testenv.WantStatus(t, a, 200)
					if a.Str("user_id") != answers[0].Str("user_id") || a.Str("device_id") != answers[0].Str("device_id") {
						t.Fatalf("answers differ: %s vs %s", a.Raw, answers[0].Raw)
					}
					if s.Do(t, "GET", v3+"/account/whoami", a.Str("access_token"), nil).Status == 200 {
						alive++
					}
				}
				if alive != 1 {
					t.Fatalf("%d of the answered tokens work, want 1", alive)
				}
			})
		}
		users, err := s.App.Services.Accounts.ListUsers(context.Background())
		if err != nil || len(users) != 2 {
			t.Fatalf("users %+v %v", users, err)
		}
	})
}
