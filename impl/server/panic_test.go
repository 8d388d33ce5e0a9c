package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/gen/fedapi"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/metrics"
)

func TestAPanicAnswers500UnknownWithoutLeakingInternals(t *testing.T) {
	cfg := config.Defaults()
	var logged bytes.Buffer
	m := metrics.New()
	e, err := New(Deps{
		Config:     &cfg,
		Log:        slog.New(slog.NewTextHandler(&logged, nil)),
		Client:     benchClient{},
		Federation: fedapi.StrictServerInterface(nil),
		Routes: func(e *echo.Echo) {
			e.GET("/_matrix/static/boom", func(echo.Context) error { panic("secret internal detail") })
		},
		Observe:  m.Middleware(),
		Security: benchSecurity,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/_matrix/static/boom")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if resp.StatusCode != http.StatusInternalServerError || json.Unmarshal(raw, &body) != nil ||
		body["errcode"] != "M_UNKNOWN" || body["error"] == nil {
		t.Fatalf("want 500 M_UNKNOWN, got %d %s", resp.StatusCode, raw)
	}
	if strings.Contains(string(raw), "secret") || strings.Contains(string(raw), "goroutine") {
		t.Fatalf("the answer leaks internals: %s", raw)
	}
	if !strings.Contains(logged.String(), "secret internal detail") {
		t.Fatalf("the panic was not logged for the operator: %s", logged.String())
	}
	scrape := httptest.NewRecorder()
	m.Handler().ServeHTTP(scrape, httptest.NewRequest("GET", "/metrics", nil))
	if want := `myelin_http_requests_total{method="GET",route="/_matrix/static/boom",status="500"} 1`; !strings.Contains(scrape.Body.String(), want) {
		t.Fatalf("the panic's 500 was not counted (%s):\n%s", want, scrape.Body)
	}
	// The server goes on serving.
	r2, err := http.Get(srv.URL + "/_matrix/client/versions")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Fatalf("after a panic: %d", r2.StatusCode)
	}
}
