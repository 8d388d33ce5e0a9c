package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// fuzzTargets are the endpoints whose bodies the fuzzer writes: every one
// that takes a JSON body and cannot end the fuzzing account (no logout,
// password change or deactivation).
var fuzzTargets = []struct {
	method, path string
	auth         bool
}{
	{"POST", "/_matrix/client/v3/login", false},
	{"POST", "/_matrix/client/v3/register", false},
	{"POST", "/_matrix/client/v3/keys/upload", true},
	{"POST", "/_matrix/client/v3/keys/query", true},
	{"POST", "/_matrix/client/v3/keys/claim", true},
	{"POST", "/_matrix/client/v3/delete_devices", true},
	{"PUT", "/_matrix/client/v3/devices/FUZZDEVICE", true},
	{"POST", "/_matrix/client/r0/login", false},
}

// FuzzClientBodiesGetMatrixErrorsNever500 sends arbitrary bodies to the
// client API through the whole stack (validation, handlers, database):
// whatever arrives, the answer is a success or a Matrix error, never a
// 500 or a body that is not one.
func FuzzClientBodiesGetMatrixErrorsNever500(f *testing.F) {
	seeds := []string{
		`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"fuzz"},"password":"x"}`,
		`{"type":"m.login.password","user":"@fuzz:localhost","password":"x","device_id":"FUZZDEVICE"}`,
		`{"type":"m.login.token","token":"abc"}`,
		`{"username":"u","password":"long enough password","auth":{"type":"m.login.dummy"}}`,
		`{"auth":{"type":"m.login.password","session":"s"},"devices":["A","B"]}`,
		`{"device_keys":{"user_id":"@fuzz:localhost","device_id":"FUZZDEVICE","algorithms":[],"keys":{},"signatures":{}}}`,
		`{"one_time_keys":{"signed_curve25519:AAAA":{"key":"k","signatures":{}}}}`,
		`{"device_keys":{"@fuzz:localhost":[]},"timeout":10}`,
		`{"one_time_keys":{"@fuzz:localhost":{"FUZZDEVICE":"signed_curve25519"}}}`,
		`{"display_name":"phone"}`,
		`null`, `[]`, `{}`, `{"type":5}`, "\xff\xfe", `{"a":1e999}`, `{"devices":"x"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	ctx := context.Background()
	cfg := testenv.TestConfig(f, testenv.SQLite)
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	// Fuzzed user IDs name other servers, whose keys are then asked for:
	// that fails at once here instead of waiting on DNS (the fuzzer takes
	// a 10 s answer for a hung worker).
	noNet := errors.New("no network in this fuzz test")
	a.Federation.Resolver.HTTP = nil
	a.Federation.Resolver.LookupSRV = func(context.Context, string, string, string) (string, []*net.SRV, error) { return "", nil, noNet }
	a.Federation.Client.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return nil, noNet }}}
	serve := func(method, path, token string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		a.Echo.ServeHTTP(rec, req)
		return rec
	}
	reg := serve("POST", "/_matrix/client/v3/register", "", []byte(`{"username":"fuzz","password":"fuzzing password 1","device_id":"FUZZDEVICE","auth":{"type":"m.login.dummy"}}`))
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if reg.Code != 200 || json.Unmarshal(reg.Body.Bytes(), &login) != nil {
		f.Fatalf("register: %d %s", reg.Code, reg.Body)
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		target := fuzzTargets[int(which)%len(fuzzTargets)]
		token := ""
		if target.auth {
			token = login.AccessToken
		}
		rec := serve(target.method, target.path, token, body)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", target.method, target.path, body, rec.Code, rec.Body)
		}
		if rec.Code < 400 {
			return
		}
		var e struct {
			Errcode string            `json:"errcode"`
			Error   string            `json:"error"`
			Flows   []json.RawMessage `json:"flows"`
		}
		err := json.Unmarshal(rec.Body.Bytes(), &e)
		if err == nil && rec.Code == http.StatusUnauthorized && len(e.Flows) > 0 {
			return // user-interactive auth asking for (more) stages
		}
		if err != nil || !strings.HasPrefix(e.Errcode, "M_") || e.Error == "" {
			t.Fatalf("%s %s %q: %d answered %s, not a Matrix error", target.method, target.path, body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusUnauthorized && target.auth && e.Errcode == "M_UNKNOWN_TOKEN" {
			t.Fatalf("%s %s %q: the fuzzing account's token stopped working", target.method, target.path, body)
		}
	})
}
