// Package web is the foundation of Myelin's server-rendered pages (the
// sign-in page, the account page, the OAuth pages): one base layout,
// browser sessions kept in the database, CSRF protection, security headers
// and HTML error pages. Pages live under /_myelin/, outside /_matrix.
//
// A page package writes its pages as templ components (github.com/a-h/templ,
// compiled to Go by `go generate`; html/template's reflection made the
// linker keep every exported method of every type: megabytes of binary and
// of resident memory). Each page takes the Page that Render fills and wraps
// its content in Layout; inside, p.Title, p.UserID (the signed-in user, ""
// when nobody is), p.CSRF (the token every form must post as "csrf", see
// CSRFField), p.Nonce (for a <style> or <script> of the page) and p.Server
// are available:
//
//	templ devicesPage(p web.Page, d devicesData) {
//		@web.Layout(p) {
//			<form method="post" action="…">@web.CSRFField(p) … </form>
//		}
//	}
//
// A handler renders with
//
//	return web.Render(c, http.StatusOK, web.Page{Title: "Devices"}, func(p web.Page) templ.Component { return devicesPage(p, d) })
//
// and registers its routes in a mount function given to Mount:
//
//	func (h *Handler) Routes(g *echo.Group, s *web.Site) {
//		g.GET("/account/", h.list, s.Sessions.RequireSignIn)
//	}
//
// Every POST of the group must carry the CSRF token (403 page otherwise)
// unless its route is exempted with Site.NoCSRF. A handler's error
// becomes an HTML page: a *matrixerr.Error shows its message with its
// status, anything else a generic 500. Machine-to-machine endpoints that
// answer JSON and use no cookie (an OAuth token endpoint) belong on
// Site.Echo, outside the group, with their own error answers.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Prefix is the path under which all web pages are served.
const Prefix = "/_myelin"

// Paths of the pages this package serves.
const (
	SignInPath  = Prefix + "/login"
	SignOutPath = Prefix + "/logout"
	// AccountPath is the account page (the account management URL).
	AccountPath = Prefix + "/account/"
)

// Page is what Render passes to a page (the fields Render fills are
// overwritten).
type Page struct {
	Title string
	// Filled by Render.
	UserID string
	CSRF   string
	Nonce  string
	Server string
}

// siteName is the server name, or Myelin when none is set.
func (p Page) siteName() string {
	if p.Server != "" {
		return p.Server
	}
	return "Myelin"
}

// PasswordChecker checks a sign-in: username (a localpart or a full user
// ID) and password, with the rules and rate limits of m.login.password. It
// returns the user ID, or a *matrixerr.Error (wrong credentials, locked,
// deactivated, rate limited).
type PasswordChecker interface {
	CheckSignIn(ctx context.Context, username, password, ip string) (string, error)
}

// Deps are what the site needs.
type Deps struct {
	Store *storage.Store
	// BaseURL is the public base URL (cookies are Secure when it is https).
	BaseURL string
	// ServerName is shown on the pages.
	ServerName string
	Passwords  PasswordChecker
	Log        *slog.Logger
	// SessionLifetime bounds a browser session (default 12h).
	SessionLifetime time.Duration
	// AfterSignIn is where a sign-in without next goes (default the
	// account page).
	AfterSignIn string
}

// Site is the web foundation of one server process.
type Site struct {
	Deps
	Sessions *Sessions
	// Group is the route group under Prefix, and Echo the server (set by
	// Mount).
	Group *echo.Group
	Echo  *echo.Echo

	mu     sync.Mutex
	noCSRF map[string]bool
}

