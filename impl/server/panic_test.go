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
)

func TestAPanicAnswers500UnknownWithoutLeakingInternals(t *testing.T) {
	cfg := config.Defaults()
	var logged bytes.Buffer
	e, err := New(Deps{
		Config:     &cfg,
		Log:        slog.New(slog.NewTextHandler(&logged, nil)),
		Client:     benchClient{},
		Federation: fedapi.StrictServerInterface(nil),
		Routes: func(e *echo.Echo) {
			e.GET("/_matrix/static/boom", func(echo.Context) error { panic("secret internal detail") })
		},
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
