package oauth

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/web"
)

// Handler serves the protocol endpoints: JSON and form posts of clients
// and resource servers, no cookies (the browser pages are Pages).
type Handler struct {
	OAuth *Service
	// Auth resolves access tokens (userinfo).
	Auth auth.Authenticator
	Log  *slog.Logger
}

// Mount registers the endpoints on e.
func (h *Handler) Mount(e *echo.Echo) {
	e.GET(PathDiscovery, h.discovery)
	e.GET(PathKeys, h.keys)
	e.POST(PathRegister, h.register)
	e.POST(PathToken, h.token)
	e.POST(PathRevoke, h.revoke)
	e.POST(PathIntrospect, h.introspect)
	e.POST(PathDevice, h.device)
	e.GET(PathUserinfo, h.userinfo)
	e.POST(PathUserinfo, h.userinfo)
	// MSC2965's unstable discovery, which matrix-js-sdk (up to at least
	// 37.x) and Element Web call.
	e.GET(PathUnstableMetadata, h.discovery)
	e.GET(PathUnstableIssuer, func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"issuer": h.OAuth.Issuer()})
	})
}

// writeError answers an OAuth error; anything else is a server_error (500,
// logged).
func (h *Handler) writeError(c echo.Context, err error) error {
	var oe *Error
	if !errors.As(err, &oe) {
		var se *ScopeError
		if errors.As(err, &se) {
			oe = oauthErr(http.StatusBadRequest, "invalid_scope", se.Description)
		} else {
			if h.Log != nil {
				h.Log.Error("oauth endpoint failed", "path", c.Path(), "err", err)
			}
			oe = oauthErr(http.StatusInternalServerError, "server_error", "Internal error")
		}
	}
	hd := c.Response().Header()
	hd.Set("Cache-Control", "no-store")
	if oe.Status == http.StatusUnauthorized {
		hd.Set("WWW-Authenticate", `Basic realm="myelin"`)
	}
	if oe.RetryAfter > 0 {
		hd.Set("Retry-After", strconv.Itoa(int(oe.RetryAfter.Seconds()+0.999)))
	}
	return c.JSON(oe.Status, map[string]string{"error": oe.Code, "error_description": oe.Description})
}

func noStore(c echo.Context) {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
}

// form parses an application/x-www-form-urlencoded body.
func form(c echo.Context) (map[string][]string, error) {
	ct := c.Request().Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return nil, invalidRequest("the body must be application/x-www-form-urlencoded")
	}
	if err := c.Request().ParseForm(); err != nil {
		return nil, invalidRequest("malformed form body")
	}
	for k, v := range c.Request().PostForm {
		if len(v) > 1 {
			// RFC 6749 §3.1: parameters must not be repeated.
			return nil, invalidRequest("parameter " + k + " is repeated")
		}
	}
	return c.Request().PostForm, nil
}

func (h *Handler) discovery(c echo.Context) error {
	return c.JSON(http.StatusOK, h.OAuth.Discovery())
}

func (h *Handler) keys(c echo.Context) error {
	ks, err := h.OAuth.JWKS(c.Request().Context())
	if err != nil {
		return h.writeError(c, err)
	}
	return c.JSON(http.StatusOK, ks)
}

func (h *Handler) register(c echo.Context) error {
	if err := h.OAuth.allow(c.RealIP()); err != nil {
		return h.writeError(c, err)
	}
	var raw map[string]any
	if err := (&echo.DefaultBinder{}).BindBody(c, &raw); err != nil || raw == nil {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": "the body must be a JSON object"})
	}
	client, err := h.OAuth.Register(c.Request().Context(), raw)
	var re *RegistrationError
	if errors.As(err, &re) {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": re.Code, "error_description": re.Description})
	}
	if err != nil {
		return h.writeError(c, err)
	}
	noStore(c)
	return c.JSON(http.StatusCreated, client)
}

func (h *Handler) token(c echo.Context) error {
	f, err := form(c)
	if err != nil {
		return h.writeError(c, err)
	}
	out, err := h.OAuth.Token(c.Request().Context(), f, auth.ClientIP(c.Request().Context()))
	if err != nil {
		return h.writeError(c, err)
	}
	noStore(c)
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) revoke(c echo.Context) error {
	f, err := form(c)
	if err != nil {
		return h.writeError(c, err)
	}
	if hint := f["token_type_hint"]; len(hint) == 1 && hint[0] != "access_token" && hint[0] != "refresh_token" {
		return h.writeError(c, oauthErr(http.StatusBadRequest, "unsupported_token_type", "token_type_hint must be access_token or refresh_token"))
	}
	var tok string
	if v := f["token"]; len(v) == 1 {
		tok = v[0]
	}
	if err := h.OAuth.Revoke(c.Request().Context(), tok, auth.ClientIP(c.Request().Context())); err != nil {
		return h.writeError(c, err)
	}
	noStore(c)
	return c.JSON(http.StatusOK, map[string]any{})
}

func (h *Handler) introspect(c echo.Context) error {
	f, err := form(c)
	if err != nil {
		return h.writeError(c, err)
	}
	get := func(k string) string {
		if v := f[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	id, secret, basic := c.Request().BasicAuth()
	if !basic {
		id, secret = get("client_id"), get("client_secret")
	}
	ip := auth.ClientIP(c.Request().Context())
	if err := h.OAuth.allow(ip); err != nil {
		return h.writeError(c, err)
	}
	if err := h.OAuth.AuthenticateIntrospector(id, secret); err != nil {
		return h.writeError(c, err)
	}
	out, err := h.OAuth.Introspect(c.Request().Context(), get("token"))
	if err != nil {
		return h.writeError(c, err)
	}
	noStore(c)
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) device(c echo.Context) error {
	f, err := form(c)
	if err != nil {
		return h.writeError(c, err)
	}
	out, err := h.OAuth.AuthorizeDevice(c.Request().Context(), f, auth.ClientIP(c.Request().Context()))
	if err != nil {
		return h.writeError(c, err)
	}
	noStore(c)
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) userinfo(c echo.Context) error {
	tok := ""
	if a := c.Request().Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		tok = strings.TrimSpace(a[7:])
	}
	if tok == "" {
		c.Response().Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return c.JSON(http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "a bearer token is required"})
	}
	p, err := h.Auth.Authenticate(c.Request().Context(), tok)
	if err != nil {
		c.Response().Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return c.JSON(http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "unknown or expired token"})
	}
	return c.JSON(http.StatusOK, h.OAuth.Userinfo(p))
}

// MountDisabled answers the protocol endpoints with 404 M_UNRECOGNIZED
// when the OAuth 2.0 API is off (--auth legacy), as auth_metadata does,
// rather than leaving them to the pages' CSRF check.
func MountDisabled(e *echo.Echo) {
	off := func(echo.Context) error {
		return matrixerr.Unrecognized(http.StatusNotFound, "This server does not support the OAuth 2.0 API")
	}
	for _, p := range []string{PathRegister, PathToken, PathRevoke, PathIntrospect, PathDevice} {
		e.POST(p, off)
	}
	for _, p := range []string{PathDiscovery, PathKeys, PathUnstableMetadata, PathUnstableIssuer, PathUserinfo, web.Prefix + "/oauth2/authorize"} {
		e.GET(p, off)
	}
}