// New builds the site.
func New(d Deps) *Site {
	if d.SessionLifetime <= 0 {
		d.SessionLifetime = 12 * time.Hour
	}
	if d.AfterSignIn == "" {
		d.AfterSignIn = AccountPath
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	u, _ := url.Parse(d.BaseURL)
	secure := u != nil && u.Scheme == "https"
	return &Site{Deps: d, Sessions: &Sessions{Store: d.Store, Secure: secure, Lifetime: d.SessionLifetime}, noCSRF: map[string]bool{}}
}

// NoCSRF exempts POSTs to path (a route path under Prefix, as registered)
// from the CSRF check. Only for endpoints that act on no cookie.
func (s *Site) NoCSRF(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noCSRF[path] = true
}

func (s *Site) csrfExempt(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.noCSRF[path]
}

// Mount registers the sign-in and sign-out pages and the routes of every
// mount function on e, under Prefix, with the site's middleware (security
// headers, HTML errors, CSRF).
func (s *Site) Mount(e *echo.Echo, mounts ...func(g *echo.Group, s *Site)) {
	g := e.Group(Prefix, s.headers, s.htmlErrors, s.csrf)
	s.Group, s.Echo = g, e
	g.GET("/login", s.signInPage)
	g.POST("/login", s.signIn)
	g.POST("/logout", s.signOut)
	for _, m := range mounts {
		m(g, s)
	}
}

type nonceKey struct{}

// headers sets the security headers of every page: a CSP allowing only
// this origin and the page's own inline style and script (by nonce), no
// framing, no referrer, no caching.
func (s *Site) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var b [16]byte
		_, _ = rand.Read(b[:])
		nonce := hex.EncodeToString(b[:]) // hex: html/template leaves it as is
		c.Set("web.nonce", nonce)
		c.Set("web.site", s)
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'nonce-"+nonce+"'; script-src 'self' 'nonce-"+nonce+
			"'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// AllowFormTarget widens the page's Content-Security-Policy so its form's
// answer may send the browser on to target's origin (browsers apply
// form-action to the redirects that follow a form): a client's redirect
// URI, web (scheme://host) or native (scheme:). Unparsable targets are
// left out.
func AllowFormTarget(c echo.Context, target string) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" {
		return
	}
	src := u.Scheme + ":"
	if u.Host != "" {
		src = u.Scheme + "://" + u.Host
	}
	widenCSP(c, "form-action 'self'", src)
}

// AllowImage lets the page show an image from an https URL's origin (a
// client's logo).
func AllowImage(c echo.Context, image string) {
	if u, err := url.Parse(image); err == nil && u.Scheme == "https" && u.Host != "" {
		widenCSP(c, "img-src 'self' data:", "https://"+u.Host)
	}
}

func widenCSP(c echo.Context, directive, src string) {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", strings.Replace(h.Get("Content-Security-Policy"), directive, directive+" "+src, 1))
}

// Nonce is the CSP nonce of the current page.
func Nonce(c echo.Context) string { s, _ := c.Get("web.nonce").(string); return s }

// htmlErrors renders a handler's error as an HTML page.
func (s *Site) htmlErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		status, msg := http.StatusInternalServerError, "Something went wrong on the server. Please try again."
		var he *echo.HTTPError
		if me, ok := matrixerr.As(err); ok && me.Status < 500 {
			status, msg = me.Status, me.Message
			if me.Code == "M_LIMIT_EXCEEDED" {
				msg = "Too many attempts. Please wait a moment and try again."
			}
		} else if errors.As(err, &he) && he.Code < 500 {
			status, msg = he.Code, http.StatusText(he.Code)
		} else {
			s.Log.Error("web page failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		}
		return Error(c, status, msg)
	}
}

// Error renders the error page with status and msg.
func Error(c echo.Context, status int, msg string) error {
	return Render(c, status, Page{Title: http.StatusText(status)}, func(p Page) templ.Component { return errorPage(p, msg) })
}

// Render fills p (server name, signed-in user, CSRF token, style nonce),
// renders the page that page makes of it and writes it with status.
func Render(c echo.Context, status int, p Page, page func(Page) templ.Component) error {
	site, _ := c.Get("web.site").(*Site)
	if site != nil {
		p.Server = site.ServerName
		if uid, ok := site.Sessions.Current(c); ok {
			p.UserID = uid
		}
	}
	p.CSRF = CSRFToken(c)
	p.Nonce = Nonce(c)
	var sb strings.Builder
	if err := page(p).Render(c.Request().Context(), &sb); err != nil {
		return err
	}
	return c.HTML(status, sb.String())
}
