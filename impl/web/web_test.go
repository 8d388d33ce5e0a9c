package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/web"
)

func newBrowser(t *testing.T, base string) *testenv.Browser { return testenv.NewBrowser(t, base) }

func csrf(t *testing.T, p testenv.Page) string {
	t.Helper()
	return testenv.NewBrowser(t, "").CSRF(p)
}

// addPrivatePage adds a page that needs a signed-in user and shows it.
func addPrivatePage(s *testenv.Server) {
	site := s.App.Web
	site.Group.GET("/test-private", func(c echo.Context) error {
		uid, _ := site.Sessions.Current(c)
		return c.String(http.StatusOK, "hello "+uid)
	}, site.Sessions.RequireSignIn)
	site.Group.POST("/test-private", func(c echo.Context) error {
		return c.String(http.StatusOK, "posted")
	}, site.Sessions.RequireSignIn)
}

func sessionCookie(t *testing.T, h http.Header) *http.Cookie {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err == nil && ck.Name == web.CookieName && ck.Value != "" {
			return ck
		}
	}
	return nil
}

func TestSignInStartsASessionThatOpensPrivatePages(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "correct horse")
		addPrivatePage(s)
		br := newBrowser(t, s.URL)

		// Not signed in: sent to the sign-in page, which comes back.
		p := br.Get(web.Prefix + "/test-private?x=1")
		if p.Status != http.StatusSeeOther || p.Location() != web.SignInPath+"?next="+url.QueryEscape(web.Prefix+"/test-private?x=1") {
			t.Fatalf("private page without session: %d %q", p.Status, p.Location())
		}
		p = br.SignIn("alice", "correct horse", web.Prefix+"/test-private?x=1")
		if p.Status != http.StatusSeeOther || p.Location() != web.Prefix+"/test-private?x=1" {
			t.Fatalf("sign-in: %d %q %s", p.Status, p.Location(), p.Body)
		}
		ck := sessionCookie(t, p.Header)
		if ck == nil {
			t.Fatal("sign-in set no session cookie")
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure || ck.MaxAge <= 0 || ck.MaxAge > 24*3600 {
			t.Fatalf("cookie flags: %+v", ck)
		}
		if len(ck.Value) < 40 {
			t.Fatalf("session cookie too short: %q", ck.Value)
		}
		// The database holds only the hash.
		var stored []string
		if err := s.App.Store.R.NewSelect().Table("web_sessions").Column("session_hash").Scan(t.Context(), &stored); err != nil {
			t.Fatal(err)
		}
		if len(stored) != 1 || stored[0] == ck.Value || strings.Contains(stored[0], ck.Value) {
			t.Fatalf("stored sessions %q for cookie %q", stored, ck.Value)
		}
		p = br.Get(web.Prefix + "/test-private?x=1")
		if p.Status != http.StatusOK || p.Body != "hello @alice:localhost" {
			t.Fatalf("private page signed in: %d %s", p.Status, p.Body)
		}
		// A full user ID works too, in any case of the localpart.
		br2 := newBrowser(t, s.URL)
		if p := br2.SignIn("@Alice:localhost", "correct horse", ""); p.Status != http.StatusSeeOther || p.Location() != "/_myelin/account/" {
			t.Fatalf("sign-in with a full user ID: %d %q", p.Status, p.Location())
		}

		// Sign out ends the session in the database, not only the cookie.
		signInPage := br.Get(web.SignInPath)
		p = br.Post(web.SignOutPath, url.Values{"csrf": {csrf(t, signInPage)}})
		if p.Status != http.StatusSeeOther {
			t.Fatalf("sign out: %d %s", p.Status, p.Body)
		}
		replay := newBrowser(t, s.URL)
		u, _ := url.Parse(s.URL)
		replay.Client.Jar.SetCookies(u, []*http.Cookie{{Name: web.CookieName, Value: ck.Value}})
		if p := replay.Get(web.Prefix + "/test-private"); p.Status != http.StatusSeeOther {
			t.Fatalf("old cookie after sign-out: %d %s", p.Status, p.Body)
		}
	})
}

