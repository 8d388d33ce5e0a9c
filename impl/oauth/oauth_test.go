package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestAuthMetadataAnswersEveryRequiredField(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		r := s.Do(t, http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil)
		testenv.WantStatus(t, r, http.StatusOK)
		for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint",
			"registration_endpoint", "device_authorization_endpoint", "account_management_uri"} {
			if !strings.HasPrefix(r.Str(k), s.URL+"/") {
				t.Errorf("%s = %q, want a URL under %s", k, r.Str(k), s.URL)
			}
		}
		if r.Str("issuer") != s.URL+"/" {
			t.Errorf("issuer %q, want the base URL with a trailing slash", r.Str("issuer"))
		}
		has := func(k, v string) {
			arr, _ := r.Body[k].([]any)
			for _, e := range arr {
				if e == v {
					return
				}
			}
			t.Errorf("%s lacks %q: %v", k, v, r.Body[k])
		}
		has("response_types_supported", "code")
		has("grant_types_supported", "authorization_code")
		has("grant_types_supported", "refresh_token")
		has("grant_types_supported", oauth.GrantDeviceCode)
		has("response_modes_supported", "query")
		has("response_modes_supported", "fragment")
		has("code_challenge_methods_supported", "S256")
		has("prompt_values_supported", "create")
		has("account_management_actions_supported", "org.matrix.device_delete")
		if arr := r.Body["code_challenge_methods_supported"].([]any); len(arr) != 1 {
			t.Errorf("only S256 may be offered: %v", arr)
		}
		// The OpenID discovery document that matrix-js-sdk reads, and its keys.
		d := s.Do(t, http.MethodGet, oauth.PathDiscovery, "", nil)
		testenv.WantStatus(t, d, http.StatusOK)
		if d.Str("issuer") != r.Str("issuer") || d.Str("jwks_uri") == "" {
			t.Fatalf("discovery: %s", d.Raw)
		}
		k := s.Do(t, http.MethodGet, oauth.PathKeys, "", nil)
		testenv.WantStatus(t, k, http.StatusOK)
		if keys, _ := k.Body["keys"].([]any); len(keys) != 1 || keys[0].(map[string]any)["kty"] != "RSA" || keys[0].(map[string]any)["d"] != nil {
			t.Fatalf("jwks: %s", k.Raw)
		}
	})
}

