package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Dendrite binaries (github.com/matrix-org/dendrite v0.13.8, Apache-2.0:
// dendrite, generate-config, generate-keys, create-account) are found in the
// directory MYELIN_TEST_DENDRITE names (or beside the dendrite binary it
// names). Without it, Dendrite tests are skipped, unless
// MYELIN_TEST_REQUIRE_DENDRITE=1 (set by CI), which makes that a failure.
// .ci/run builds them outside the project's go.mod:
//
//	GOBIN=DIR go install github.com/matrix-org/dendrite/cmd/{dendrite,generate-config,generate-keys,create-account}@v0.13.8
func DendriteDir(t testing.TB) string {
	t.Helper()
	p := os.Getenv("MYELIN_TEST_DENDRITE")
	if fi, err := os.Stat(p); p != "" && err == nil && !fi.IsDir() {
		p = filepath.Dir(p)
	}
	missing := ""
	if p == "" {
		missing = "MYELIN_TEST_DENDRITE is not set"
	} else {
		for _, b := range []string{"dendrite", "generate-config", "generate-keys", "create-account"} {
			if _, err := os.Stat(filepath.Join(p, b)); err != nil {
				missing = fmt.Sprintf("%s not found in %s", b, p)
				break
			}
		}
	}
	if missing != "" {
		if os.Getenv("MYELIN_TEST_REQUIRE_DENDRITE") == "1" {
			t.Fatalf("Dendrite required: %s", missing)
		}
		t.Skipf("no Dendrite (%s); set MYELIN_TEST_DENDRITE to the folder of its binaries", missing)
	}
	return p
}

// Dendrite is a Dendrite monolith on loopback, with SQLite. Its server
// name is the IP literal of its HTTPS listener (127.0.0.1:PORT), where
// other servers reach it; HTTP serves its client API (and federation, for
// servers configured to reach it there).
type Dendrite struct {
	ServerName string
	HTTPURL    string
	Dir        string
	bin        string
	cmd        *exec.Cmd
	exited     chan struct{}
	mu         sync.Mutex
	log        bytes.Buffer
}

func (d *Dendrite) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.Write(b)
}

// StartDendrite configures and starts a Dendrite (binaries in binDir) with
// TLS validation of other servers off and no key perspectives (notaries),
// and waits until its client API answers. It is stopped when the test ends.
func StartDendrite(t testing.TB, binDir string) *Dendrite {
	t.Helper()
	dir := t.TempDir()
	httpAddr, httpsAddr := FreeAddr(t), FreeAddr(t)
	d := &Dendrite{ServerName: httpsAddr, HTTPURL: "http://" + httpAddr, Dir: dir, bin: binDir, exited: make(chan struct{})}
	out, err := exec.Command(filepath.Join(binDir, "generate-config"), "-ci", "-dir", dir, "-server", d.ServerName).Output()
	if err != nil {
		t.Fatalf("dendrite generate-config: %v", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("dendrite config: %v", err)
	}
	section := func(name string) map[string]any {
		m, _ := cfg[name].(map[string]any)
		if m == nil {
			t.Fatalf("dendrite config has no %s section", name)
		}
		return m
	}
	section("global")["private_key"] = filepath.Join(dir, "matrix_key.pem")
	// Accounts come from create-account (shared-secret registration), not
	// open registration.
	section("client_api")["registration_disabled"] = true
	fed := section("federation_api")
	fed["disable_tls_validation"] = true
	fed["key_perspectives"] = []any{}
	fed["prefer_direct_fetch"] = true
	cfg["logging"] = []any{map[string]any{"type": "std", "level": "info"}}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.config(), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(binDir, "generate-keys"), "-private-key", filepath.Join(dir, "matrix_key.pem")).CombinedOutput(); err != nil {
		t.Fatalf("dendrite generate-keys: %v\n%s", err, out)
	}
	cert, key, _ := SelfSignedCert(t, dir, "dendrite-tls")
	d.cmd = exec.Command(filepath.Join(binDir, "dendrite"), "-config", d.config(),
		"-http-bind-address", httpAddr, "-https-bind-address", httpsAddr, "-tls-cert", cert, "-tls-key", key)
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			d.mu.Lock()
			t.Logf("log of dendrite %s:\n%s", d.ServerName, d.log.String())
			d.mu.Unlock()
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(d.HTTPURL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("dendrite exited before serving")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dendrite did not serve within 90s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

func (d *Dendrite) config() string { return filepath.Join(d.Dir, "dendrite.yaml") }

// Register creates the account localpart with create-account (the shared
// secret registration of the CI configuration) and logs it in on
// deviceID, returning the full user ID and an access token.
func (d *Dendrite) Register(t testing.TB, localpart, deviceID string) (userID, token string) {
	t.Helper()
	const password = "correct horse battery"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(d.bin, "create-account"), "-config", d.config(),
		"-username", localpart, "-password", password, "-url", d.HTTPURL).CombinedOutput()
	if err != nil {
		t.Fatalf("dendrite create-account %s: %v\n%s", localpart, err, out)
	}
	return d.Login(t, localpart, deviceID)
}

// Login logs localpart in on deviceID.
func (d *Dendrite) Login(t testing.TB, localpart, deviceID string) (userID, token string) {
	t.Helper()
	r := Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/login", "", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart},
		"password":   "correct horse battery",
		"device_id":  deviceID,
	})
	if r.Status != 200 {
		t.Fatalf("dendrite login %s: %d %s", localpart, r.Status, r.Raw)
	}
	return r.Str("user_id"), r.Str("access_token")
}