func TestSignInFailuresAllGetOneGenericMessage(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "correct horse")
		br := newBrowser(t, s.URL)
		errRE := regexp.MustCompile(`<p class="error" id="error" role="alert">([^<]*)</p>`)
		var msgs []string
		for _, c := range []struct{ user, pass string }{
			{"alice", "wrong"}, {"nobody", "correct horse"}, {"@alice:other.example", "correct horse"},
		} {
			p := br.SignIn(c.user, c.pass, "")
			if p.Status != http.StatusUnauthorized || sessionCookie(t, p.Header) != nil {
				t.Fatalf("%s/%s: %d, cookie %v", c.user, c.pass, p.Status, sessionCookie(t, p.Header))
			}
			m := errRE.FindStringSubmatch(p.Body)
			if m == nil {
				t.Fatalf("no error message: %s", p.Body)
			}
			msgs = append(msgs, m[1])
			// The form keeps the username, escaped.
			if !strings.Contains(p.Body, `value="`+c.user+`"`) {
				t.Fatalf("username not kept in the form: %s", p.Body)
			}
		}
		if msgs[0] != msgs[1] || msgs[1] != msgs[2] || msgs[0] != "Invalid username or password." {
			t.Fatalf("messages differ: %q", msgs)
		}
		// Markup in the username is shown as text.
		p := br.SignIn(`<script>x</script>`, "pw", "")
		if strings.Contains(p.Body, "<script>x") {
			t.Fatalf("username not escaped: %s", p.Body)
		}
	})
}

func TestSignInRateLimitsFailedAttemptsAcrossTheAccount(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) {
			c.RateLimit.Enabled = true
			c.RateLimit.PerIP = config.Bucket{Rate: 100, Burst: 100}
			c.RateLimit.PerAccount = config.Bucket{Rate: 100, Burst: 100}
			c.RateLimit.FailedLogin = config.Bucket{Rate: 1.0 / 3600, Burst: 2}
		})
		testenv.CreateUser(t, s, "alice", "correct horse")
		br := newBrowser(t, s.URL)
		for i := range 2 {
			if p := br.SignIn("alice", "wrong", ""); p.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d", i, p.Status)
			}
		}
		// The bucket is empty: even the right password waits.
		p := br.SignIn("alice", "correct horse", "")
		if p.Status != http.StatusTooManyRequests || !strings.Contains(p.Body, "Too many attempts") || sessionCookie(t, p.Header) != nil {
			t.Fatalf("after the limit: %d %s", p.Status, p.Body)
		}
		// The API's login shares the bucket.
		r := s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse"})
		testenv.WantError(t, r, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	})
}

