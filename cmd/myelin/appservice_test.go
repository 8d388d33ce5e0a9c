package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func bridgeFile(t *testing.T, dir, id, token, prefix string) string {
	t.Helper()
	p := filepath.Join(dir, id+".yaml")
	yaml := fmt.Sprintf("id: %s\nurl: null\nas_token: %s\nhs_token: hs-%s\nsender_localpart: %sbot\nnamespaces:\n  users:\n    - exclusive: true\n      regex: '@%s.*'\n", id, token, token, prefix, prefix)
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppserviceListShowsRegistrationsAndTheirUsersCounts(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		dir := t.TempDir()
		wa := bridgeFile(t, dir, "whatsapp", "wa-token", "_wa_")
		sig := bridgeFile(t, dir, "signal", "signal-token", "_sig_")
		s := testenv.Start(t, b, func(c *config.Config) { c.AppServiceConfigFiles = []string{wa, sig} })
		for _, u := range []string{"_wa_1", "_wa_2"} {
			testenv.WantStatus(t, s.Do(t, "POST", v3+"/register", "wa-token", map[string]any{"type": "m.login.application_service", "username": u, "inhibit_login": true}), 200)
		}
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", "wa-token", nil), 200) // registers the sender
		out := mustCLI(t, s, "appservice", "list", "--appservice-config", wa, "--appservice-config", sig)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
			t.Fatalf("appservice list:\n%s", out)
		}
		if f := strings.Fields(lines[1]); f[0] != "signal" || !strings.Contains(lines[1], "@_sig_bot:localhost") || !strings.Contains(lines[1], " 0 ") {
			t.Fatalf("signal row: %q", lines[1])
		}
		if !strings.HasPrefix(lines[2], "whatsapp") || !strings.Contains(lines[2], "@_wa_.* (exclusive)") || !strings.Contains(lines[2], " 3 ") {
			t.Fatalf("whatsapp row (2 ghosts and the bot): %q", lines[2])
		}
	})
}

func TestABadRegistrationFileStopsStartUpWithOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: x\nas_token: a\nhs_token: h\nsender_localpart: bot\nnamespaces:\n  users:\n    - regex: '@x_(['\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"serve", "--database", filepath.Join(dir, "m.db"), "--listen", "127.0.0.1:0", "--appservice-config", bad}, &out, &errOut)
	msg := strings.TrimSpace(errOut.String())
	if code == 0 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, bad+": namespaces.users[0].regex:") {
		t.Fatalf("exit %d, stderr %q", code, msg)
	}
}

func TestSIGHUPReloadsRegistrationsAndKeepsThemWhenAFileIsBad(t *testing.T) {
	dir := t.TempDir()
	file := bridgeFile(t, dir, "bridge", "first-token", "_b_")
	p := testenv.StartProcess(t, testenv.BuildMyelin(t), "--database", filepath.Join(dir, "m.db"), "--appservice-config", file)
	whoami := func(token string) int { return testenv.Do(t, p.URL, "GET", v3+"/account/whoami", token, nil).Status }
	if got := whoami("first-token"); got != 200 {
		t.Fatalf("first as_token: %d", got)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after SIGHUP: %s", what)
			}
		}
	}
	bridgeFile(t, dir, "bridge", "second-token", "_b_")
	p.Signal(t, syscall.SIGHUP)
	waitFor("the new as_token works", func() bool { return whoami("second-token") == 200 })
	if got := whoami("first-token"); got != 401 {
		t.Fatalf("the replaced as_token answers %d", got)
	}
	if err := os.WriteFile(file, []byte("id: bridge\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	waitFor("the bad file is reported", func() bool { return strings.Contains(p.Log(), "application services not reloaded") })
	if got := whoami("second-token"); got != 200 {
		t.Fatalf("a bad file on reload dropped the loaded registration: %d", got)
	}
}
