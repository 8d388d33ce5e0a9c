package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

func TestMetricsCountRequestsByRouteOnTheirOwnListener(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" })
		addr := s.App.MetricsAddr()
		if addr == "" {
			t.Fatal("no metrics listener")
		}
		token, _ := testenv.CreateUser(t, s, "alice", "correct horse battery")
		for range 2 {
			if r := s.Do(t, "GET", "/_matrix/client/v3/account/whoami", token, nil); r.Status != 200 {
				t.Fatalf("whoami: %d", r.Status)
			}
		}
		if r := s.Do(t, "GET", "/_matrix/client/r0/account/whoami", "not-a-token", nil); r.Status != 401 {
			t.Fatalf("whoami with a bad token: %d", r.Status)
		}
		if r := s.Do(t, "GET", "/_matrix/client/v3/devices/SOMEDEVICE", token, nil); r.Status != 404 {
			t.Fatalf("unknown device: %d", r.Status)
		}
		if r := s.Do(t, "GET", "/no/such/path", "", nil); r.Status != 404 {
			t.Fatalf("unknown path: %d", r.Status)
		}
		got := scrape(t, addr)
		for _, want := range []string{
			`myelin_http_requests_total{method="GET",route="/_matrix/client/v3/account/whoami",status="200"} 2`,
			// r0 is counted as v3; the bad token's 401 is its own series.
			`myelin_http_requests_total{method="GET",route="/_matrix/client/v3/account/whoami",status="401"} 1`,
			// A path parameter stays a pattern, so label values are bounded.
			`myelin_http_requests_total{method="GET",route="/_matrix/client/v3/devices/:deviceId",status="404"} 1`,
			`myelin_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
			`myelin_http_request_duration_seconds_count{method="GET",route="/_matrix/client/v3/account/whoami"} 3`,
			"myelin_password_hashes_running 0",
			"myelin_password_hashes_waiting 0",
			"myelin_token_cache_misses_total ",
			"myelin_federation_outbox_pending 0",
			"go_goroutines ",
			"process_resident_memory_bytes ",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		if t.Failed() {
			t.Logf("metrics:\n%s", got)
		}
		// The client API does not serve them.
		if r := s.Do(t, "GET", "/metrics", "", nil); r.Status != 404 {
			t.Fatalf("/metrics on the client listener: %d", r.Status)
		}
	})
}

func TestMetricsListenIsCheckedAtStartUp(t *testing.T) {
	for _, bad := range []string{"9100", "localhost"} {
		c := config.Defaults()
		c.MetricsListen = bad
		if err := c.Verify(); err == nil || !strings.Contains(err.Error(), "metrics-listen") {
			t.Errorf("metrics_listen %q: %v, want a metrics-listen error", bad, err)
		}
	}
	c := config.Defaults()
	c.MetricsListen = c.Listen
	if err := c.Verify(); err == nil {
		t.Error("metrics_listen equal to listen was accepted")
	}
}
