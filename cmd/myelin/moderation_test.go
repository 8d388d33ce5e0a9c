package main

import (
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestModerationCommandsReachTheRunningServerWithinASecond(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, dev := testenv.CreateUser(t, s, "alice", pwd)
		bobTok, _ := testenv.CreateUser(t, s, "bob", pwd)
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", alice, nil), 200) // cached by the server

		// Lock from the CLI: the server answers M_USER_LOCKED within a second.
		mustCLI(t, s, "user", "lock", "alice", "on")
		since := time.Now()
		for {
			r := s.Do(t, "GET", v3+"/account/whoami", alice, nil)
			if r.Status == 401 {
				testenv.WantError(t, r, 401, "M_USER_LOCKED")
				break
			}
			if time.Since(since) > testenv.RevocationDelay {
				t.Fatal("lock not honoured within a second")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if out := mustCLI(t, s, "user", "lock", "alice"); strings.TrimSpace(out) != "@alice:localhost locked: true" {
			t.Fatalf("lock status %q", out)
		}
		mustCLI(t, s, "user", "lock", "@alice:localhost", "off")
		mustCLI(t, s, "user", "suspend", "alice", "on")
		if out := mustCLI(t, s, "user", "suspend", "alice"); !strings.Contains(out, "suspended: true") {
			t.Fatalf("suspend status %q", out)
		}

		// An admin made by the CLI may use the admin endpoints.
		testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v1/admin/lock/@alice:localhost", bobTok, nil), 403, "M_FORBIDDEN")
		mustCLI(t, s, "user", "admin", "bob", "on")
		deadline := time.Now().Add(testenv.RevocationDelay)
		for {
			r := s.Do(t, "GET", "/_matrix/client/v1/admin/suspend/@alice:localhost", bobTok, nil)
			if r.Status == 200 {
				if r.Body["suspended"] != true {
					t.Fatalf("suspended %s", r.Raw)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("admin flag not honoured within a second: %s", r.Raw)
			}
			time.Sleep(10 * time.Millisecond)
		}

		out := mustCLI(t, s, "user", "whois", "alice")
		if !strings.Contains(out, "admin=false locked=false suspended=true") || !strings.Contains(out, dev) {
			t.Fatalf("whois:\n%s", out)
		}
		if code, _, errOut := cli(t, s, "user", "lock", "nobody", "on"); code == 0 || !strings.Contains(errOut, "M_NOT_FOUND") {
			t.Fatalf("lock of nobody: %d %s", code, errOut)
		}
		if code, _, _ := cli(t, s, "user", "lock", "alice", "maybe"); code == 0 {
			t.Fatal("lock maybe accepted")
		}

		// deactivate --erase leaves only the ID.
		mustCLI(t, s, "user", "deactivate", "alice", "--erase")
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", pwd)), 403, "M_FORBIDDEN")
	})
}
