package oauth_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// authorizeURL is an authorisation request of clientID as a client builds
// it.
func authorizeURL(clientID, redirect, scope, mode, prompt string) string {
	v := url.Values{"client_id": {clientID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {scope},
		"state": {"s1"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}}
	if mode != "" {
		v.Set("response_mode", mode)
	}
	if prompt != "" {
		v.Set("prompt", prompt)
	}
	return "/_myelin/oauth2/authorize?" + v.Encode()
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// consentForm reads the consent page's form (hidden fields and CSRF).
func consentForm(t *testing.T, p testenv.Page) url.Values {
	t.Helper()
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="consent"`) {
		t.Fatalf("want the consent page, got %d %s", p.Status, p.Body)
	}
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(p.Body, -1) {
		v.Set(m[1], strings.ReplaceAll(strings.ReplaceAll(m[2], "&amp;", "&"), "&#43;", "+"))
	}
	return v
}

func TestConsentPageIssuesACodeToTheRedirectURI(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "password1")
		clientID := registerNative(t, s)
		redirect := "http://127.0.0.1:4711/callback"
		br := testenv.NewBrowser(t, s.URL)
		az := authorizeURL(clientID, redirect, oauth.ScopeAPI+" "+oauth.ScopeDevice+"BROWSERDEV", "fragment", "")

		// Not signed in: to the sign-in page, which comes back.
		p := br.Get(az)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), "/_myelin/login?next=") {
			t.Fatalf("want the sign-in page, got %d %s", p.Status, p.Location())
		}
		p = br.SignIn("alice", "password1", az)
		if p.Status != http.StatusSeeOther || p.Location() != az {
			t.Fatalf("sign-in should return to the request: %d %s", p.Status, p.Location())
		}
		page := br.Get(az)
		form := consentForm(t, page)
		for _, want := range []string{"Test Client", "https://client.example.org/", "BROWSERDEV", "@alice:localhost"} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("the consent page should show %q", want)
			}
		}
		if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://127.0.0.1:4711") {
			t.Errorf("the consent form must be allowed to send the browser to the client: %s", csp)
		}
		// Without the CSRF token the form is refused.
		noCSRF := url.Values{}
		for k, v := range form {
			if k != "csrf" {
				noCSRF[k] = v
			}
		}
		noCSRF.Set("decision", "allow")
		if p := br.Post("/_myelin/oauth2/authorize", noCSRF); p.Status != http.StatusForbidden {
			t.Fatalf("a consent without CSRF token: %d", p.Status)
		}
		form.Set("decision", "allow")
		p = br.Post("/_myelin/oauth2/authorize", form)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), redirect+"#") {
			t.Fatalf("want a redirect to the client with a fragment, got %d %s", p.Status, p.Location())
		}
		u, _ := url.Parse(p.Location())
		frag, _ := url.ParseQuery(u.Fragment)
		if frag.Get("state") != "s1" {
			t.Fatalf("state not passed through: %s", p.Location())
		}
		tok := exchange(t, s, clientID, frag.Get("code"), redirect, verifier)
		testenv.WantStatus(t, tok, http.StatusOK)

		// Cancel answers access_denied.
		form = consentForm(t, br.Get(authorizeURL(clientID, redirect, oauth.ScopeAPI, "", "")))
		form.Set("decision", "deny")
		p = br.Post("/_myelin/oauth2/authorize", form)
		if loc, _ := url.Parse(p.Location()); p.Status != http.StatusSeeOther || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "s1" {
			t.Fatalf("deny: %d %s", p.Status, p.Location())
		}
		// An untrusted redirect URI is never followed.
		p = br.Get(authorizeURL(clientID, "http://evil.example/cb", oauth.ScopeAPI, "", ""))
		if p.Status != http.StatusBadRequest || p.Location() != "" {
			t.Fatalf("unregistered redirect: %d %s", p.Status, p.Location())
		}
		// A bad request of a trusted client is answered at its redirect URI.
		p = br.Get(strings.Replace(authorizeURL(clientID, redirect, oauth.ScopeAPI, "", ""), "S256", "plain", 1))
		if p.Status != http.StatusSeeOther || !strings.Contains(p.Location(), "error=invalid_request") {
			t.Fatalf("plain PKCE: %d %s", p.Status, p.Location())
		}
	})
}

func TestPromptCreateRegistersWithinTheRegistrationMode(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil) // registration open in tests
		clientID := registerNative(t, s)
		redirect := "http://127.0.0.1:4711/callback"
		br := testenv.NewBrowser(t, s.URL)
		az := authorizeURL(clientID, redirect, oauth.ScopeAPI, "", "create")
		p := br.Get(az)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), oauth.PathRegisterPage+"?next=") {
			t.Fatalf("prompt=create should open the registration page: %d %s", p.Status, p.Location())
		}
		reg := p.Location()
		p = br.Submit(reg, oauth.PathRegisterPage, url.Values{"username": {"newbie"}, "password": {"password1"}, "password2": {"password2"}, "next": {az}})
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "differ") {
			t.Fatalf("mismatched passwords: %d", p.Status)
		}
		p = br.Submit(reg, oauth.PathRegisterPage, url.Values{"username": {"newbie"}, "password": {"password1"}, "password2": {"password1"}, "next": {az}})
		if p.Status != http.StatusSeeOther || p.Location() != az {
			t.Fatalf("registration should sign in and come back: %d %s %s", p.Status, p.Location(), p.Body)
		}
		form := consentForm(t, br.Get(az))
		form.Set("decision", "allow")
		p = br.Post("/_myelin/oauth2/authorize", form)
		loc, _ := url.Parse(p.Location())
		tok := exchange(t, s, clientID, loc.Query().Get("code"), redirect, verifier)
		who := s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", tok.Str("access_token"), nil)
		if who.Str("user_id") != "@newbie:localhost" {
			t.Fatalf("whoami: %s", who.Raw)
		}
		// The name is now taken.
		br2 := testenv.NewBrowser(t, s.URL)
		p = br2.Submit(reg, oauth.PathRegisterPage, url.Values{"username": {"newbie"}, "password": {"password1"}, "password2": {"password1"}})
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "taken") {
			t.Fatalf("taken name: %d %s", p.Status, p.Body)
		}
	})
	t.Run("token mode needs a token", func(t *testing.T) {
		s := start(t, testenv.SQLite, func(c *config.Config) { c.Registration = config.RegistrationToken })
		if _, err := s.App.Services.Accounts.CreateRegistrationToken(t.Context(), "letmein", nil, nil); err != nil {
			t.Fatal(err)
		}
		br := testenv.NewBrowser(t, s.URL)
		form := url.Values{"username": {"tok"}, "password": {"password1"}, "password2": {"password1"}, "token": {"wrong"}}
		if p := br.Submit(oauth.PathRegisterPage, oauth.PathRegisterPage, form); p.Status != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d %s", p.Status, p.Body)
		}
		form.Set("token", "letmein")
		if p := br.Submit(oauth.PathRegisterPage, oauth.PathRegisterPage, form); p.Status != http.StatusSeeOther {
			t.Fatalf("right token: %d %s", p.Status, p.Body)
		}
	})
	t.Run("disabled mode refuses", func(t *testing.T) {
		s := start(t, testenv.SQLite, func(c *config.Config) { c.Registration = config.RegistrationDisabled })
		br := testenv.NewBrowser(t, s.URL)
		p := br.Get(oauth.PathRegisterPage)
		if !strings.Contains(p.Body, `id="disabled"`) {
			t.Fatalf("the page should say registration is closed: %s", p.Body)
		}
		p = br.Post(oauth.PathRegisterPage, url.Values{"csrf": {br.CSRF(br.Get("/_myelin/login"))}, "username": {"x"}, "password": {"password1"}, "password2": {"password1"}})
		if p.Status != http.StatusForbidden {
			t.Fatalf("registration while disabled: %d", p.Status)
		}
	})
}

func TestDeviceCodeEntryPageApprovesTheGrant(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "password1")
		clientID := registerNative(t, s)
		d := postForm(t, s, oauth.PathDevice, url.Values{"client_id": {clientID}, "scope": {oauth.ScopeAPI + " " + oauth.ScopeDevice + "TVDEVICE02"}}, "", "")
		testenv.WantStatus(t, d, http.StatusOK)
		br := testenv.NewBrowser(t, s.URL)
		complete := strings.TrimPrefix(d.Str("verification_uri_complete"), s.URL)
		if p := br.Get(complete); p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), "/_myelin/login") {
			t.Fatalf("the code page needs a signed-in user: %d %s", p.Status, p.Location())
		}
		br.MustSignIn("alice", "password1")
		p := br.Submit("/_myelin/link", "/_myelin/link", url.Values{"user_code": {"BBBB-BBBB"}})
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "unknown or has expired") {
			t.Fatalf("unknown code: %d", p.Status)
		}
		form := consentForm(t, br.Get(complete))
		if form.Get("user_code") != d.Str("user_code") {
			t.Fatalf("form: %v", form)
		}
		form.Set("decision", "allow")
		if p := br.Post("/_myelin/link/decide", form); p.Status != http.StatusOK || !strings.Contains(p.Body, "Device connected") {
			t.Fatalf("approve: %d %s", p.Status, p.Body)
		}
		tok := postForm(t, s, oauth.PathToken, url.Values{"grant_type": {oauth.GrantDeviceCode}, "device_code": {d.Str("device_code")}, "client_id": {clientID}}, "", "")
		testenv.WantStatus(t, tok, http.StatusOK)
		if p := br.Post("/_myelin/link/decide", form); p.Status != http.StatusBadRequest {
			t.Fatalf("a decided code is spent: %d", p.Status)
		}
	})
}