func TestAuthSettingChoosesTheAPIs(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		legacy := start(t, b, func(c *config.Config) { c.Auth = config.AuthLegacy })
		r := legacy.Do(t, http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil)
		testenv.WantError(t, r, http.StatusNotFound, "M_UNRECOGNIZED")
		r = legacy.Do(t, http.MethodPost, oauth.PathRegister, "", map[string]any{"client_uri": "https://a.example/"})
		testenv.WantError(t, r, http.StatusNotFound, "M_UNRECOGNIZED")
		testenv.WantError(t, legacy.Do(t, http.MethodGet, oauth.PathDiscovery, "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
		testenv.WantError(t, legacy.Do(t, http.MethodGet, "/_myelin/oauth2/authorize?client_id=x", "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
		testenv.WantStatus(t, legacy.Do(t, http.MethodGet, "/_matrix/client/v3/login", "", nil), http.StatusOK)

		only := start(t, b, func(c *config.Config) { c.Auth = config.AuthOAuth; c.GetLoginToken = true })
		testenv.WantStatus(t, only.Do(t, http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil), http.StatusOK)
		testenv.WantError(t, only.Do(t, http.MethodGet, "/_matrix/client/v3/login", "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
		testenv.CreateUser(t, only, "alice", "password1")
		r = only.Do(t, http.MethodPost, "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "password1"})
		testenv.WantError(t, r, http.StatusNotFound, "M_UNRECOGNIZED")
		r = only.Do(t, http.MethodPost, "/_matrix/client/v3/register", "", map[string]any{"username": "bob", "password": "password1"})
		testenv.WantError(t, r, http.StatusForbidden, "M_FORBIDDEN")
		// An OAuth session works with the rest of the API.
		_, tok := signIn(t, only, "carol", "CAROLDEVICE")
		testenv.WantStatus(t, only.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", tok.Str("access_token"), nil), http.StatusOK)
		r = only.Do(t, http.MethodGet, "/_matrix/client/v3/capabilities", tok.Str("access_token"), nil)
		if caps := r.Body["capabilities"].(map[string]any); caps["m.get_login_token"].(map[string]any)["enabled"] != false {
			t.Errorf("m.get_login_token needs the legacy login: %s", r.Raw)
		}
	})
}

func TestClientRegistrationFollowsTheSpecsMetadataRules(t *testing.T) {
	s := start(t, testenv.SQLite, nil)
	base := func(kv ...any) map[string]any {
		m := map[string]any{"client_uri": "https://example.com/", "redirect_uris": []string{"https://example.com/cb"},
			"token_endpoint_auth_method": "none"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	native := func(redirects ...string) map[string]any {
		return base("application_type", "native", "redirect_uris", redirects)
	}
	cases := []struct {
		name string
		body map[string]any
		want string // "" for success
	}{
		{"web with subdomain and port", base("redirect_uris", []string{"https://app.example.com/cb", "https://example.com:5173/?q=v"}), ""},
		{"client_uri missing", base("client_uri", nil), "invalid_client_metadata"},
		{"client_uri http", base("client_uri", "http://example.com/"), "invalid_client_metadata"},
		{"client_uri http on loopback", base("client_uri", "http://localhost:8080/", "redirect_uris", nil, "grant_types", []string{oauth.GrantDeviceCode}), ""},
		{"web redirect with fragment", base("redirect_uris", []string{"https://example.com/cb#frag"}), "invalid_redirect_uri"},
		{"web redirect http", base("redirect_uris", []string{"http://example.com/cb"}), "invalid_redirect_uri"},
		{"web redirect on localhost", base("redirect_uris", []string{"http://localhost/"}), "invalid_redirect_uri"},
		{"web redirect on another host", base("redirect_uris", []string{"https://evil.com/cb"}), "invalid_redirect_uri"},
		{"web redirect on a look-alike host", base("redirect_uris", []string{"https://notexample.com/cb"}), "invalid_redirect_uri"},
		{"web redirect with user info", base("redirect_uris", []string{"https://u:p@example.com/cb"}), "invalid_redirect_uri"},
		{"no redirect for the code grant", base("redirect_uris", nil), "invalid_redirect_uri"},
		{"native private-use schemes", native("com.example.app:/callback", "com.example:/", "com.example:callback"), ""},
		{"native loopback", native("http://localhost/callback", "http://127.0.0.1/callback", "http://[::1]/callback"), ""},
		{"native claimed https", native("https://example.com/app"), ""},
		{"native scheme not reverse-DNS", native("example:/callback"), "invalid_redirect_uri"},
		{"native scheme with authority", native("com.example.app://callback"), "invalid_redirect_uri"},
		{"native https on localhost", native("https://localhost/callback"), "invalid_redirect_uri"},
		{"native loopback with port", native("http://localhost:1234/callback"), "invalid_redirect_uri"},
		{"application_type unknown", base("application_type", "desktop"), "invalid_client_metadata"},
		{"secret auth method", base("token_endpoint_auth_method", "client_secret_basic"), "invalid_client_metadata"},
		{"implicit response type", base("response_types", []string{"token"}), "invalid_client_metadata"},
		{"only unsupported grants", base("grant_types", []string{"password"}), "invalid_client_metadata"},
		{"logo on another host", base("logo_uri", "https://cdn.other.net/logo.png"), "invalid_client_metadata"},
		{"policy on a subdomain", base("policy_uri", "https://legal.example.com/p"), ""},
		{"localized tos on another host", base("tos_uri#fr", "https://other.net/fr"), "invalid_client_metadata"},
		{"client_name not a string", base("client_name", 5), "invalid_client_metadata"},
		{"bad language tag", base("client_name#f r", "x"), "invalid_client_metadata"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Do(t, http.MethodPost, oauth.PathRegister, "", c.body)
			if c.want == "" {
				testenv.WantStatus(t, r, http.StatusCreated)
				if r.Str("client_id") == "" {
					t.Fatalf("no client_id: %s", r.Raw)
				}
				return
			}
			wantOAuthError(t, r, http.StatusBadRequest, c.want)
		})
	}
	t.Run("answer lists what was registered", func(t *testing.T) {
		r := s.Do(t, http.MethodPost, oauth.PathRegister, "", base("client_name", "My App", "client_name#fr", "Mon application",
			"grant_types", []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"},
			"unknown_field", "dropped"))
		testenv.WantStatus(t, r, http.StatusCreated)
		if r.Str("client_name#fr") != "Mon application" || r.Body["unknown_field"] != nil || r.Str("token_endpoint_auth_method") != "none" {
			t.Fatalf("%s", r.Raw)
		}
		if g := r.Body["grant_types"].([]any); len(g) != 2 {
			t.Fatalf("unsupported grant types must be left out: %v", g)
		}
		again := s.Do(t, http.MethodPost, oauth.PathRegister, "", base("client_name", "My App", "client_name#fr", "Mon application",
			"grant_types", []string{"authorization_code", "refresh_token"}))
		if again.Str("client_id") != r.Str("client_id") {
			t.Fatalf("identical metadata should share a client: %s vs %s", again.Str("client_id"), r.Str("client_id"))
		}
		c, err := s.App.Services.OAuth.Client(context.Background(), r.Str("client_id"))
		if err != nil || c.Name("fr-CH, en;q=0.5") != "Mon application" || c.Name("de") != "My App" {
			t.Fatalf("localized name: %v %+v", err, c)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		wantOAuthError(t, s.Do(t, http.MethodPost, oauth.PathRegister, "", "[1,2]"), http.StatusBadRequest, "invalid_client_metadata")
	})
}

func TestAuthorizationRequestRules(t *testing.T) {
	s := start(t, testenv.SQLite, nil)
	clientID := registerNative(t, s)
	ctx := context.Background()
	ok := oauth.AuthRequest{ClientID: clientID, RedirectURI: "http://127.0.0.1:5555/callback", ResponseType: "code",
		Scope: oauth.ScopeAPI, State: "xyz", CodeChallenge: challenge(verifier), CodeChallengeMethod: "S256"}
	check := func(mut func(r *oauth.AuthRequest)) (*oauth.Authorization, error) {
		r := ok
		mut(&r)
		return s.App.Services.OAuth.CheckAuthorization(ctx, r)
	}
	a, err := check(func(*oauth.AuthRequest) {})
	if err != nil || a.Mode != "query" || a.Scope.DeviceID == "" {
		t.Fatalf("loopback redirect on any port, query by default, device generated: %+v %v", a, err)
	}
	page := func(name string, mut func(r *oauth.AuthRequest)) {
		var pe *oauth.PageError
		if _, err := check(mut); !errors.As(err, &pe) {
			t.Errorf("%s: want an error page (no redirect), got %v", name, err)
		}
	}
	page("unknown client", func(r *oauth.AuthRequest) { r.ClientID = "nope" })
	page("unregistered redirect", func(r *oauth.AuthRequest) { r.RedirectURI = "http://127.0.0.1:5555/other" })
	page("redirect with user info", func(r *oauth.AuthRequest) { r.RedirectURI = "http://u@127.0.0.1:5555/callback" })
	page("private-use scheme with a suffix", func(r *oauth.AuthRequest) { r.RedirectURI = "org.example.client:/cb/x" })
	redirect := func(name, code string, mut func(r *oauth.AuthRequest)) {
		var re *oauth.RedirectError
		_, err := check(mut)
		if !errors.As(err, &re) || re.Code != code {
			t.Errorf("%s: want a redirect with %s, got %v", name, code, err)
			return
		}
		u, _ := url.Parse(re.URL)
		if q := u.Query(); q.Get("error") != code || q.Get("state") != "xyz" {
			t.Errorf("%s: redirect %s lacks the error or the state", name, re.URL)
		}
	}
	redirect("plain PKCE", "invalid_request", func(r *oauth.AuthRequest) { r.CodeChallengeMethod = "plain" })
	redirect("PKCE method missing (defaults to plain)", "invalid_request", func(r *oauth.AuthRequest) { r.CodeChallengeMethod = "" })
	redirect("no PKCE", "invalid_request", func(r *oauth.AuthRequest) { r.CodeChallenge, r.CodeChallengeMethod = "", "" })
	redirect("implicit", "unsupported_response_type", func(r *oauth.AuthRequest) { r.ResponseType = "token" })
	redirect("form_post", "invalid_request", func(r *oauth.AuthRequest) { r.ResponseMode = "form_post" })
	redirect("no API scope", "invalid_scope", func(r *oauth.AuthRequest) { r.Scope = "openid" })
	redirect("unknown scope", "invalid_scope", func(r *oauth.AuthRequest) { r.Scope = oauth.ScopeAPI + " urn:synapse:admin:*" })
	redirect("two devices", "invalid_scope", func(r *oauth.AuthRequest) {
		r.Scope = oauth.ScopeAPI + " " + oauth.ScopeDevice + "AAAAAAAA " + oauth.ScopeDevice + "BBBBBBBB"
	})
	redirect("short device ID", "invalid_scope", func(r *oauth.AuthRequest) { r.Scope = oauth.ScopeAPI + " " + oauth.ScopeDevice + "AB" })
	redirect("device ID outside unreserved", "invalid_scope", func(r *oauth.AuthRequest) { r.Scope = oauth.ScopeAPI + " " + oauth.ScopeDevice + "ABCDE!FG" })
	redirect("prompt=none", "interaction_required", func(r *oauth.AuthRequest) { r.Prompt = "none" })

	a, err = check(func(r *oauth.AuthRequest) {
		r.ResponseMode, r.Prompt = "fragment", "create"
		r.Scope = "openid " + oauth.ScopeAPIUnstable + " " + oauth.ScopeDeviceUnstable + "UnstableID1"
	})
	if err != nil || !a.Create || a.Scope.DeviceID != "UnstableID1" || !a.Scope.OpenID {
		t.Fatalf("fragment, prompt=create, unstable scope names: %+v %v", a, err)
	}
	var re *oauth.RedirectError
	_, err = check(func(r *oauth.AuthRequest) { r.ResponseMode, r.ResponseType = "fragment", "token" })
	if !errors.As(err, &re) || !strings.Contains(re.URL, "#error=") {
		t.Fatalf("a fragment-mode error is in the fragment: %v", err)
	}
}

func TestCodeGrantIssuesADeviceBoundSession(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "password1")
		clientID := registerNative(t, s)
		redirect := "http://127.0.0.1:4711/callback"
		p := grant(t, s, clientID, "@alice:localhost", "openid "+oauth.ScopeAPI+" "+oauth.ScopeDevice+"ALICEPHONE", redirect, "fragment")
		if p.Get("state") != "st4te" || !strings.HasPrefix(p.Get("code"), "myl_code_") {
			t.Fatalf("callback parameters: %v", p)
		}
		code := p.Get("code")
		wantOAuthError(t, exchange(t, s, clientID, code, redirect, strings.Repeat("x", 43)), http.StatusBadRequest, "invalid_grant")
		wantOAuthError(t, exchange(t, s, clientID, code, "http://127.0.0.1:4712/callback", verifier), http.StatusBadRequest, "invalid_grant")
		other := registerNative(t, s, oauth.GrantAuthorizationCode)
		wantOAuthError(t, exchange(t, s, other, code, redirect, verifier), http.StatusBadRequest, "invalid_grant")
		wantOAuthError(t, exchange(t, s, "unknown", code, redirect, verifier), http.StatusUnauthorized, "invalid_client")

		tok := exchange(t, s, clientID, code, redirect, verifier)
		testenv.WantStatus(t, tok, http.StatusOK)
		if tok.Str("token_type") != "Bearer" || tok.Str("refresh_token") == "" || tok.Body["expires_in"].(float64) != 300 ||
			tok.Str("scope") != "openid "+oauth.ScopeAPI+" "+oauth.ScopeDevice+"ALICEPHONE" || tok.Str("id_token") == "" {
			t.Fatalf("token response: %s", tok.Raw)
		}
		if tok.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("token responses must not be cached")
		}
		at := tok.Str("access_token")
		who := s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", at, nil)
		if who.Str("user_id") != "@alice:localhost" || who.Str("device_id") != "ALICEPHONE" {
			t.Fatalf("whoami: %s", who.Raw)
		}
		dev := s.Do(t, http.MethodGet, "/_matrix/client/v3/devices/ALICEPHONE", at, nil)
		if dev.Str("display_name") != "Test Client" {
			t.Errorf("the device is named after the client: %s", dev.Raw)
		}
		// Announced in the user's device-list stream, like a login.
		n, err := s.App.Store.R.NewSelect().Model((*storage.DeviceListChange)(nil)).
			Where("user_id = ? AND device_id = ?", "@alice:localhost", "ALICEPHONE").Count(context.Background())
		if err != nil || n != 1 {
			t.Fatalf("device-list change rows: %d %v", n, err)
		}
		if ok, _ := s.App.Services.OAuth.IsOAuthSession(context.Background(), "@alice:localhost", "ALICEPHONE"); !ok {
			t.Error("the device should be marked an OAuth session")
		}

		// A second use of the code is refused and revokes what it issued.
		wantOAuthError(t, exchange(t, s, clientID, code, redirect, verifier), http.StatusBadRequest, "invalid_grant")
		testenv.WantError(t, s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", at, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		r := postForm(t, s, oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.Str("refresh_token")}, "client_id": {clientID}}, "", "")
		wantOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
	})
}

func TestCodesExpire(t *testing.T) {
	s := start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "password1")
	clientID := registerNative(t, s)
	redirect := "http://127.0.0.1:4711/callback"
	now := time.Now()
	s.App.Services.OAuth.Now = func() time.Time { return now }
	p := grant(t, s, clientID, "@alice:localhost", oauth.ScopeAPI, redirect, "query")
	now = now.Add(s.Config.OAuth.CodeTTL)
	wantOAuthError(t, exchange(t, s, clientID, p.Get("code"), redirect, verifier), http.StatusBadRequest, "invalid_grant")
}

func TestRefreshRotatesAsSessionsDoAndEchoesTheScope(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		clientID, tok := signIn(t, s, "alice", "ALICEDEV01")
		refresh := func(client, rt string) testenv.Response {
			return postForm(t, s, oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {client}}, "", "")
		}
		other := registerNative(t, s, oauth.GrantAuthorizationCode, oauth.GrantRefreshToken)
		wantOAuthError(t, refresh(other, tok.Str("refresh_token")), http.StatusBadRequest, "invalid_grant")
		r1 := refresh(clientID, tok.Str("refresh_token"))
		testenv.WantStatus(t, r1, http.StatusOK)
		if r1.Str("scope") != tok.Str("scope") || r1.Str("refresh_token") == tok.Str("refresh_token") || r1.Body["expires_in"].(float64) != 300 {
			t.Fatalf("refresh: %s", r1.Raw)
		}
		// The old refresh token still works until the new pair is used
		// (a client that lost the answer retries).
		r2 := refresh(clientID, tok.Str("refresh_token"))
		testenv.WantStatus(t, r2, http.StatusOK)
		testenv.WantStatus(t, s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", r2.Str("access_token"), nil), http.StatusOK)
		// Now it is consumed: presenting it again is theft, the session ends.
		wantOAuthError(t, refresh(clientID, tok.Str("refresh_token")), http.StatusBadRequest, "invalid_grant")
		testenv.WantError(t, s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", r2.Str("access_token"), nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		wantOAuthError(t, postForm(t, s, oauth.PathToken, url.Values{"grant_type": {"password"}, "client_id": {clientID}}, "", ""),
			http.StatusBadRequest, "unsupported_grant_type")
		wantOAuthError(t, s.Do(t, http.MethodPost, oauth.PathToken, "", map[string]any{"grant_type": "refresh_token"}), http.StatusBadRequest, "invalid_request")
	})
}

func TestRevocationEndsTheDeviceLikeLogout(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		for _, which := range []string{"access_token", "refresh_token"} {
			t.Run(which, func(t *testing.T) {
				user := strings.ReplaceAll(which, "_", "")
				_, tok := signIn(t, s, user, "DEVICE"+strings.ToUpper(user[:3]))
				at := tok.Str("access_token")
				// Revocation needs no client_id (secret scanners revoke too).
				r := postForm(t, s, oauth.PathRevoke, url.Values{"token": {tok.Str(which)}, "token_type_hint": {which}}, "", "")
				testenv.WantStatus(t, r, http.StatusOK)
				testenv.WantError(t, s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", at, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
				n, _ := s.App.Store.R.NewSelect().Model((*storage.Device)(nil)).Where("user_id = ?", "@"+user+":localhost").
					Where("device_id LIKE 'DEVICE%'").Count(context.Background())
				if n != 0 {
					t.Fatal("the device should be gone")
				}
				testenv.WantStatus(t, postForm(t, s, oauth.PathRevoke, url.Values{"token": {tok.Str(which)}}, "", ""), http.StatusOK)
			})
		}
		wantOAuthError(t, postForm(t, s, oauth.PathRevoke, url.Values{}, "", ""), http.StatusBadRequest, "invalid_request")
		wantOAuthError(t, postForm(t, s, oauth.PathRevoke, url.Values{"token": {"x"}, "token_type_hint": {"id_token"}}, "", ""), http.StatusBadRequest, "unsupported_token_type")
	})
}

func TestIntrospectionAnswersResourceServers(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		clientID, tok := signIn(t, s, "alice", "ALICEDEV01")
		at := tok.Str("access_token")
		intro := func(token, user, pass string) testenv.Response {
			return postForm(t, s, oauth.PathIntrospect, url.Values{"token": {token}}, user, pass)
		}
		wantOAuthError(t, intro(at, "", ""), http.StatusUnauthorized, "invalid_client")
		wantOAuthError(t, intro(at, "synapse", "wrong-secret-of-any-length"), http.StatusUnauthorized, "invalid_client")
		r := intro(at, "synapse", "a-long-enough-secret")
		testenv.WantStatus(t, r, http.StatusOK)
		if r.Body["active"] != true || r.Str("username") != "alice" || r.Str("sub") != "@alice:localhost" ||
			r.Str("device_id") != "ALICEDEV01" || r.Str("client_id") != clientID || r.Str("scope") != tok.Str("scope") {
			t.Fatalf("introspection: %s", r.Raw)
		}
		if in, _ := r.Body["expires_in"].(float64); in <= 0 || in > 300 {
			t.Fatalf("expires_in: %s", r.Raw)
		}
		// client_secret_post works too; a legacy token is described with
		// the scope it amounts to.
		legacy, dev := testenv.CreateUser(t, s, "bob", "password1")
		r = postForm(t, s, oauth.PathIntrospect, url.Values{"token": {legacy}, "client_id": {"synapse"}, "client_secret": {"a-long-enough-secret"}}, "", "")
		if r.Body["active"] != true || r.Str("scope") != oauth.ScopeAPI+" "+oauth.ScopeDevice+dev || r.Body["expires_in"] != nil {
			t.Fatalf("legacy token: %s", r.Raw)
		}
		for _, inactive := range []string{tok.Str("refresh_token"), "myl_nonsense"} {
			if r := intro(inactive, "synapse", "a-long-enough-secret"); r.Body["active"] != false || len(r.Body) != 1 {
				t.Fatalf("inactive: %s", r.Raw)
			}
		}
		testenv.WantStatus(t, postForm(t, s, oauth.PathRevoke, url.Values{"token": {at}}, "", ""), http.StatusOK)
		if r := intro(at, "synapse", "a-long-enough-secret"); r.Body["active"] != false {
			t.Fatalf("revoked: %s", r.Raw)
		}
	})
}

