package conformance

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// A real client is a Matrix client library driven by a script under
// conformance/clients/ against a running myelin binary.
type realClient struct {
	name string
	// missing says why the library is not installed, or "".
	missing func() string
	cmd     func(url string) *exec.Cmd
}

var realClients = []realClient{
	{
		name: "matrix-nio",
		missing: func() string {
			if err := exec.Command("/usr/bin/python3", "-c", "import nio").Run(); err != nil {
				return "matrix-nio is not installed (apt-get install python3-matrix-nio): " + err.Error()
			}
			return ""
		},
		cmd: func(url string) *exec.Cmd {
			return exec.Command("/usr/bin/python3", "clients/nio/flows.py", url)
		},
	},
	{
		name: "matrix-js-sdk",
		missing: func() string {
			if _, err := exec.LookPath("node"); err != nil {
				return "node is not installed"
			}
			if _, err := os.Stat("clients/js/node_modules/matrix-js-sdk/package.json"); err != nil {
				return "matrix-js-sdk is not installed (cd conformance/clients/js && npm ci)"
			}
			return ""
		},
		cmd: func(url string) *exec.Cmd {
			c := exec.Command("node", "flows.mjs", url)
			c.Dir = "clients/js"
			return c
		},
	},
}

// TestRealClientsCompleteTheCoreFlows builds myelin, starts it as its own
// process (open registration, rate limits off) on each backend, and runs
// every real client's flows against it: register with UIA, login with and
// without device_id, whoami, list/rename/delete devices with UIA, change
// password, logout, logout/all. A client library that is not installed is
// skipped, unless MYELIN_TEST_REQUIRE_CLIENTS=1 (CI), which fails instead.
func TestRealClientsCompleteTheCoreFlows(t *testing.T) {
	var available []realClient
	for _, c := range realClients {
		if why := c.missing(); why != "" {
			if os.Getenv("MYELIN_TEST_REQUIRE_CLIENTS") == "1" {
				t.Errorf("%s required (MYELIN_TEST_REQUIRE_CLIENTS=1): %s", c.name, why)
			} else {
				t.Logf("skipping %s: %s", c.name, why)
			}
			continue
		}
		available = append(available, c)
	}
	if len(available) == 0 {
		t.Skip("no real Matrix client library installed")
	}
	bin := buildMyelin(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		url := startMyelin(t, bin, testenv.NewDatabase(t, b))
		for _, c := range available {
			t.Run(c.name, func(t *testing.T) {
				cmd := c.cmd(url)
				out, err := cmd.CombinedOutput()
				t.Logf("%s:\n%s", c.name, out)
				if err != nil {
					t.Fatalf("%s flows failed: %v", c.name, err)
				}
			})
		}
	})
}

func buildMyelin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "myelin")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/myelin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nobody listens on. The server must be
// told its real port up front: it advertises its URL in .well-known.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startMyelin runs the binary until the test ends and returns its URL.
func startMyelin(t *testing.T, bin, database string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve",
		"--listen", addr, "--database", database, "--registration", "open", "--rate-limit", "off",
		"--server-name", "localhost", "--log-level", "warn")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			fmt.Fprintln(&logs, sc.Text())
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := cmd.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("myelin exited: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if logs.Len() > 0 {
			t.Logf("myelin log:\n%s", logs.String())
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("myelin did not answer /versions at %s: %v\n%s", url, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
