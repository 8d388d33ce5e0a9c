package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/csapi"
	"github.com/myelin-hs/myelin/impl/specversions"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestVersionsListsExactlyTheVersionsTheCoverageTableAllows(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		r := s.Do(t, "GET", "/_matrix/client/versions", "", nil)
		testenv.WantStatus(t, r, 200)
		v, ok := r.Body["versions"].([]any)
		if !ok {
			t.Fatalf("versions is not a list: %s", r.Raw)
		}
		var got []string
		for _, x := range v {
			got = append(got, x.(string))
		}
		want := specversions.Claimable(csapi.CoverageRows())
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("/versions lists %v, the coverage table allows %v", got, want)
		}
		for _, x := range got {
			if strings.HasPrefix(x, "v") {
				if blocking := specversions.Blocking(csapi.CoverageRows(), strings.TrimPrefix(x, "v")); len(blocking) > 0 {
					t.Errorf("%s is listed while %s (%s) is pending", x, blocking[0].Op.ID, blocking[0].What)
				}
			}
		}
	})
}

func TestBadInputGetsMatrixErrors(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.MaxBodyBytes = 4096 })
		cases := []struct {
			name, method, path, token string
			body                      any
			status                    int
			errcode                   string
		}{
			{"invalid JSON", "POST", "/_matrix/client/v3/login", "", `{"type":`, 400, "M_NOT_JSON"},
			{"invalid UTF-8", "POST", "/_matrix/client/v3/login", "", []byte("{\"type\":\"m.login.password\",\"user\":\"\xff\xfe\"}"), 400, "M_NOT_JSON"},
			{"schema violation", "POST", "/_matrix/client/v3/login", "", `{"type":"m.login.password","user":5}`, 400, "M_BAD_JSON"},
			{"missing required field", "POST", "/_matrix/client/v3/login", "", `{"user":"a"}`, 400, "M_BAD_JSON"},
			{"missing required param", "GET", "/_matrix/client/v3/register/available", "", nil, 400, "M_MISSING_PARAM"},
			{"unknown path", "GET", "/_matrix/client/v3/no/such/thing", "", nil, 404, "M_UNRECOGNIZED"},
			{"unknown path outside the API", "GET", "/nothing", "", nil, 404, "M_UNRECOGNIZED"},
			{"wrong method", "DELETE", "/_matrix/client/v3/login", "", nil, 405, "M_UNRECOGNIZED"},
			{"body too large", "POST", "/_matrix/client/v3/login", "", `{"type":"m.login.password","password":"` + strings.Repeat("a", 5000) + `"}`, 413, "M_TOO_LARGE"},
			{"missing token", "GET", "/_matrix/client/v3/account/whoami", "", nil, 401, "M_MISSING_TOKEN"},
			{"unknown token", "GET", "/_matrix/client/v3/account/whoami", "nope", nil, 401, "M_UNKNOWN_TOKEN"},
			{"unknown token on r0", "GET", "/_matrix/client/r0/account/whoami", "nope", nil, 401, "M_UNKNOWN_TOKEN"},
			{"unknown token in query", "GET", "/_matrix/client/r0/account/whoami?access_token=nope", "", nil, 401, "M_UNKNOWN_TOKEN"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				testenv.WantError(t, s.Do(t, c.method, c.path, c.token, c.body), c.status, c.errcode)
			})
		}
	})
}

func TestCORSPreflightIsAnswered(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	req, _ := http.NewRequest("OPTIONS", s.URL+"/_matrix/client/v3/login", nil)
	req.Header.Set("Origin", "https://app.element.io")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestJSONBodyWithAFormContentTypeIsReadAsJSON(t *testing.T) {
	// `curl -d '{…}'` sends application/x-www-form-urlencoded; Synapse reads
	// the body as JSON whatever the type, and so do we on the spec's routes.
	s := testenv.Start(t, testenv.SQLite, nil)
	req, _ := http.NewRequest("POST", s.URL+"/_matrix/client/v3/register", strings.NewReader(`{"username":"curly","password":"a long enough password","auth":{"type":"m.login.dummy"}}`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register with a form content type: %d", resp.StatusCode)
	}
}

func TestASchemaViolationInsideAOneOfNamesItsField(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	tok, _ := testenv.CreateUser(t, s, "alice", "alice-password")
	r := s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, map[string]any{
		"one_time_keys": map[string]any{"signed_curve25519:AAAAAQ": map[string]any{"key": "unsigned"}},
	})
	testenv.WantError(t, r, 400, "M_BAD_JSON")
	if msg, _ := r.Body["error"].(string); !strings.Contains(msg, "one_time_keys") {
		t.Fatalf("the error does not name the field: %q", msg)
	}
}
