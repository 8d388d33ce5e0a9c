package ssocompat_test

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	redirectPath = "/_matrix/client/v3/login/sso/redirect"
	client       = "https://client.example.org/login?from=sso"
)

func ssoURL(redirectURL, action string) string {
	v := url.Values{"redirectUrl": {redirectURL}}
	if action != "" {
		v.Set("action", action)
	}
	return redirectPath + "?" + v.Encode()
}

// next is the "next" of a redirect to the sign-in or registration page.
func next(t *testing.T, p testenv.Page, page string) string {
	t.Helper()
	if p.Status != http.StatusFound || !strings.HasPrefix(p.Location(), page+"?next=") {
		t.Fatalf("want a 302 to %s, got %d %q %s", page, p.Status, p.Location(), p.Body)
	}
	u, err := url.Parse(p.Location())
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("next")
}

// confirm loads the confirmation page at path, checks it, and posts its
// form, returning the answer.
func confirm(t *testing.T, br *testenv.Browser, path string) testenv.Page {
	t.Helper()
	p := br.Get(path)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="confirm"`) {
		t.Fatalf("want the confirmation page, got %d %s", p.Status, p.Body)
	}
	for _, want := range []string{"Continue to client.example.org?", "sign you in to a new session", "@alice:localhost"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the confirmation page should say %q", want)
		}
	}
	if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://client.example.org;") {
		t.Errorf("the confirmation must be allowed to send the browser on to the client: %s", csp)
	}
	u, _ := url.Parse(path)
	return br.Post("/_myelin/sso/confirm", url.Values{"csrf": {br.CSRF(p)}, "redirectUrl": {u.Query().Get("redirectUrl")}})
}

// loginToken checks that p sends the browser to the client with its query
// kept and a loginToken added, and returns the token.
func loginToken(t *testing.T, p testenv.Page) string {
	t.Helper()
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), client+"&loginToken=") {
		t.Fatalf("want a 303 to %s&loginToken=…, got %d %q %s", client, p.Status, p.Location(), p.Body)
	}
	u, _ := url.Parse(p.Location())
	return u.Query().Get("loginToken")
}

func loginWith(s *testenv.Server, t *testing.T, token string) testenv.Response {
	return s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.token", "token": token})
}

func TestLoginFlowsOfferPreferredSSOOnlyWithBothAPIs(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		for mode, want := range map[string]any{
			config.AuthBoth: []any{map[string]any{"type": "m.login.password"}, map[string]any{"type": "m.login.token"},
				map[string]any{"type": "m.login.sso", "oauth_aware_preferred": true}},
			config.AuthLegacy: []any{map[string]any{"type": "m.login.password"}, map[string]any{"type": "m.login.token"}},
		} {
			s := testenv.Start(t, b, func(c *config.Config) { c.Auth = mode })
			r := s.Do(t, "GET", "/_matrix/client/v3/login", "", nil)
			testenv.WantStatus(t, r, http.StatusOK)
			if !reflect.DeepEqual(r.Body["flows"], want) {
				t.Errorf("--auth %s: flows %s", mode, r.Raw)
			}
		}
		s := testenv.Start(t, b, func(c *config.Config) { c.Auth = config.AuthOAuth })
		testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/login", "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
	})
}

func TestSSORedirectSignInConfirmGivesASingleUseLoginToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "password1")
		br := testenv.NewBrowser(t, s.URL)

		back := next(t, br.Get(ssoURL(client, "login")), "/_myelin/login")
		if !strings.HasPrefix(back, "/_myelin/sso/confirm?") {
			t.Fatalf("the sign-in should come back to the confirmation, not %s", back)
		}
		// Not signed in, the confirmation itself sends to the sign-in page.
		if p := br.Get(back); p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), "/_myelin/login?next=") {
			t.Fatalf("confirmation before sign-in: %d %s", p.Status, p.Location())
		}
		if p := br.SignIn("alice", "password1", back); p.Status != http.StatusSeeOther || p.Location() != back {
			t.Fatalf("sign-in should return to the confirmation: %d %s", p.Status, p.Location())
		}
		tok := loginToken(t, confirm(t, br, back))

		r := loginWith(s, t, tok)
		testenv.WantStatus(t, r, http.StatusOK)
		if r.Str("user_id") != "@alice:localhost" || r.Str("access_token") == "" {
			t.Fatalf("login: %s", r.Raw)
		}
		testenv.WantError(t, loginWith(s, t, tok), http.StatusForbidden, "M_FORBIDDEN")
	})
}

func TestSSORedirectOfASignedInBrowserGoesStraightToTheConfirmation(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "password1")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "password1")

		back := next(t, br.Get(ssoURL(client, "")), "/_myelin/login")
		p := br.Get("/_myelin/login?next=" + url.QueryEscape(back))
		if p.Status != http.StatusSeeOther || p.Location() != back {
			t.Fatalf("a signed-in browser should skip the sign-in form: %d %s", p.Status, p.Location())
		}
		testenv.WantStatus(t, loginWith(s, t, loginToken(t, confirm(t, br, back))), http.StatusOK)
	})
}

func TestSSORedirectWithActionRegisterCreatesTheAccountFirst(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.Registration = "open" })
		br := testenv.NewBrowser(t, s.URL)
		back := next(t, br.Get(ssoURL(client, "register")), "/_myelin/register")
		p := br.Submit("/_myelin/register?next="+url.QueryEscape(back), "/_myelin/register", url.Values{
			"username": {"alice"}, "password": {"a long password"}, "password2": {"a long password"}, "next": {back}})
		if p.Status != http.StatusSeeOther || p.Location() != back {
			t.Fatalf("registration should return to the confirmation: %d %s %s", p.Status, p.Location(), p.Body)
		}
		r := loginWith(s, t, loginToken(t, confirm(t, br, back)))
		testenv.WantStatus(t, r, http.StatusOK)
		if r.Str("user_id") != "@alice:localhost" {
			t.Fatalf("login: %s", r.Raw)
		}
	})
}

func TestSSOConfirmationWithoutTheCSRFTokenIsRefused(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "password1")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "password1")
		back := next(t, br.Get(ssoURL(client, "")), "/_myelin/login")
		testenv.WantStatus(t, testenv.Response{Status: br.Get(back).Status}, http.StatusOK)
		for _, csrf := range []string{"", "forged"} {
			p := br.Post("/_myelin/sso/confirm", url.Values{"csrf": {csrf}, "redirectUrl": {client}})
			if p.Status != http.StatusForbidden || p.Location() != "" {
				t.Fatalf("csrf %q: want 403 and no redirect, got %d %q", csrf, p.Status, p.Location())
			}
		}
	})
}

func TestSSORedirectRefusesBadRedirectURLsAndUnknownIdPs(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.WantError(t, s.Do(t, "GET", redirectPath, "", nil), http.StatusBadRequest, "M_MISSING_PARAM")
		for _, bad := range []string{"/relative", "javascript:alert(1)", "https://user@evil.example.org/", "https:///x"} {
			testenv.WantError(t, s.Do(t, "GET", ssoURL(bad, ""), "", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		}
		r := s.Do(t, "GET", ssoURL(client, "delete"), "", nil)
		if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Str("errcode"), "M_") {
			t.Fatalf("unknown action: %d %s", r.Status, r.Raw)
		}
		testenv.WantError(t, s.Do(t, "GET", redirectPath+"/com.example.idp.github?redirectUrl="+url.QueryEscape(client), "", nil),
			http.StatusNotFound, "M_NOT_FOUND")
		// The confirmation page refuses a bad redirectUrl too (it is a
		// link anyone can make).
		testenv.CreateUser(t, s, "alice", "password1")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "password1")
		if p := br.Get("/_myelin/sso/confirm?redirectUrl=javascript:alert(1)"); p.Status != http.StatusBadRequest {
			t.Fatalf("confirmation of a javascript: URL: %d", p.Status)
		}
	})
}

func TestSSORedirectAnswersLikeTheLegacyAPIWhenSSOIsOff(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		for _, mode := range []string{config.AuthOAuth, config.AuthLegacy} {
			s := testenv.Start(t, b, func(c *config.Config) { c.Auth = mode })
			testenv.WantError(t, s.Do(t, "GET", ssoURL(client, ""), "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
			testenv.WantError(t, s.Do(t, "GET", redirectPath+"/x?redirectUrl="+url.QueryEscape(client), "", nil), http.StatusNotFound, "M_UNRECOGNIZED")
			if p := testenv.NewBrowser(t, s.URL).Get("/_myelin/sso/confirm?redirectUrl=" + url.QueryEscape(client)); p.Status != http.StatusNotFound {
				t.Errorf("--auth %s: the confirmation page should not exist, got %d", mode, p.Status)
			}
		}
	})
}

func TestSSOLoginTokensAreRateLimitedPerUser(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) {
			c.RateLimit.Enabled = true
			c.RateLimit.LoginToken = config.Bucket{Rate: 0.001, Burst: 2}
		})
		testenv.CreateUser(t, s, "alice", "password1")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "password1")
		back := next(t, br.Get(ssoURL(client, "")), "/_myelin/login")
		for i := 0; i < 2; i++ {
			loginToken(t, confirm(t, br, back))
		}
		if p := confirm(t, br, back); p.Status != http.StatusTooManyRequests || p.Location() != "" {
			t.Fatalf("the third token in a row: want 429, got %d %q", p.Status, p.Location())
		}
	})
}