func TestDeviceGrantPollsUntilTheUserDecides(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, func(c *config.Config) { c.OAuth.DeviceInterval = time.Second })
		testenv.CreateUser(t, s, "alice", "password1")
		clientID := registerNative(t, s)
		now := time.Now()
		s.App.Services.OAuth.Now = func() time.Time { return now }
		start := func(scope string) testenv.Response {
			r := postForm(t, s, oauth.PathDevice, url.Values{"client_id": {clientID}, "scope": {scope}}, "", "")
			testenv.WantStatus(t, r, http.StatusOK)
			return r
		}
		poll := func(dc string) testenv.Response {
			return postForm(t, s, oauth.PathToken, url.Values{"grant_type": {oauth.GrantDeviceCode}, "device_code": {dc}, "client_id": {clientID}}, "", "")
		}
		d := start(oauth.ScopeAPI + " " + oauth.ScopeDevice + "TVDEVICE01")
		if d.Str("verification_uri") != s.URL+oauth.PathLink || !strings.Contains(d.Str("verification_uri_complete"), "user_code=") ||
			d.Body["interval"].(float64) != 1 || d.Body["expires_in"].(float64) != 900 {
			t.Fatalf("device authorization: %s", d.Raw)
		}
		dc, uc := d.Str("device_code"), d.Str("user_code")
		wantOAuthError(t, poll(dc), http.StatusBadRequest, "authorization_pending")
		wantOAuthError(t, poll(dc), http.StatusBadRequest, "slow_down") // same instant: too fast
		now = now.Add(7 * time.Second)                                  // the interval grew to 6 s
		wantOAuthError(t, poll(dc), http.StatusBadRequest, "authorization_pending")

		svc := s.App.Services.OAuth
		pd, err := svc.LookupUserCode(context.Background(), strings.ToLower(strings.ReplaceAll(uc, "-", " ")))
		if err != nil || pd.Client.ClientID != clientID || pd.Scope.DeviceID != "TVDEVICE01" {
			t.Fatalf("lookup: %+v %v", pd, err)
		}
		if err := svc.DecideDevice(context.Background(), uc, "@alice:localhost", true); err != nil {
			t.Fatal(err)
		}
		if err := svc.DecideDevice(context.Background(), uc, "@alice:localhost", false); !errors.Is(err, oauth.ErrUnknownUserCode) {
			t.Fatalf("a decided code cannot be decided again: %v", err)
		}
		now = now.Add(7 * time.Second)
		tok := poll(dc)
		testenv.WantStatus(t, tok, http.StatusOK)
		if tok.Str("scope") != oauth.ScopeAPI+" "+oauth.ScopeDevice+"TVDEVICE01" || tok.Str("refresh_token") == "" {
			t.Fatalf("token: %s", tok.Raw)
		}
		who := s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", tok.Str("access_token"), nil)
		if who.Str("device_id") != "TVDEVICE01" {
			t.Fatalf("whoami: %s", who.Raw)
		}
		now = now.Add(7 * time.Second)
		wantOAuthError(t, poll(dc), http.StatusBadRequest, "invalid_grant")

		denied := start(oauth.ScopeAPI)
		if err := svc.DecideDevice(context.Background(), denied.Str("user_code"), "@alice:localhost", false); err != nil {
			t.Fatal(err)
		}
		wantOAuthError(t, poll(denied.Str("device_code")), http.StatusBadRequest, "access_denied")

		expiring := start(oauth.ScopeAPI)
		now = now.Add(s.Config.OAuth.DeviceCodeTTL)
		wantOAuthError(t, poll(expiring.Str("device_code")), http.StatusBadRequest, "expired_token")
		if _, err := svc.LookupUserCode(context.Background(), expiring.Str("user_code")); !errors.Is(err, oauth.ErrUnknownUserCode) {
			t.Fatalf("an expired user code is unknown: %v", err)
		}

		codeOnly := registerNative(t, s, oauth.GrantAuthorizationCode)
		r := postForm(t, s, oauth.PathDevice, url.Values{"client_id": {codeOnly}, "scope": {oauth.ScopeAPI}}, "", "")
		wantOAuthError(t, r, http.StatusBadRequest, "unauthorized_client")
		r = postForm(t, s, oauth.PathDevice, url.Values{"client_id": {clientID}, "scope": {"openid"}}, "", "")
		wantOAuthError(t, r, http.StatusBadRequest, "invalid_scope")
	})
}

