package ssocompat

import (
	"net/http"
	"strings"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/web"
)

// Pages is the confirmation page (a mount function of web.Site.Mount).
type Pages struct {
	SSO *Service
}

// Mount registers the confirmation page: GET shows it (after sign-in),
// POST (with the page's CSRF token, as every form of impl/web) confirms.
func (p *Pages) Mount(g *echo.Group, s *web.Site) {
	path := strings.TrimPrefix(ConfirmPath, web.Prefix)
	g.GET(path, p.confirmPage, s.Sessions.RequireSignIn)
	g.POST(path, p.confirm, s.Sessions.RequireSignIn)
}

type confirmData struct {
	Target, RedirectURL, Action string
}

func (p *Pages) confirmPage(c echo.Context) error {
	raw := c.QueryParam("redirectUrl")
	u, err := CheckRedirectURL(raw)
	if err != nil {
		return err
	}
	web.AllowFormTarget(c, u.String())
	d := confirmData{Target: Target(u), RedirectURL: raw, Action: ConfirmPath}
	return web.Render(c, http.StatusOK, web.Page{Title: "Continue to " + d.Target}, func(pg web.Page) templ.Component { return confirmPage(pg, d) })
}

func (p *Pages) confirm(c echo.Context) error {
	site, _ := c.Get("web.site").(*web.Site)
	uid, _ := site.Sessions.Current(c)
	to, err := p.SSO.Complete(c.Request().Context(), uid, c.FormValue("redirectUrl"))
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, to)
}