func TestFormsWithoutTheSessionsCSRFTokenAreRefused(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "correct horse")
	addPrivatePage(s)
	br := newBrowser(t, s.URL)

	// Sign-in without a token, and with another visitor's token.
	br.Get(web.SignInPath)
	if p := br.Post(web.SignInPath, url.Values{"username": {"alice"}, "password": {"correct horse"}}); p.Status != http.StatusForbidden || sessionCookie(t, p.Header) != nil {
		t.Fatalf("sign-in without token: %d", p.Status)
	}
	other := newBrowser(t, s.URL)
	otherTok := csrf(t, other.Get(web.SignInPath))
	if p := br.Post(web.SignInPath, url.Values{"csrf": {otherTok}, "username": {"alice"}, "password": {"correct horse"}}); p.Status != http.StatusForbidden {
		t.Fatalf("sign-in with another visitor's token: %d", p.Status)
	}

	if p := br.SignIn("alice", "correct horse", ""); p.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", p.Status, p.Body)
	}
	// Signed in: the pre-session token no longer works on other forms,
	// the session's does.
	preTok := csrf(t, other.Get(web.SignInPath)) // a token of an anonymous visitor
	if p := br.Post(web.Prefix+"/test-private", url.Values{"csrf": {preTok}}); p.Status != http.StatusForbidden {
		t.Fatalf("post with a foreign token: %d", p.Status)
	}
	if p := br.Post(web.Prefix+"/test-private", nil); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "expired") {
		t.Fatalf("post without token: %d %s", p.Status, p.Body)
	}
	if p := br.Post(web.SignOutPath, nil); p.Status != http.StatusForbidden {
		t.Fatalf("sign-out without token: %d", p.Status)
	}
	tok := csrf(t, br.Get(web.SignInPath))
	if p := br.Post(web.Prefix+"/test-private", url.Values{"csrf": {tok}}); p.Status != http.StatusOK || p.Body != "posted" {
		t.Fatalf("post with the session's token: %d %s", p.Status, p.Body)
	}
	// The session survived the refused sign-out.
	if p := br.Get(web.Prefix + "/test-private"); p.Status != http.StatusOK {
		t.Fatalf("session after refused sign-out: %d", p.Status)
	}
}

func TestSignInNeverRedirectsToAnotherSite(t *testing.T) {
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/x", "javascript:alert(1)",
		"evil.example", "/ok\r\nx", "https:evil.example", "/\t/evil.example", ""} {
		if got := web.SafeNext(bad); got != "" {
			t.Errorf("SafeNext(%q) = %q, want refused", bad, got)
		}
	}
	for _, good := range []string{"/_myelin/account/", "/_myelin/account/?action=org.matrix.device_view&device_id=AB%2FC"} {
		if got := web.SafeNext(good); got != good {
			t.Errorf("SafeNext(%q) = %q", good, got)
		}
	}
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "correct horse")
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example"} {
		br := newBrowser(t, s.URL)
		p := br.SignIn("alice", "correct horse", bad)
		if p.Status != http.StatusSeeOther || p.Location() != "/_myelin/account/" {
			t.Fatalf("next=%q: %d %q", bad, p.Status, p.Location())
		}
		// The form does not carry it either.
		if f := br.Get(web.SignInPath + "?next=" + url.QueryEscape(bad)); strings.Contains(f.Body, "evil.example") {
			t.Fatalf("next=%q kept in the form", bad)
		}
	}
}