func TestParseScope(t *testing.T) {
	s, err := oauth.ParseScope("openid " + oauth.ScopeAPI + " " + oauth.ScopeAPI)
	if err != nil || len(s.Tokens) != 3 || !strings.HasPrefix(s.Tokens[2], oauth.ScopeDevice) || len(s.DeviceID) != 10 {
		t.Fatalf("duplicates dropped, a device generated: %+v %v", s, err)
	}
	for _, bad := range []string{"", oauth.ScopeAPI + " a\"b", oauth.ScopeAPI + " " + oauth.ScopeDevice + "ABCDEFGH " + oauth.ScopeDeviceUnstable + "XYZXYZXY"} {
		if _, err := oauth.ParseScope(bad); err == nil {
			t.Errorf("%q should be refused", bad)
		}
	}
	if _, err := oauth.ParseScope(oauth.ScopeAPI + " " + oauth.ScopeDevice + "SAME1 " + oauth.ScopeDeviceUnstable + "SAME1"); err != nil {
		t.Errorf("the same device in both forms is one device: %v", err)
	}
}

func TestBadOAuthSettingsStopStartUp(t *testing.T) {
	for name, mut := range map[string]func(c *config.Config){
		"auth":            func(c *config.Config) { c.Auth = "sso" },
		"code_ttl":        func(c *config.Config) { c.OAuth.CodeTTL = time.Hour },
		"device_interval": func(c *config.Config) { c.OAuth.DeviceInterval = 1500 * time.Millisecond },
		"short secret": func(c *config.Config) {
			c.OAuth.IntrospectionClients = []config.OAuthClientSecret{{ClientID: "s", ClientSecret: "short"}}
		},
		"introspection twice": func(c *config.Config) {
			c.OAuth.IntrospectionClients = []config.OAuthClientSecret{{ClientID: "s", ClientSecret: "0123456789abcdef"}, {ClientID: "s", ClientSecret: "0123456789abcdef"}}
		},
	} {
		c := config.Defaults()
		mut(&c)
		if err := c.Verify(); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: want a one-line error, got %v", name, err)
		}
	}
}

