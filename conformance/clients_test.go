package conformance

import (
	"os"
	"os/exec"
	"testing"

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
	bin := testenv.BuildMyelin(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		p := testenv.StartProcess(t, bin, "--database", testenv.NewDatabase(t, b),
			"--registration", "open", "--rate-limit", "off", "--server-name", "localhost")
		for _, c := range available {
			t.Run(c.name, func(t *testing.T) {
				cmd := c.cmd(p.URL)
				out, err := cmd.CombinedOutput()
				t.Logf("%s:\n%s", c.name, out)
				if err != nil {
					t.Fatalf("%s flows failed: %v", c.name, err)
				}
			})
		}
	})
}