func TestPagesCarrySecurityHeadersAndSecureCookiesOnHTTPS(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, func(c *config.Config) { c.PublicBaseURL = "https://matrix.example.org" })
	testenv.CreateUser(t, s, "alice", "correct horse")
	br := newBrowser(t, s.URL)
	p := br.Get(web.SignInPath)
	h := p.Header
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "'nonce-") {
		t.Fatalf("CSP: %q", csp)
	}
	nonce := regexp.MustCompile(`'nonce-([^']+)'`).FindStringSubmatch(csp)[1]
	if !strings.Contains(p.Body, `<style nonce="`+nonce+`">`) {
		t.Fatal("the page's style does not carry the CSP nonce")
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("headers: %v", h)
	}
	// Cookies are Secure when the public URL is https (the test talks
	// plain HTTP to the listener, as a TLS-terminating proxy would).
	tok := csrf(t, p)
	var pre *http.Cookie
	for _, line := range h.Values("Set-Cookie") {
		if ck, err := http.ParseSetCookie(line); err == nil && ck.Name == "myelin_csrf" {
			pre = ck
		}
	}
	if pre == nil || !pre.Secure || !pre.HttpOnly || pre.SameSite != http.SameSiteLaxMode {
		t.Fatalf("pre-session cookie: %+v", pre)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+web.SignInPath, strings.NewReader(url.Values{"csrf": {tok}, "username": {"alice"}, "password": {"correct horse"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "myelin_csrf", Value: pre.Value})
	resp := br.Do(req)
	ck := sessionCookie(t, resp.Header)
	if resp.Status != http.StatusSeeOther || ck == nil || !ck.Secure || !ck.HttpOnly {
		t.Fatalf("sign-in over https base: %d %+v", resp.Status, ck)
	}
	// An unknown page under /_myelin is an HTML 404 with the same headers.
	nf := br.Get(web.Prefix + "/nothing-here")
	if nf.Status != http.StatusNotFound || nf.Header.Get("X-Frame-Options") != "DENY" || !strings.HasPrefix(nf.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("404: %d %v %s", nf.Status, nf.Header, nf.Body)
	}
}

func TestSessionWorksAcrossTwoServersOnOnePostgreSQL(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	cfg := testenv.TestConfig(t, testenv.Postgres)
	a := testenv.StartConfig(t, cfg)
	cfg2 := *cfg
	cfg2.Listen = "127.0.0.1:0"
	bsrv := testenv.StartConfig(t, &cfg2)
	testenv.CreateUser(t, a, "alice", "correct horse")
	addPrivatePage(a)
	addPrivatePage(bsrv)

	br := newBrowser(t, a.URL)
	if p := br.SignIn("alice", "correct horse", ""); p.Status != http.StatusSeeOther {
		t.Fatalf("sign-in on A: %d", p.Status)
	}
	mustHaveSession(t, br, a)
	onB := newBrowser(t, bsrv.URL)
	ub, _ := url.Parse(bsrv.URL)
	ua, _ := url.Parse(a.URL)
	onB.Client.Jar.SetCookies(ub, br.Client.Jar.Cookies(ua))
	if p := onB.Get(web.Prefix + "/test-private"); p.Status != http.StatusOK || p.Body != "hello @alice:localhost" {
		t.Fatalf("session of A on B: %d %s", p.Status, p.Body)
	}
	// Signed out on B: gone on A too.
	tok := csrf(t, onB.Get(web.SignInPath))
	if p := onB.Post(web.SignOutPath, url.Values{"csrf": {tok}}); p.Status != http.StatusSeeOther {
		t.Fatalf("sign-out on B: %d %s", p.Status, p.Body)
	}
	if p := br.Get(web.Prefix + "/test-private"); p.Status != http.StatusSeeOther {
		t.Fatalf("A after sign-out on B: %d %s", p.Status, p.Body)
	}
}

// mustHaveSession fails unless br holds a session cookie for s.
func mustHaveSession(t *testing.T, br *testenv.Browser, s *testenv.Server) {
	t.Helper()
	u, _ := url.Parse(s.URL)
	for _, ck := range br.Client.Jar.Cookies(u) {
		if ck.Name == web.CookieName {
			return
		}
	}
	t.Fatal("no session cookie in the jar")
}

func TestLockedAccountsCannotSignInAndTheirSessionsStop(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "correct horse")
	addPrivatePage(s)
	br := newBrowser(t, s.URL)
	if p := br.SignIn("alice", "correct horse", ""); p.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", p.Status)
	}
	if err := s.App.Services.Sessions.SetFlag(t.Context(), "@alice:localhost", sessions.FlagLocked, true); err != nil {
		t.Fatal(err)
	}
	if p := br.Get(web.Prefix + "/test-private"); p.Status != http.StatusSeeOther {
		t.Fatalf("locked account's session: %d %s", p.Status, p.Body)
	}
	// Only who knows the password learns that the account is locked.
	if p := newBrowser(t, s.URL).SignIn("alice", "wrong", ""); !strings.Contains(p.Body, "Invalid username or password.") {
		t.Fatalf("wrong password of a locked account: %s", p.Body)
	}
	if p := newBrowser(t, s.URL).SignIn("alice", "correct horse", ""); p.Status != http.StatusUnauthorized || !strings.Contains(p.Body, "locked") || sessionCookie(t, p.Header) != nil {
		t.Fatalf("locked account signs in: %d %s", p.Status, p.Body)
	}
}
