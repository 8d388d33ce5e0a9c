package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	v3  = "/_matrix/client/v3"
	pwd = "correct horse battery"
)

// cli runs `myelin` against the server's database and returns the exit
// code and output.
func cli(t *testing.T, s *testenv.Server, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{args[0], "--database", s.Config.Database, "--server-name", s.Config.ServerName}, args[1:]...)
	code = run(full, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustCLI(t *testing.T, s *testenv.Server, args ...string) string {
	t.Helper()
	code, out, errOut := cli(t, s, args...)
	if code != 0 {
		t.Fatalf("myelin %v: exit %d: %s", args, code, errOut)
	}
	return out
}

func passwordLogin(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

func TestUserCommandsWorkWhileTheServerRuns(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		if out := mustCLI(t, s, "user", "create", "Alice", "--password", pwd); strings.TrimSpace(out) != "@alice:localhost" {
			t.Fatalf("create printed %q", out)
		}
		r := s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", pwd))
		testenv.WantStatus(t, r, 200)
		token := r.Str("access_token")

		if code, _, errOut := cli(t, s, "user", "create", "@alice:localhost", "--password", pwd); code == 0 || !strings.Contains(errOut, "M_USER_IN_USE") {
			t.Fatalf("second create: %d %s", code, errOut)
		}
		if code, _, errOut := cli(t, s, "user", "create", "bob", "--password", "short"); code == 0 || !strings.Contains(errOut, "M_WEAK_PASSWORD") {
			t.Fatalf("weak password: %d %s", code, errOut)
		}

		// A login token printed by the CLI logs in once.
		tok := strings.TrimSpace(mustCLI(t, s, "user", "login-token", "alice"))
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": tok}), 200)
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": tok}), 403, "M_FORBIDDEN")

		mustCLI(t, s, "user", "threepid", "add", "alice", "email", "Alice@Example.org")
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "password": pwd,
			"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}}), 200)

		// passwd logs every device out unless told otherwise. The CLI is
		// another process: the server refuses the tokens within a second.
		mustCLI(t, s, "user", "passwd", "alice", "--password", "a new passphrase")
		testenv.WantTokenRefusedWithin(t, s.URL, token, time.Now(), testenv.RevocationDelay)
		r = s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", "a new passphrase"))
		testenv.WantStatus(t, r, 200)
		mustCLI(t, s, "user", "passwd", "alice", "--keep-devices", "--password", "third passphrase")
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil), 200)

		list := mustCLI(t, s, "user", "list")
		if !strings.Contains(list, "@alice:localhost") || !strings.Contains(list, "DEACTIVATED") {
			t.Fatalf("list:\n%s", list)
		}
		mustCLI(t, s, "user", "deactivate", "@alice:localhost")
		testenv.WantTokenRefusedWithin(t, s.URL, r.Str("access_token"), time.Now(), testenv.RevocationDelay)
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", "third passphrase")), 403, "M_USER_DEACTIVATED")
		if code, _, _ := cli(t, s, "user", "login-token", "alice"); code == 0 {
			t.Fatal("login token for a deactivated account")
		}
	})
}

func TestUserCreateReadsThePasswordFromStdin(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	t.Cleanup(func() { stdin = os.Stdin })
	stdin = strings.NewReader(pwd + "\n")
	mustCLI(t, s, "user", "create", "carol")
	testenv.WantStatus(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("carol", pwd)), 200)
	stdin = strings.NewReader("")
	if code, _, errOut := cli(t, s, "user", "create", "dave"); code == 0 || !strings.Contains(errOut, "no password") {
		t.Fatalf("empty stdin: %d %s", code, errOut)
	}
}

func TestRegistrationTokenCommands(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	if out := mustCLI(t, s, "registration-token", "create", "--uses", "2", "--expires", "7d", "friends"); strings.TrimSpace(out) != "friends" {
		t.Fatalf("create printed %q", out)
	}
	generated := strings.TrimSpace(mustCLI(t, s, "registration-token", "create"))
	if generated == "" {
		t.Fatal("no generated token printed")
	}
	list := mustCLI(t, s, "registration-token", "list")
	for _, want := range []string{"friends", "2", generated, "unlimited", "never"} {
		if !strings.Contains(list, want) {
			t.Fatalf("list lacks %q:\n%s", want, list)
		}
	}
	for _, bad := range [][]string{
		{"registration-token", "create", "friends"},
		{"registration-token", "create", "not a token"},
		{"registration-token", "create", "--uses", "0"},
		{"registration-token", "create", "--expires", "soon"},
		{"registration-token", "create", "a", "b"},
	} {
		if code, _, _ := cli(t, s, bad...); code == 0 {
			t.Errorf("myelin %v succeeded", bad)
		}
	}
	mustCLI(t, s, "registration-token", "delete", "friends")
	if code, _, _ := cli(t, s, "registration-token", "delete", "friends"); code == 0 {
		t.Fatal("deleting a missing token succeeded")
	}
}

func TestAdminCommandsRejectBadCommandLines(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	for _, args := range [][]string{
		{"user"},
		{"user", "frobnicate"},
		{"user", "create"},
		{"user", "deactivate", "a", "b"},
		{"user", "threepid", "remove", "alice", "email", "a@example.org"},
		{"user", "threepid", "add", "alice", "fax", "123"},
		{"user", "list", "--nope"},
		{"registration-token"},
	} {
		if code, _, _ := cli(t, s, args...); code == 0 {
			t.Errorf("myelin %v succeeded", args)
		}
	}
}

func TestConfigFlagsMayFollowTheAdminCommandsArguments(t *testing.T) {
	db := t.TempDir() + "/m.db"
	var out, errOut bytes.Buffer
	if code := run([]string{"user", "create", "carol", "--password", pwd, "--database", db}, &out, &errOut); code != 0 {
		t.Fatalf("flags after the arguments: exit %d: %s", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"user", "list", "--database=" + db}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "@carol:localhost") {
		t.Fatalf("user list --database=…: exit %d: %s %s", code, out.String(), errOut.String())
	}
	// Flags first and a command after them would silently start a server
	// on the default database: refused with a hint instead.
	errOut.Reset()
	if code := run([]string{"--database", db, "user", "list"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "a command comes first") {
		t.Fatalf("flags before the command: exit %d: %s", code, errOut.String())
	}
}
