package conformance

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// requireJSSDK skips the test when matrix-js-sdk is not installed, or
// fails it when MYELIN_TEST_REQUIRE_CLIENTS=1 (CI).
func requireJSSDK(t *testing.T) {
	t.Helper()
	for _, c := range realClients {
		if c.name != "matrix-js-sdk" {
			continue
		}
		if why := c.missing(); why != "" {
			if os.Getenv("MYELIN_TEST_REQUIRE_CLIENTS") == "1" {
				t.Fatalf("matrix-js-sdk required (MYELIN_TEST_REQUIRE_CLIENTS=1): %s", why)
			}
			t.Skip(why)
		}
		return
	}
	t.Fatal("matrix-js-sdk is not among the real clients")
}

// runJS runs node script args… in clients/js, fails the test with its
// output when it exits non-zero, and logs its steps.
func runJS(t *testing.T, script string, args ...string) {
	t.Helper()
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Dir = "clients/js"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("matrix-js-sdk %s failed: %v\n%s", script, err, out)
	}
	// The Rust crypto's tracing is long; the steps are what matter.
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "skip ") {
			t.Log(line)
		}
	}
}

// TestMatrixJSSDKVerifiesANewDeviceWithEmojiOverToDevice runs
// clients/js/sas.mjs against a myelin process on each backend: two
// matrix-js-sdk clients with Rust crypto, each running the SDK's own sync
// loop, are one user's devices A and B. A bootstraps cross-signing; B asks
// the user's other devices to verify it; A accepts; B starts SAS; both show
// the same seven emoji and confirm; then B is cross-signing verified and
// trusts its own identity, and the server holds A's self-signing signature
// of B. Every verification message travels as a to-device message through
// /sync, and each device learns of the other's keys and the new signature
// through device_lists.changed.
func TestMatrixJSSDKVerifiesANewDeviceWithEmojiOverToDevice(t *testing.T) {
	requireJSSDK(t)
	bin := testenv.BuildMyelin(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		p := testenv.StartProcess(t, bin, "--database", testenv.NewDatabase(t, b),
			"--registration", "open", "--rate-limit", "off", "--server-name", "localhost")
		runJS(t, "sas.mjs", p.URL)
	})
}

// TestMatrixJSSDKSendsOlmEncryptedToDeviceAcrossFederatedServers runs
// clients/js/olm_federation.mjs against two federated myelin processes
// (a.test and b.test, each with its own database of the backend, each
// resolving the other by --federation-resolve): alice on A fetches bob's
// device keys and claims one of his one-time keys through A from B,
// encrypts a payload for bob's device with Olm and sends it with
// sendToDevice as m.room.encrypted; A forwards it as an m.direct_to_device
// EDU; bob's client, syncing from B, receives it and its Rust crypto
// decrypts it to alice's event type and content.
func TestMatrixJSSDKSendsOlmEncryptedToDeviceAcrossFederatedServers(t *testing.T) {
	requireJSSDK(t)
	bin := testenv.BuildMyelin(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		// Fixed addresses: each server's configuration names the other.
		addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
		common := []string{"--federation-resolve", "a.test=http://" + addrA, "--federation-resolve", "b.test=http://" + addrB,
			"--registration", "open", "--rate-limit", "off"}
		a := testenv.StartProcess(t, bin, append([]string{"--server-name", "a.test", "--listen", addrA,
			"--database", testenv.NewDatabase(t, b)}, common...)...)
		bp := testenv.StartProcess(t, bin, append([]string{"--server-name", "b.test", "--listen", addrB,
			"--database", testenv.NewDatabase(t, b)}, common...)...)
		runJS(t, "olm_federation.mjs", a.URL, bp.URL)
	})
}
