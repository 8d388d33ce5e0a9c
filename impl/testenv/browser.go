package testenv

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Browser is an HTTP client with a cookie jar for the web pages under
// /_myelin/. It does not follow redirects, so each answer can be checked.
type Browser struct {
	T      testing.TB
	Base   string
	Client *http.Client
}

// NewBrowser returns a Browser for the server at base (a URL).
func NewBrowser(t testing.TB, base string) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{T: t, Base: base, Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// Page is one answer of a page.
type Page struct {
	Status int
	Header http.Header
	Body   string
}

// Location is the page's redirect target.
func (p Page) Location() string { return p.Header.Get("Location") }

// Do sends req with the browser's cookies.
func (b *Browser) Do(req *http.Request) Page {
	b.T.Helper()
	resp, err := b.Client.Do(req)
	if err != nil {
		b.T.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return Page{resp.StatusCode, resp.Header, string(raw)}
}

// Get loads path.
func (b *Browser) Get(path string) Page {
	b.T.Helper()
	req, err := http.NewRequest(http.MethodGet, b.Base+path, nil)
	if err != nil {
		b.T.Fatal(err)
	}
	return b.Do(req)
}

// Post submits form to path.
func (b *Browser) Post(path string, form url.Values) Page {
	b.T.Helper()
	req, err := http.NewRequest(http.MethodPost, b.Base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.Do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// CSRF returns the CSRF token of the forms on p.
func (b *Browser) CSRF(p Page) string {
	b.T.Helper()
	m := csrfRE.FindStringSubmatch(p.Body)
	if m == nil {
		b.T.Fatalf("no CSRF token on the page (%d): %s", p.Status, p.Body)
	}
	return m[1]
}

// Submit loads the page at from and posts form (plus its CSRF token) to
// action.
func (b *Browser) Submit(from, action string, form url.Values) Page {
	b.T.Helper()
	p := b.Get(from)
	if p.Status != http.StatusOK {
		b.T.Fatalf("GET %s: %d %s", from, p.Status, p.Body)
	}
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", b.CSRF(p))
	return b.Post(action, form)
}

// SignIn signs in through /_myelin/login (next may be "") and returns the
// answer to the form's POST.
func (b *Browser) SignIn(user, password, next string) Page {
	b.T.Helper()
	return b.Submit("/_myelin/login", "/_myelin/login", url.Values{"username": {user}, "password": {password}, "next": {next}})
}

// MustSignIn signs in and fails the test unless it worked.
func (b *Browser) MustSignIn(user, password string) {
	b.T.Helper()
	if p := b.SignIn(user, password, ""); p.Status != http.StatusSeeOther {
		b.T.Fatalf("sign in as %s: %d %s", user, p.Status, p.Body)
	}
}
