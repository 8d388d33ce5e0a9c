package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// Browser clients (Element Web, matrix-js-sdk in a page) call the
// protocol endpoints from their own origin, as they do MAS's: every one
// answers CORS preflights and puts Access-Control-Allow-Origin on its
// answers, error answers included, so that the page can read them.
func TestProtocolEndpointsAnswerCrossOriginRequests(t *testing.T) {
	const origin = "https://app.element.example"
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		endpoints := []struct {
			method, path, headers string
		}{
			{http.MethodGet, "/_matrix/client/v1/auth_metadata", ""},
			{http.MethodGet, oauth.PathUnstableMetadata, ""},
			{http.MethodGet, oauth.PathUnstableIssuer, ""},
			{http.MethodGet, oauth.PathDiscovery, ""},
			{http.MethodGet, oauth.PathKeys, ""},
			{http.MethodPost, oauth.PathRegister, "content-type"},
			{http.MethodPost, oauth.PathToken, "content-type"},
			{http.MethodPost, oauth.PathRevoke, "content-type"},
			{http.MethodPost, oauth.PathDevice, "content-type"},
			{http.MethodPost, oauth.PathIntrospect, "authorization, content-type"},
			{http.MethodGet, oauth.PathUserinfo, "authorization"},
		}
		for _, e := range endpoints {
			t.Run("preflight "+e.path, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodOptions, s.URL+e.path, nil)
				req.Header.Set("Origin", origin)
				req.Header.Set("Access-Control-Request-Method", e.method)
				if e.headers != "" {
					req.Header.Set("Access-Control-Request-Headers", e.headers)
				}
				r := testenv.DoRequest(t, req)
				h := r.Header
				if r.Status/100 != 2 || h.Get("Access-Control-Allow-Origin") != "*" ||
					!strings.Contains(h.Get("Access-Control-Allow-Methods"), e.method) {
					t.Fatalf("preflight: %d %v", r.Status, h)
				}
				for _, want := range strings.Split(e.headers, ", ") {
					if want != "" && !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), want) {
						t.Errorf("%s not allowed: %v", want, h)
					}
				}
			})
		}
		answer := func(t *testing.T, req *http.Request) testenv.Response {
			t.Helper()
			req.Header.Set("Origin", origin)
			r := testenv.DoRequest(t, req)
			if r.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s %s answered %d without Access-Control-Allow-Origin: %v", req.Method, req.URL.Path, r.Status, r.Header)
			}
			return r
		}
		form := func(path string, v url.Values) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(v.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req
		}
		t.Run("answers", func(t *testing.T) {
			for _, p := range []string{"/_matrix/client/v1/auth_metadata", oauth.PathDiscovery, oauth.PathKeys} {
				req, _ := http.NewRequest(http.MethodGet, s.URL+p, nil)
				testenv.WantStatus(t, answer(t, req), http.StatusOK)
			}
			req, _ := http.NewRequest(http.MethodPost, s.URL+oauth.PathRegister, strings.NewReader(
				`{"client_name":"Web","client_uri":"https://app.element.example/","application_type":"web",`+
					`"redirect_uris":["https://app.element.example/"],"token_endpoint_auth_method":"none",`+
					`"grant_types":["authorization_code","refresh_token"],"response_types":["code"]}`))
			req.Header.Set("Content-Type", "application/json")
			reg := answer(t, req)
			testenv.WantStatus(t, reg, http.StatusCreated)
			// Errors too: the page must read error and error_description.
			wantOAuthError(t, answer(t, form(oauth.PathToken, url.Values{"grant_type": {"refresh_token"},
				"refresh_token": {"nope"}, "client_id": {reg.Str("client_id")}})), http.StatusBadRequest, "invalid_grant")
			testenv.WantStatus(t, answer(t, form(oauth.PathRevoke, url.Values{"token": {"nope"},
				"client_id": {reg.Str("client_id")}})), http.StatusOK)
			req, _ = http.NewRequest(http.MethodGet, s.URL+oauth.PathUserinfo, nil)
			req.Header.Set("Authorization", "Bearer nope")
			if r := answer(t, req); r.Status != http.StatusUnauthorized {
				t.Errorf("userinfo with a bad token: %d %s", r.Status, r.Raw)
			}
		})
	})
}