func TestALegacyLoginToAnOAuthDeviceMakesItALegacySession(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		_, tok := signIn(t, s, "alice", "ALICEPHONE")
		ctx := context.Background()
		if ok, _ := s.App.Services.OAuth.IsOAuthSession(ctx, "@alice:localhost", "ALICEPHONE"); !ok {
			t.Fatal("the device should be an OAuth session")
		}
		r := s.Do(t, http.MethodPost, "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "password1", "device_id": "ALICEPHONE"})
		testenv.WantStatus(t, r, http.StatusOK)
		testenv.WantError(t, s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", tok.Str("access_token"), nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		if ok, _ := s.App.Services.OAuth.IsOAuthSession(ctx, "@alice:localhost", "ALICEPHONE"); ok {
			t.Fatal("after a password login the device is a legacy session: its UIA must not be m.oauth")
		}
		// Its user-interactive auth is the password again.
		del := s.Do(t, http.MethodDelete, "/_matrix/client/v3/devices/ALICEPHONE", r.Str("access_token"), map[string]any{})
		testenv.WantStatus(t, del, http.StatusUnauthorized)
		if !strings.Contains(string(del.Raw), "m.login.password") || strings.Contains(string(del.Raw), "m.oauth") {
			t.Fatalf("UIA flows: %s", del.Raw)
		}
	})
}
