// Package ssocompat is the server side of the spec's "OAuth 2.0 aware
// clients" (v1.18, MSC3824): the legacy API's m.login.sso flow, carried out
// by Myelin's own browser pages instead of an upstream identity provider.
//
// A legacy client sends the browser to GET /login/sso/redirect with a
// redirectUrl; the server sends it on (302) to the sign-in page (or, with
// action=register, the registration page) with a "next" back to this
// package's confirmation page. Once the browser is signed in, the page asks
// "Continue to <host>? This will sign you in to a new session" and, on a
// confirmation that carries the page's CSRF token, sends the browser to
// redirectUrl with loginToken=<an m.login.token> appended. The client then
// logs in with POST /login {"type":"m.login.token"}.
//
// Why its own package: the flow belongs to neither side alone. It is a
// legacy-API feature (its product is an m.login.token of impl/sessions,
// redeemed by impl/accounts) that rides on the browser pages of the OAuth
// side (sign-in in impl/web, registration in impl/oauth), and it is only on
// when both APIs are (--auth both: Enabled). impl/oauth is the
// authorisation server and knows nothing of login tokens; impl/sessions
// knows nothing of pages. This package imports impl/web and depends on
// sessions and the rate limiter through two small interfaces.
package ssocompat

import (
	"context"
	"net/url"
	"strings"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/web"
)

// ConfirmPath is the confirmation page.
const ConfirmPath = web.Prefix + "/sso/confirm"

// registerPath is impl/oauth's registration page (oauth.PathRegisterPage;
// not imported, to keep this package below impl/oauth).
const registerPath = web.Prefix + "/register"

// Actions of the redirect endpoints (v1.18).
const (
	ActionLogin    = "login"
	ActionRegister = "register"
)

// maxNext is web.SafeNext's bound on a sign-in page's "next".
const maxNext = 2000

// Enabled tells whether the m.login.sso flow is offered: only when both
// APIs are on. It needs the legacy API (the client redeems an
// m.login.token at POST /login) and the OAuth side's browser pages; with
// --auth legacy the server keeps to m.login.password and m.login.token, as
// before MSC3824, and offers no SSO.
func Enabled(cfg *config.Config) bool { return cfg.LegacyAuth() && cfg.OAuthEnabled() }

// CheckRedirectURL checks a client's redirectUrl: present, an absolute
// http(s) URL with a host or a custom-scheme URL (a native client's), no
// user info, and not a scheme that runs or embeds content in the browser.
func CheckRedirectURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, matrixerr.MissingParam("redirectUrl is required")
	}
	if len(raw) > maxNext {
		return nil, matrixerr.InvalidParam("redirectUrl is too long")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return nil, matrixerr.InvalidParam("redirectUrl must be an absolute URL")
	}
	if u.User != nil {
		return nil, matrixerr.InvalidParam("redirectUrl must not carry user information")
	}
	if strings.ContainsAny(u.Host, "!$&'()*+,;=\"<>`{}| ") {
		// Sub-delimiters a host may carry but no client's does: the host
		// is shown on the page and goes into its Content-Security-Policy.
		return nil, matrixerr.InvalidParam("redirectUrl has an invalid host")
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Hostname() == "" {
			return nil, matrixerr.InvalidParam("redirectUrl must name a host")
		}
	case "javascript", "data", "vbscript", "file", "blob", "about", "filesystem":
		return nil, matrixerr.InvalidParam("redirectUrl must be an http(s) URL or a client's custom-scheme URL")
	}
	return u, nil
}

// StartLocation is where the redirect endpoints send the browser: the
// sign-in page (action login or absent) or the registration page
// (register; the page keeps to the server's registration mode and links to
// sign-in), each coming back to the confirmation page. The sign-in page of
// a browser already signed in goes straight on to it.
func StartLocation(redirectURL, action string) (string, error) {
	if _, err := CheckRedirectURL(redirectURL); err != nil {
		return "", err
	}
	page := web.SignInPath
	switch action {
	case "", ActionLogin:
	case ActionRegister:
		page = registerPath
	default:
		return "", matrixerr.InvalidParam("action must be login or register")
	}
	next := confirmURL(redirectURL)
	if len(next) > maxNext {
		return "", matrixerr.InvalidParam("redirectUrl is too long")
	}
	return page + "?" + url.Values{"next": {next}}.Encode(), nil
}

func confirmURL(redirectURL string) string {
	return ConfirmPath + "?" + url.Values{"redirectUrl": {redirectURL}}.Encode()
}

// WithLoginToken appends loginToken=token to redirectURL, keeping its
// query (and fragment) as they are.
func WithLoginToken(u *url.URL, token string) string {
	cp := *u
	param := "loginToken=" + url.QueryEscape(token)
	if cp.RawQuery == "" {
		cp.RawQuery = param
	} else {
		cp.RawQuery += "&" + param
	}
	cp.ForceQuery = false
	return cp.String()
}

// Target names redirectURL's destination for the confirmation page: the
// host of an http(s) URL, else the scheme (and host, if any) of a native
// client's URL.
func Target(u *url.URL) string {
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return u.Host
	}
	if u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

// LoginTokens issues single-use, short-lived m.login.tokens
// (sessions.Service).
type LoginTokens interface {
	NewLoginToken(ctx context.Context, userID string) (sessions.LoginToken, error)
}

// Limiter bounds the login tokens issued per account, across processes
// (ratelimit.Limiter, the bucket POST /login/get_token uses too).
type Limiter interface {
	AllowLoginToken(ctx context.Context, account string) error
}

// Service issues the login token of a confirmed SSO login.
type Service struct {
	Tokens LoginTokens
	Limits Limiter
}

// Complete issues a login token for userID (who confirmed in the browser)
// and returns where to send the browser: redirectURL with loginToken.
func (s *Service) Complete(ctx context.Context, userID, redirectURL string) (string, error) {
	u, err := CheckRedirectURL(redirectURL)
	if err != nil {
		return "", err
	}
	if err := s.Limits.AllowLoginToken(ctx, userID); err != nil {
		return "", err
	}
	tok, err := s.Tokens.NewLoginToken(ctx, userID)
	if err != nil {
		return "", err
	}
	return WithLoginToken(u, tok.Token), nil
}
