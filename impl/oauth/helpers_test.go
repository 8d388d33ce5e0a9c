package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789"

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// start starts a server with OAuth on and an introspection client.
func start(t *testing.T, b testenv.Backend, mutate func(c *config.Config)) *testenv.Server {
	t.Helper()
	return testenv.Start(t, b, func(c *config.Config) {
		c.OAuth.IntrospectionClients = []config.OAuthClientSecret{{ClientID: "synapse", ClientSecret: "a-long-enough-secret"}}
		if mutate != nil {
			mutate(c)
		}
	})
}

// postForm posts an x-www-form-urlencoded body, with HTTP basic
// credentials when user is not "".
func postForm(t *testing.T, s *testenv.Server, path string, v url.Values, user, pass string) testenv.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return testenv.DoRequest(t, req)
}

func wantOAuthError(t *testing.T, r testenv.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Str("error") != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Raw)
	}
}

// registerNative registers a native client with a loopback redirect URI
// and the grants given.
func registerNative(t *testing.T, s *testenv.Server, grants ...string) string {
	t.Helper()
	if len(grants) == 0 {
		grants = []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken, oauth.GrantDeviceCode}
	}
	r := s.Do(t, http.MethodPost, oauth.PathRegister, "", map[string]any{
		"client_name": "Test Client", "client_uri": "https://client.example.org/",
		"application_type": "native", "redirect_uris": []string{"http://127.0.0.1/callback", "org.example.client:/cb"},
		"token_endpoint_auth_method": "none", "grant_types": grants, "response_types": []string{"code"},
	})
	testenv.WantStatus(t, r, http.StatusCreated)
	return r.Str("client_id")
}

// grant runs an authorisation request for userID as if they had
// consented in the browser, and returns the redirect's parameters.
func grant(t *testing.T, s *testenv.Server, clientID, userID, scope, redirect, mode string) url.Values {
	t.Helper()
	req := oauth.AuthRequest{ClientID: clientID, RedirectURI: redirect, ResponseType: "code", ResponseMode: mode,
		Scope: scope, State: "st4te", CodeChallenge: challenge(verifier), CodeChallengeMethod: "S256", Nonce: "n0nce"}
	a, err := s.App.Services.OAuth.CheckAuthorization(context.Background(), req)
	if err != nil {
		t.Fatalf("authorization request: %v", err)
	}
	to, err := s.App.Services.OAuth.Grant(context.Background(), a, userID)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	if mode == "fragment" {
		v, err := url.ParseQuery(u.Fragment)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return u.Query()
}

// exchange trades a code for tokens.
func exchange(t *testing.T, s *testenv.Server, clientID, code, redirect, v string) testenv.Response {
	t.Helper()
	return postForm(t, s, oauth.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {v}}, "", "")
}

// signIn makes a full OAuth session for a new user and returns the token
// response.
func signIn(t *testing.T, s *testenv.Server, localpart, deviceID string) (clientID string, tok testenv.Response) {
	t.Helper()
	testenv.CreateUser(t, s, localpart, "password1")
	clientID = registerNative(t, s)
	redirect := "http://127.0.0.1:4711/callback"
	p := grant(t, s, clientID, "@"+localpart+":"+s.Config.ServerName,
		oauth.ScopeAPI+" "+oauth.ScopeDevice+deviceID, redirect, "query")
	tok = exchange(t, s, clientID, p.Get("code"), redirect, verifier)
	testenv.WantStatus(t, tok, http.StatusOK)
	return clientID, tok
}
