package conformance

import (
	"os"
	"os/exec"
	"testing"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// TestRealClientsRefreshTokens runs matrix-js-sdk against a myelin process
// whose access tokens live two seconds: login with refresh_token: true, a
// tokenRefreshFunction across three forced expiries, getCapabilities, and
// a thief replaying an old refresh token, which logs the client out
// (conformance/clients/js/refresh.mjs). matrix-nio, which asks for no
// refresh token, keeps non-expiring tokens: TestRealClientsCompleteTheCoreFlows.
func TestRealClientsRefreshTokens(t *testing.T) {
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
		t.Skipf("skipping matrix-js-sdk: %s", why)
	}
	bin := testenv.BuildMyelin(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		p := testenv.StartProcess(t, bin, "--database", testenv.NewDatabase(t, b),
			"--registration", "open", "--rate-limit", "off", "--server-name", "localhost",
			"--access-token-lifetime", "2s", "--get-login-token", "true")
		cmd := exec.Command("node", "refresh.mjs", p.URL, "2000")
		cmd.Dir = "clients/js"
		out, err := cmd.CombinedOutput()
		t.Logf("matrix-js-sdk:\n%s", out)
		if err != nil {
			t.Fatalf("matrix-js-sdk refresh flows failed: %v", err)
		}
	})
}
