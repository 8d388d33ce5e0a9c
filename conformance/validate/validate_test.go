package validate_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/conformance/validate"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// fixed serves one canned response on every path, behind the validating
// middleware, over real HTTP; it returns the server and the violations seen.
func fixed(t *testing.T, status int, contentType, body string) (*httptest.Server, *[]string) {
	t.Helper()
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	e := echo.New()
	e.Pre(v.Middleware(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, err.Error())
	}))
	e.Any("/*", func(c echo.Context) error {
		c.Response().Header().Set("Content-Type", contentType)
		c.Response().WriteHeader(status)
		_, err := c.Response().Write([]byte(body))
		return err
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, &seen
}

func get(t *testing.T, srv *httptest.Server, method, path string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

const jsonCT = "application/json"

func TestValidatorRejectsResponsesThatBreakTheSpec(t *testing.T) {
	cases := []struct {
		name, method, path string
		status             int
		body               string
		want               string // part of the violation message
	}{
		{"device without device_id", "GET", "/_matrix/client/v3/devices/QBUAZIFURK", 200,
			`{"display_name":"android","last_seen_ip":"1.2.3.4","last_seen_ts":1474491775024}`, "device_id"},
		{"device list entry without device_id", "GET", "/_matrix/client/v3/devices", 200,
			`{"devices":[{"display_name":"android","last_seen_ip":null,"last_seen_ts":null}]}`, "device_id"},
		{"device list entry without last_seen_ip (matrix-nio rejects the list)", "GET", "/_matrix/client/v3/devices", 200,
			`{"devices":[{"device_id":"QBUAZIFURK","display_name":null,"last_seen_ts":null}]}`, "last_seen_ip"},
		{"wrong type", "GET", "/_matrix/client/v3/account/whoami", 200, `{"user_id":5}`, "user_id"},
		{"undeclared status without errcode", "GET", "/_matrix/client/v3/account/whoami", 500, `{"error":"boom"}`, "errcode"},
		{"undeclared status without error", "GET", "/_matrix/client/v3/devices", 401, `{"errcode":"M_UNKNOWN_TOKEN"}`, "error"},
		{"declared error status without error", "POST", "/_matrix/client/v3/register", 403, `{"errcode":"M_FORBIDDEN"}`, "error"},
		{"declared status without a body schema, not a Matrix error", "GET", "/_matrix/client/v3/devices/X", 404, `{}`, "errcode"},
		{"UIA challenge without params", "DELETE", "/_matrix/client/v3/devices/QBUAZIFURK", 401,
			`{"flows":[{"stages":["m.login.password"]}],"session":"abc"}`, "params"},
		{"undeclared success status", "GET", "/_matrix/client/versions", 201, `{"versions":[]}`, "201"},
		{"UIA challenge without params where the spec declares no 401", "POST", "/_matrix/client/v3/keys/device_signing/upload", 401,
			`{"flows":[{"stages":["m.login.password"]}],"session":"abc"}`, "params"},
		{"undeclared 401 challenge of an operation without UIA", "POST", "/_matrix/client/v3/keys/signatures/upload", 401,
			`{"flows":[{"stages":["m.login.password"]}],"params":{},"session":"abc"}`, "errcode"},
		{"not JSON", "GET", "/_matrix/client/versions", 200, `versions`, "body"},
		{"retry_after_ms not an integer", "POST", "/_matrix/client/v3/logout", 429,
			`{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":"soon"}`, "retry_after_ms"},
		{"unknown API path answering non-Matrix error", "GET", "/_matrix/client/v3/nope", 404, `{"message":"not found"}`, "errcode"},
		{"unknown API path succeeding", "GET", "/_matrix/federation/v1/nope", 200, `{}`, "no operation"},
		{"federation keys missing server_name type", "GET", "/_matrix/key/v2/server", 200, `{"server_name":1}`, "server_name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, seen := fixed(t, c.status, jsonCT, c.body)
			get(t, srv, c.method, c.path)
			if len(*seen) != 1 || !strings.Contains((*seen)[0], c.want) {
				t.Fatalf("want one violation mentioning %q, got %q", c.want, *seen)
			}
		})
	}
}

func TestValidatorAcceptsConformingResponses(t *testing.T) {
	cases := []struct {
		name, method, path string
		status             int
		contentType, body  string
	}{
		{"device list with nulls", "GET", "/_matrix/client/v3/devices", 200, jsonCT,
			`{"devices":[{"device_id":"QBUAZIFURK","display_name":null,"last_seen_ip":null,"last_seen_ts":null}]}`},
		{"device list on r0 (rewritten by the server, not here)", "GET", "/_matrix/client/v3/devices", 200, jsonCT, `{"devices":[]}`},
		{"unknown token", "GET", "/_matrix/client/v3/account/whoami", 401, jsonCT,
			`{"errcode":"M_UNKNOWN_TOKEN","error":"Unrecognised access token","soft_logout":false}`},
		{"rate limited", "POST", "/_matrix/client/v3/logout", 429, jsonCT,
			`{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}`},
		{"UIA challenge", "DELETE", "/_matrix/client/v3/devices/QBUAZIFURK", 401, jsonCT,
			`{"flows":[{"stages":["m.login.password"]}],"params":{},"session":"abc"}`},
		{"UIA failed stage", "POST", "/_matrix/client/v3/delete_devices", 401, jsonCT,
			`{"flows":[{"stages":["m.login.password"]}],"params":{},"session":"abc","completed":[],"errcode":"M_FORBIDDEN","error":"Invalid password"}`},
		{"UIA challenge of an operation whose description says it uses UIA but declares no 401", "POST", "/_matrix/client/v3/keys/device_signing/upload", 401, jsonCT,
			`{"flows":[{"stages":["m.login.password"]}],"params":{},"session":"abc"}`},
		{"unknown device", "GET", "/_matrix/client/v3/devices/X", 404, jsonCT, `{"errcode":"M_NOT_FOUND","error":"Unknown device"}`},
		{"unknown path", "GET", "/_matrix/client/v3/nope", 404, jsonCT, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`},
		{"fallback page outside the spec", "GET", "/_matrix/client/v3/auth/m.login.password/fallback/web", 200, "text/html", `<html></html>`},
		{"CORS preflight", "OPTIONS", "/_matrix/client/v3/login", 204, "", ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, seen := fixed(t, c.status, c.contentType, c.body)
			get(t, srv, c.method, c.path)
			if len(*seen) != 0 {
				t.Fatalf("conforming response reported: %q", *seen)
			}
		})
	}
}

// recordingTB is a testing.TB whose Errorf is recorded instead of failing,
// so a test can show that a test server reports a violation.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestEveryTestServerFailsTheTestOnABrokenResponse(t *testing.T) {
	rec := &recordingTB{TB: t}
	s := testenv.Start(rec, testenv.SQLite, nil)
	// A good response first: nothing reported.
	testenv.WantStatus(t, s.Do(t, "GET", "/_matrix/client/versions", "", nil), 200)
	if len(rec.errors) != 0 {
		t.Fatalf("conforming /versions reported: %q", rec.errors)
	}
	// Break one handler of the running server: versions must be strings.
	s.App.Echo.GET("/_matrix/client/versions", func(c echo.Context) error {
		return c.JSONBlob(200, []byte(`{"versions":[1]}`))
	})
	testenv.WantStatus(t, s.Do(t, "GET", "/_matrix/client/versions", "", nil), 200)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "versions") {
		t.Fatalf("broken /versions: want one reported violation, got %q", rec.errors)
	}
}
