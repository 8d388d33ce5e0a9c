package ratelimit_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	v3  = "/_matrix/client/v3"
	pwd = "correct horse battery"
)

// limits turns rate limits on with generous buckets, changed by set.
func limits(set func(l *config.RateLimits)) func(c *config.Config) {
	return func(c *config.Config) {
		c.RateLimit = config.RateLimits{Enabled: true,
			PerIP:       config.Bucket{Rate: 0.001, Burst: 1000},
			PerAccount:  config.Bucket{Rate: 0.001, Burst: 1000},
			FailedLogin: config.Bucket{Rate: 0.001, Burst: 1000},
		}
		set(&c.RateLimit)
	}
}

// post sends a JSON POST with an optional X-Forwarded-For header.
func post(t *testing.T, base, path, token, xff string, body any) testenv.Response {
	t.Helper()
	js, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return testenv.DoRequest(t, req)
}

func wantLimited(t *testing.T, r testenv.Response) {
	t.Helper()
	testenv.WantError(t, r, 429, "M_LIMIT_EXCEEDED")
	ms, ok := r.Body["retry_after_ms"].(float64)
	if !ok || ms <= 0 {
		t.Fatalf("no retry_after_ms: %s", r.Raw)
	}
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
}

func loginBody(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

func registerAlice(t *testing.T, s *testenv.Server) string {
	t.Helper()
	r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd,
		"auth": map[string]any{"type": "m.login.dummy"}})
	testenv.WantStatus(t, r, 200)
	return r.Str("access_token")
}

func TestEveryCredentialEndpointIsLimitedPerIP(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		for name, call := range map[string]func(t *testing.T, s *testenv.Server, token string) testenv.Response{
			"login": func(t *testing.T, s *testenv.Server, _ string) testenv.Response {
				return s.Do(t, "POST", v3+"/login", "", loginBody("alice", pwd))
			},
			"register": func(t *testing.T, s *testenv.Server, _ string) testenv.Response {
				return s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "bob", "password": pwd})
			},
			"register/available": func(t *testing.T, s *testenv.Server, _ string) testenv.Response {
				return s.Do(t, "GET", v3+"/register/available?username=bob", "", nil)
			},
			"account/password": func(t *testing.T, s *testenv.Server, token string) testenv.Response {
				return s.Do(t, "POST", v3+"/account/password", token, map[string]any{"new_password": "another password"})
			},
			"account/deactivate": func(t *testing.T, s *testenv.Server, token string) testenv.Response {
				return s.Do(t, "POST", v3+"/account/deactivate", token, map[string]any{})
			},
		} {
			t.Run(name, func(t *testing.T) {
				s := testenv.Start(t, b, limits(func(l *config.RateLimits) { l.PerIP.Burst = 3 }))
				token := registerAlice(t, s) // takes the first of the 3
				for range 2 {
					if r := call(t, s, token); r.Status == 429 {
						t.Fatalf("limited too early: %s", r.Raw)
					}
				}
				wantLimited(t, call(t, s, token))
			})
		}
	})
}

func TestPerAccountLimitHoldsAcrossClientAddresses(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		perAccount := limits(func(l *config.RateLimits) { l.PerAccount.Burst = 2 })
		// Behind a trusted proxy, so each request has its own client address.
		s := testenv.Start(t, b, func(c *config.Config) { perAccount(c); c.TrustedProxies = []string{"127.0.0.1"} })
		// Registering the name and logging in to it draw on one bucket.
		if r := post(t, s.URL, v3+"/register", "", "203.0.113.1", map[string]any{"username": "Alice", "password": pwd,
			"auth": map[string]any{"type": "m.login.dummy"}}); r.Status != 200 {
			t.Fatalf("register: %s", r.Raw)
		}
		if r := post(t, s.URL, v3+"/login", "", "203.0.113.2", loginBody("alice", pwd)); r.Status != 200 {
			t.Fatalf("login: %s", r.Raw)
		}
		wantLimited(t, post(t, s.URL, v3+"/login", "", "203.0.113.3", loginBody("@ALICE:localhost", pwd)))
		// Other accounts have their own bucket.
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", loginBody("bob", pwd)), 403, "M_FORBIDDEN")
	})
}

