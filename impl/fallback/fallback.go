// Package fallback serves the HTML fallback pages of the client-server API,
// for clients that cannot render an authentication stage or a login form
// themselves:
//
//   - GET  /_matrix/client/{r0,v3}/auth/{stage}/fallback/web?session=…
//     shows a form for one user-interactive auth stage; its POST completes
//     the stage in the session, and the page then calls
//     window.onAuthDone() and posts "authDone" to its opener, as the spec
//     asks. The client then retries its request with only the session.
//   - GET  /_matrix/static/client/login/ is a login form that calls
//     POST /_matrix/client/v3/login and then window.onLogin(response).
//
// The pages are rendered with html/template (contextual escaping), carry a
// strict Content-Security-Policy, and never reveal whether an account exists.
package fallback

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/uia"
)

// Stages completes one stage of an existing UIA session outside the
// request that needs it (the engine implements it).
type Stages interface {
	CompleteStage(ctx context.Context, sessionID, stage string, auth map[string]any) error
}

// Handler serves the fallback pages.
type Handler struct {
	Stages Stages
	// Limits rate-limits stage attempts per client IP like the other
	// credential endpoints (nil: no limits).
	Limits *ratelimit.Limiter
	// ServerName is shown on the pages.
	ServerName string
}

//go:embed stage.html
var stageHTML string

//go:embed login.html
var loginHTML string

var stagePage = template.Must(template.New("stage").Parse(stageHTML))

// stageForms are the stages a fallback page can complete, with the form
// field each needs ("" for none).
var stageForms = map[string]string{
	uia.StageDummy:             "",
	uia.StagePassword:          "password",
	uia.StageRegistrationToken: "token",
}

// Register adds the routes. The client-server r0 prefix is rewritten to v3
// before routing, so both are served.
func (h *Handler) Register(e *echo.Echo) {
	e.GET("/_matrix/client/v3/auth/:stage/fallback/web", h.stage)
	e.POST("/_matrix/client/v3/auth/:stage/fallback/web", h.stage)
	e.GET("/_matrix/static/client/login/", h.login)
	e.GET("/_matrix/static/client/login", func(c echo.Context) error {
		return c.Redirect(http.StatusFound, "/_matrix/static/client/login/")
	})
}

type stageData struct {
	Stage, Session, Field, Error, ServerName string
	Done                                     bool
}

// pageHeaders forbids everything but the page's own inline script and
// style and form posts to itself.
func pageHeaders(c echo.Context) {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

func (h *Handler) stage(c echo.Context) error {
	stage := c.Param("stage")
	field, ok := stageForms[stage]
	if !ok {
		return matrixerr.NotFound("No fallback page for stage " + stage)
	}
	session := c.QueryParam("session")
	if c.Request().Method == http.MethodPost {
		session = c.FormValue("session")
	}
	if session == "" {
		return matrixerr.MissingParam("Missing query parameter: session")
	}
	d := stageData{Stage: stage, Session: session, Field: field, ServerName: h.ServerName}
	status := http.StatusOK
	if c.Request().Method == http.MethodPost {
		if err := h.Limits.Allow(c.RealIP(), ""); err != nil {
			return err
		}
		auth := map[string]any{"type": stage, "session": session}
		if field != "" {
			auth[field] = c.FormValue(field)
		}
		err := h.Stages.CompleteStage(c.Request().Context(), session, stage, auth)
		me, isMatrix := matrixerr.As(err)
		switch {
		case err == nil:
			d.Done = true
		case isMatrix && me.Status < 500:
			// Show the message; a wrong password keeps the form.
			d.Error, status = me.Message, me.Status
		default:
			return err
		}
	}
	pageHeaders(c)
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(status)
	return stagePage.Execute(c.Response(), d)
}

func (h *Handler) login(c echo.Context) error {
	pageHeaders(c)
	return c.HTML(http.StatusOK, loginHTML)
}
