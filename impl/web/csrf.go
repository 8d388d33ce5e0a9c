package web

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/tokens"
)

// preCookieName holds the secret of a visitor's CSRF token before sign-in
// (the sign-in form itself needs one, against login CSRF).
const preCookieName = "myelin_csrf"

// CSRFToken is the token the forms of the current page must post as the
// field "csrf": derived from the session when signed in, otherwise from a
// pre-session cookie (set here when missing).
func CSRFToken(c echo.Context) string {
	if tok, ok := c.Get("web.csrf").(string); ok {
		return tok
	}
	var tok string
	if site, ok := c.Get("web.site").(*Site); ok {
		if cur := site.Sessions.lookup(c); cur.ok {
			tok = csrfFor(cur.cookie)
		}
	}
	if tok == "" {
		secret := preSecret(c)
		if secret == "" {
			var b [32]byte
			_, _ = rand.Read(b[:])
			secret = base64.RawURLEncoding.EncodeToString(b[:])
			secure := false
			if site, ok := c.Get("web.site").(*Site); ok {
				secure = site.Sessions.Secure
			}
			c.SetCookie(&http.Cookie{Name: preCookieName, Value: secret, Path: Prefix + "/",
				HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
		}
		tok = csrfFor(secret)
	}
	c.Set("web.csrf", tok)
	return tok
}

func preSecret(c echo.Context) string {
	ck, err := c.Cookie(preCookieName)
	if err != nil || len(ck.Value) > 100 {
		return ""
	}
	return ck.Value
}

// csrf refuses a POST without the right token: the session's when signed
// in; the pre-session one when not (and on the sign-in form, which may be
// older than a session started in another tab).
func (s *Site) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method != http.MethodPost || s.csrfExempt(c.Path()) {
			return next(c)
		}
		got := c.FormValue("csrf")
		ok := false
		cur := s.Sessions.lookup(c)
		if cur.ok {
			ok = tokens.Equal(got, csrfFor(cur.cookie))
		}
		if !ok && (!cur.ok || c.Path() == SignInPath) {
			if pre := preSecret(c); pre != "" {
				ok = tokens.Equal(got, csrfFor(pre))
			}
		}
		if !ok {
			return Error(c, http.StatusForbidden, "This form has expired or was not sent from this site. Go back, reload the page and try again.")
		}
		return next(c)
	}
}