func TestXForwardedForCountsOnlyFromTrustedProxies(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		perIP := limits(func(l *config.RateLimits) { l.PerIP.Burst = 2 })
		trusted := testenv.Start(t, b, func(c *config.Config) { perIP(c); c.TrustedProxies = []string{"127.0.0.1"} })
		for _, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.1"} {
			if r := post(t, trusted.URL, v3+"/login", "", ip, loginBody("nobody", pwd)); r.Status != 403 {
				t.Fatalf("from %s behind a trusted proxy: %s", ip, r.Raw)
			}
		}
		wantLimited(t, post(t, trusted.URL, v3+"/login", "", "203.0.113.1", loginBody("nobody", pwd)))

		direct := testenv.Start(t, b, perIP)
		for _, ip := range []string{"203.0.113.1", "203.0.113.2"} {
			post(t, direct.URL, v3+"/login", "", ip, loginBody("nobody", pwd))
		}
		// The header of an untrusted peer is ignored: one client, one bucket.
		wantLimited(t, post(t, direct.URL, v3+"/login", "", "203.0.113.3", loginBody("nobody", pwd)))
	})
}

func TestFailedLoginLimitHoldsAcrossServerProcesses(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		cfg := testenv.TestConfig(t, b)
		limits(func(l *config.RateLimits) { l.FailedLogin.Burst = 3 })(cfg)
		s1 := testenv.StartConfig(t, cfg)
		second := *cfg
		second.Listen = "127.0.0.1:0"
		s2 := testenv.StartConfig(t, &second)
		registerAlice(t, s1)
		// Successful logins cost nothing of the failure budget.
		for range 4 {
			testenv.WantStatus(t, s1.Do(t, "POST", v3+"/login", "", loginBody("alice", pwd)), 200)
		}
		testenv.WantError(t, s1.Do(t, "POST", v3+"/login", "", loginBody("alice", "guess 1")), 403, "M_FORBIDDEN")
		testenv.WantError(t, s2.Do(t, "POST", v3+"/login", "", loginBody("alice", "guess 2")), 403, "M_FORBIDDEN")
		testenv.WantError(t, s1.Do(t, "POST", v3+"/login", "", loginBody("ALICE", "guess 3")), 403, "M_FORBIDDEN")
		// Three failures spent the budget on both processes, even for the
		// right password.
		wantLimited(t, s2.Do(t, "POST", v3+"/login", "", loginBody("alice", pwd)))
		wantLimited(t, s1.Do(t, "POST", v3+"/login", "", loginBody("@alice:localhost", "guess 4")))
		// Unknown accounts are limited too, each on its own.
		for range 3 {
			testenv.WantError(t, s2.Do(t, "POST", v3+"/login", "", loginBody("nobody", "x")), 403, "M_FORBIDDEN")
		}
		wantLimited(t, s1.Do(t, "POST", v3+"/login", "", loginBody("nobody", "x")))
	})
}

func TestRateLimitsOffLimitNothing(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) {
			limits(func(l *config.RateLimits) { l.PerIP.Burst, l.PerAccount.Burst, l.FailedLogin.Burst = 1, 1, 1 })(c)
			c.RateLimit.Enabled = false
		})
		for range 5 {
			testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", loginBody("alice", "guess")), 403, "M_FORBIDDEN")
		}
	})
}

func TestWrongPasswordsInUIADrawOnTheFailedLoginBucket(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, limits(func(l *config.RateLimits) { l.FailedLogin.Burst = 2 }))
		token := registerAlice(t, s)
		deleteWith := func(password string) testenv.Response {
			return s.Do(t, "DELETE", v3+"/devices/NOPE", token, map[string]any{"auth": map[string]any{
				"type": "m.login.password", "password": password,
				"identifier": map[string]any{"type": "m.id.user", "user": "alice"}}})
		}
		// A stolen access token must not give an unlimited password oracle.
		testenv.WantError(t, deleteWith("guess 1"), 401, "M_FORBIDDEN")
		testenv.WantError(t, deleteWith("guess 2"), 401, "M_FORBIDDEN")
		wantLimited(t, deleteWith("guess 3"))
		wantLimited(t, s.Do(t, "POST", v3+"/login", "", loginBody("alice", "guess 4")))
	})
}
