package conformance

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// TestMatrixJSSDKKeepsSecretsAndKeyBackupsOnTheServer runs
// clients/js/stores.mjs against a myelin process on each backend:
// matrix-js-sdk's Rust crypto bootstraps cross-signing, secret storage and a
// key backup on device A and backs up a session key; device B of the same
// user reads the cross-signing keys and the backup key from secret storage
// with the recovery key, becomes cross-signing verified without SAS, and
// restores the session key from the backup. Both clients run the SDK's
// own sync loop, so the account data the SDK writes reaches it through
// /sync. Skipped when matrix-js-sdk is not installed, unless
// MYELIN_TEST_REQUIRE_CLIENTS=1 (CI).
func TestMatrixJSSDKKeepsSecretsAndKeyBackupsOnTheServer(t *testing.T) {
	var js realClient
	for _, c := range realClients {
		if c.name == "matrix-js-sdk" {
			js = c
		}
	}
	if why := js.missing(); why != "" {
		if os.Getenv("MYELIN_TEST_REQUIRE_CLIENTS") == "1" {
			t.Fatalf("matrix-js-sdk required (MYELIN_TEST_REQUIRE_CLIENTS=1): %s", why)
		}
		t.Skip(why)
	}
	bin := testenv.BuildMyelin(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		p := testenv.StartProcess(t, bin, "--database", testenv.NewDatabase(t, b),
			"--registration", "open", "--rate-limit", "off", "--server-name", "localhost")
		cmd := exec.Command("node", "stores.mjs", p.URL)
		cmd.Dir = "clients/js"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("matrix-js-sdk stores flow failed: %v\n%s", err, out)
		}
		// The Rust crypto's tracing is long; the steps are what matter.
		for line := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "skip ") {
				t.Log(line)
			}
		}
	})
}
