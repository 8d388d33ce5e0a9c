package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// CookieName is the browser session cookie.
const CookieName = "myelin_session"

// Sessions are the browser sessions, kept in the database (table
// web_sessions) so that every server process on it knows them. The cookie
// holds 256 random bits; the database holds only their SHA-256.
type Sessions struct {
	Store *storage.Store
	// Secure marks the cookie Secure (the public base URL is https).
	Secure bool
	// Lifetime bounds a session from its sign-in.
	Lifetime time.Duration
	Now      func() time.Time
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// current is the session of a request, looked up once.
type current struct {
	row    storage.WebSession
	cookie string
	ok     bool
}

const currentKey = "web.session"

// lookup finds the request's valid session (cached in the echo.Context).
// A session of an account that is deactivated or locked does not count.
func (s *Sessions) lookup(c echo.Context) *current {
	if cur, ok := c.Get(currentKey).(*current); ok {
		return cur
	}
	cur := &current{}
	c.Set(currentKey, cur)
	ck, err := c.Cookie(CookieName)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return cur
	}
	ctx := c.Request().Context()
	var row storage.WebSession
	err = s.Store.R.NewSelect().Model(&row).
		Where("session_hash = ? AND expires_ts > ?", tokens.HashToken(ck.Value).String(), s.now().UnixMilli()).
		Where("EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = web_session.user_id AND u.deactivated = ? AND u.locked = ?)", false, false).
		Scan(ctx)
	if err != nil {
		return cur
	}
	cur.row, cur.cookie, cur.ok = row, ck.Value, true
	return cur
}

// Current returns the signed-in user of the request.
func (s *Sessions) Current(c echo.Context) (string, bool) {
	cur := s.lookup(c)
	return cur.row.UserID, cur.ok
}

// CurrentHash returns the stored hash of the request's session ("" if
// none), which names it among the user's sessions.
func (s *Sessions) CurrentHash(c echo.Context) string {
	if cur := s.lookup(c); cur.ok {
		return cur.row.SessionHash
	}
	return ""
}

// SignIn starts a session of userID: a new random cookie (a session
// identifier set before sign-in is never reused), after dropping the
// request's previous session.
func (s *Sessions) SignIn(c echo.Context, userID string) error {
	ctx := c.Request().Context()
	if err := s.SignOut(c); err != nil {
		return err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	value := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	ua := c.Request().UserAgent()
	if len(ua) > 200 {
		ua = ua[:200]
	}
	row := storage.WebSession{SessionHash: tokens.HashToken(value).String(), UserID: userID, IP: c.RealIP(),
		UserAgent: ua, CreatedTS: now.UnixMilli(), ExpiresTS: now.Add(s.Lifetime).UnixMilli()}
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		// Expired sessions go at each sign-in.
		if _, err := tx.NewDelete().Model((*storage.WebSession)(nil)).Where("expires_ts <= ?", now.UnixMilli()).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewInsert().Model(&row).Exec(ctx)
		return err
	})
	if err != nil {
		return err
	}
	c.SetCookie(s.cookie(value, int(s.Lifetime/time.Second)))
	c.Set(currentKey, &current{row: row, cookie: value, ok: true})
	return nil
}

// SignOut ends the request's session (if any) and clears the cookie.
func (s *Sessions) SignOut(c echo.Context) error {
	ck, err := c.Cookie(CookieName)
	if err == nil && ck.Value != "" {
		if _, err := s.Store.DB.NewDelete().Model((*storage.WebSession)(nil)).
			Where("session_hash = ?", tokens.HashToken(ck.Value).String()).Exec(c.Request().Context()); err != nil {
			return err
		}
		c.SetCookie(s.cookie("", -1))
	}
	c.Set(currentKey, &current{})
	return nil
}

// List returns the unexpired sessions of userID, newest first.
func (s *Sessions) List(ctx context.Context, userID string) ([]storage.WebSession, error) {
	var rows []storage.WebSession
	err := s.Store.R.NewSelect().Model(&rows).Where("user_id = ? AND expires_ts > ?", userID, s.now().UnixMilli()).
		Order("created_ts DESC").Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return rows, err
}

// End ends the session of userID whose stored hash is hash.
func (s *Sessions) End(ctx context.Context, userID, hash string) error {
	_, err := s.Store.DB.NewDelete().Model((*storage.WebSession)(nil)).
		Where("user_id = ? AND session_hash = ?", userID, hash).Exec(ctx)
	return err
}

// DeleteUser ends every session of userID inside tx (an OnDeactivate hook
// of accounts).
func DeleteUser(ctx context.Context, tx bun.IDB, userID string) error {
	_, err := tx.NewDelete().Model((*storage.WebSession)(nil)).Where("user_id = ?", userID).Exec(ctx)
	return err
}

func (s *Sessions) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteLaxMode}
}

// RequireSignIn sends a visitor who is not signed in to the sign-in page,
// which comes back to this page afterwards.
func (s *Sessions) RequireSignIn(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, ok := s.Current(c); ok {
			return next(c)
		}
		if c.Request().Method != http.MethodGet {
			return Error(c, http.StatusUnauthorized, "Your session has ended. Please sign in again.")
		}
		return c.Redirect(http.StatusSeeOther, SignInPath+"?next="+url.QueryEscape(c.Request().URL.RequestURI()))
	}
}

// SafeNext returns next if it is a path on this site (a relative
// reference starting with a single "/"), otherwise "" — so a sign-in link
// cannot send the user to another site.
func SafeNext(next string) string {
	if next == "" || len(next) > 2000 || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return ""
	}
	return next
}

// csrfFor derives the CSRF token of a secret (the session cookie, or the
// pre-session cookie of a visitor): knowing the token reveals nothing of
// the cookie, and the database, which holds SHA-256 of the cookie, holds
// nothing that yields the token.
func csrfFor(secret string) string {
	h := sha256.Sum256([]byte("myelin-csrf\x00" + secret))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
