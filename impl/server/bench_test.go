package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/gen/fedapi"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// benchClient answers the operations the benchmarks call; the validator
// and the generated decoding run before it, which is what is measured.
type benchClient struct {
	clientapi.StrictServerInterface
}

func (benchClient) UpdateDevice(context.Context, clientapi.UpdateDeviceRequestObject) (clientapi.UpdateDeviceResponseObject, error) {
	return clientapi.UpdateDevice200JSONResponse{}, nil
}

func (benchClient) Login(context.Context, clientapi.LoginRequestObject) (clientapi.LoginResponseObject, error) {
	return nil, matrixerr.Forbidden("Invalid username or password")
}

func (benchClient) GetVersions(context.Context, clientapi.GetVersionsRequestObject) (clientapi.GetVersionsResponseObject, error) {
	return clientapi.GetVersions200JSONResponse{Versions: []string{"v1.11"}}, nil
}

func benchServer(b *testing.B) *echo.Echo {
	cfg := config.Defaults()
	e, err := New(Deps{
		Config:     &cfg,
		Log:        slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Client:     benchClient{},
		Federation: fedapi.StrictServerInterface(nil),
		Security:   benchSecurity,
	})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// benchRequests serves method path body through the whole Echo stack and
// checks the status, so the benchmark cannot measure an error path.
func benchRequests(b *testing.B, method, path, body string, want int) {
	e := benchServer(b)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
	}
}

// The floor: an operation with nothing to validate.
func BenchmarkRequestWithNothingToValidate(b *testing.B) {
	benchRequests(b, http.MethodGet, "/_matrix/client/versions", "", 200)
}

// A path parameter and a small JSON body checked against the spec.
func BenchmarkRequestValidationPathAndBody(b *testing.B) {
	benchRequests(b, http.MethodPut, "/_matrix/client/v3/devices/QBUAZIFURK", `{"display_name":"My phone"}`, 200)
}

// The login body: an identifier object and several optional fields.
func BenchmarkRequestValidationLoginBody(b *testing.B) {
	benchRequests(b, http.MethodPost, "/_matrix/client/v3/login",
		`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"correct horse","initial_device_display_name":"Phone"}`, 403)
}

// benchSecurity lets every request through, for tests of the HTTP layer.
var benchSecurity = map[string]SecurityFunc{
	"accessToken":   func(echo.Context) error { return nil },
	"signedRequest": func(echo.Context) error { return nil },
}
