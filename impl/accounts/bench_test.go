package accounts_test

import (
	"context"
	"testing"

	"github.com/myelin-hs/myelin/impl/accounts"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// BenchmarkFailedLogin compares failed password logins of a known user, an
// unknown user and an unknown 3PID, with the default (production) argon2id
// parameters. They should cost about the same (issue 3: within 20%), so
// timing tells an attacker nothing about which accounts exist:
//
//	go test -run '^$' -bench FailedLogin ./impl/accounts
func BenchmarkFailedLogin(b *testing.B) {
	s := testenv.Start(b, testenv.SQLite, func(c *config.Config) { c.Argon2 = config.Defaults().Argon2 })
	r := s.Do(b, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd,
		"auth": map[string]any{"type": "m.login.dummy"}})
	if r.Status != 200 {
		b.Fatalf("register: %s", r.Raw)
	}
	svc := s.App.Services.Accounts
	cases := []struct {
		name string
		req  accounts.LoginRequest
	}{
		{"known user", accounts.LoginRequest{User: "alice"}},
		{"unknown user", accounts.LoginRequest{User: "nobody"}},
		{"unknown 3PID", accounts.LoginRequest{Medium: "email", Address: "nobody@example.org"}},
	}
	for i := range cases {
		cases[i].req.Type, cases[i].req.Password = accounts.LoginPassword, "wrong password"
	}
	// Warm up first (heap growth to the hash's 19 MiB, the dummy hash,
	// caches): otherwise whichever case runs first looks ~10% slower.
	for range 3 {
		for _, c := range cases {
			_, _ = svc.Login(context.Background(), c.req)
		}
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			req := c.req
			for b.Loop() {
				if _, err := svc.Login(context.Background(), req); err == nil {
					b.Fatal("login succeeded")
				}
			}
		})
	}
}
