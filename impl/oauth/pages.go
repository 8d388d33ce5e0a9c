package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/web"
)

// Paths of the pages (under web.Prefix).
const (
	PathRegisterPage = web.Prefix + "/register"
	pathLinkDecide   = PathLink + "/decide"
)

// Registrar creates accounts from the registration page (prompt=create);
// accounts.Service is one.
type Registrar interface {
	RegisterInBrowser(ctx context.Context, username, password, regToken, ip string) (string, error)
}

// Pages are the browser pages of the authorisation server: consent for
// the authorisation code grant, the device-code entry of the device grant
// and the registration page of prompt=create. They run on impl/web
// (sessions, CSRF on every form, security headers).
type Pages struct {
	OAuth    *Service
	Accounts Registrar
	// RegistrationMode is config.Registration (disabled, open, token).
	RegistrationMode string
}

// Mount registers the pages (a mount function of web.Site.Mount).
func (p *Pages) Mount(g *echo.Group, s *web.Site) {
	g.GET("/oauth2/authorize", p.authorize)
	g.POST("/oauth2/authorize", p.consent, s.Sessions.RequireSignIn)
	g.GET("/link", p.link, s.Sessions.RequireSignIn)
	g.POST("/link", p.linkCode, s.Sessions.RequireSignIn)
	g.POST("/link/decide", p.linkDecide, s.Sessions.RequireSignIn)
	g.GET("/register", p.registerPage)
	g.POST("/register", p.register)
}

func site(c echo.Context) *web.Site { s, _ := c.Get("web.site").(*web.Site); return s }

func currentUser(c echo.Context) (string, bool) {
	s := site(c)
	if s == nil {
		return "", false
	}
	return s.Sessions.Current(c)
}

// consentData is what consent.html shows.
type consentData struct {
	Name, URI, Logo, TOS, Policy, Redirect, Action string
	Scopes                                         []string
	Hidden                                         url.Values
}

// describeScope says in words what a scope grants.
func describeScope(sc Scope) []string {
	out := []string{"Use your account: read and send messages, and manage your devices and encryption keys (full access to the client-server API)."}
	out = append(out, "Sign in as the device "+sc.DeviceID+".")
	if sc.OpenID {
		out = append(out, "Know your Matrix ID.")
	}
	return out
}

func (p *Pages) renderConsent(c echo.Context, client *Client, scope Scope, redirect, action string, hidden url.Values) error {
	lang := c.Request().Header.Get("Accept-Language")
	d := consentData{Name: client.Name(lang), URI: client.ClientURI, Logo: client.Logo(lang), TOS: client.TOS(lang),
		Policy: client.Policy(lang), Redirect: redirect, Action: action, Scopes: describeScope(scope), Hidden: hidden}
	web.AllowFormTarget(c, redirect)
	web.AllowImage(c, d.Logo)
	return web.Render(c, http.StatusOK, web.Page{Title: "Allow access"}, func(pg web.Page) templ.Component { return consentPage(pg, d) })
}

// checked runs CheckAuthorization and answers its failures: an error page
// when the client or redirect cannot be trusted, else a redirect to the
// client with the error.
func (p *Pages) checked(c echo.Context, r AuthRequest) (*Authorization, bool, error) {
	a, err := p.OAuth.CheckAuthorization(c.Request().Context(), r)
	var pe *PageError
	var re *RedirectError
	switch {
	case errors.As(err, &pe):
		return nil, false, web.Error(c, http.StatusBadRequest, pe.Description)
	case errors.As(err, &re):
		return nil, false, c.Redirect(http.StatusSeeOther, re.URL)
	case err != nil:
		return nil, false, err
	}
	return a, true, nil
}

func (p *Pages) authorize(c echo.Context) error {
	a, ok, err := p.checked(c, FromQuery(c.QueryParams()))
	if !ok {
		return err
	}
	if _, signedIn := currentUser(c); !signedIn {
		here := c.Request().URL.RequestURI()
		if a.Create {
			return c.Redirect(http.StatusSeeOther, PathRegisterPage+"?next="+url.QueryEscape(here))
		}
		return c.Redirect(http.StatusSeeOther, web.SignInPath+"?next="+url.QueryEscape(here))
	}
	return p.renderConsent(c, a.Client, a.Scope, a.Request.RedirectURI, web.Prefix+"/oauth2/authorize", a.Request.Values())
}

func (p *Pages) consent(c echo.Context) error {
	form, err := c.FormParams()
	if err != nil {
		return web.Error(c, http.StatusBadRequest, "Malformed form")
	}
	a, ok, err := p.checked(c, FromQuery(form))
	if !ok {
		return err
	}
	if form.Get("decision") != "allow" {
		return c.Redirect(http.StatusSeeOther, a.Deny())
	}
	uid, _ := currentUser(c)
	to, err := p.OAuth.Grant(c.Request().Context(), a, uid)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, to)
}

type linkData struct{ Code, Error string }

func renderLink(c echo.Context, status int, d linkData) error {
	return web.Render(c, status, web.Page{Title: "Connect a device"}, func(pg web.Page) templ.Component { return linkPage(pg, d) })
}

func renderMessage(c echo.Context, title, msg string) error {
	return web.Render(c, http.StatusOK, web.Page{Title: title}, func(pg web.Page) templ.Component { return messagePage(pg, msg) })
}

func renderRegister(c echo.Context, status int, d registerData) error {
	return web.Render(c, status, web.Page{Title: "Create an account"}, func(pg web.Page) templ.Component { return registerPage(pg, d) })
}

func (p *Pages) link(c echo.Context) error {
	code := c.QueryParam("user_code")
	if code != "" {
		return p.showDevice(c, code)
	}
	return renderLink(c, http.StatusOK, linkData{})
}

func (p *Pages) linkCode(c echo.Context) error {
	return p.showDevice(c, c.FormValue("user_code"))
}

// showDevice shows the consent for a user code's pending device grant.
// Every look-up of a code counts against the user's and the address's
// rate limits, which bounds guessing.
func (p *Pages) showDevice(c echo.Context, code string) error {
	uid, _ := currentUser(c)
	if err := p.OAuth.Limits.Allow(c.RealIP(), "user_code:"+uid); err != nil {
		return renderLink(c, http.StatusTooManyRequests, linkData{Code: code, Error: "Too many attempts. Please wait a moment and try again."})
	}
	pd, err := p.OAuth.LookupUserCode(c.Request().Context(), code)
	if errors.Is(err, ErrUnknownUserCode) {
		return renderLink(c, http.StatusBadRequest, linkData{Code: code, Error: "This code is unknown or has expired. Check the code on your device."})
	}
	if err != nil {
		return err
	}
	return p.renderConsent(c, pd.Client, pd.Scope, "", pathLinkDecide, url.Values{"user_code": {pd.UserCode}})
}

func (p *Pages) linkDecide(c echo.Context) error {
	uid, _ := currentUser(c)
	approve := c.FormValue("decision") == "allow"
	err := p.OAuth.DecideDevice(c.Request().Context(), c.FormValue("user_code"), uid, approve)
	if errors.Is(err, ErrUnknownUserCode) {
		return renderLink(c, http.StatusBadRequest, linkData{Error: "This code is unknown or has expired. Check the code on your device."})
	}
	if err != nil {
		return err
	}
	if !approve {
		return renderMessage(c, "Request declined", "The device was not given access. You can close this page.")
	}
	return renderMessage(c, "Device connected", "The device is signed in to your account. You can close this page and continue on the device.")
}

type registerData struct {
	Next, Username, Token, Error, SignIn string
	Disabled, NeedToken                  bool
}

func (p *Pages) registerData(next string) registerData {
	signIn := web.SignInPath
	if next != "" {
		signIn += "?next=" + url.QueryEscape(next)
	}
	return registerData{Next: next, SignIn: signIn, Disabled: p.RegistrationMode != "open" && p.RegistrationMode != "token",
		NeedToken: p.RegistrationMode == "token"}
}

func (p *Pages) registerPage(c echo.Context) error {
	d := p.registerData(web.SafeNext(c.QueryParam("next")))
	d.Token = c.QueryParam("token")
	return renderRegister(c, http.StatusOK, d)
}

func (p *Pages) register(c echo.Context) error {
	d := p.registerData(web.SafeNext(c.FormValue("next")))
	if d.Disabled {
		return renderRegister(c, http.StatusForbidden, d)
	}
	d.Username, d.Token = c.FormValue("username"), c.FormValue("token")
	fail := func(status int, msg string) error {
		d.Error = msg
		return renderRegister(c, status, d)
	}
	pw := c.FormValue("password")
	if d.Username == "" || pw == "" {
		return fail(http.StatusBadRequest, "Choose a username and a password.")
	}
	if pw != c.FormValue("password2") {
		return fail(http.StatusBadRequest, "The two passwords differ.")
	}
	uid, err := p.Accounts.RegisterInBrowser(c.Request().Context(), d.Username, pw, d.Token, c.RealIP())
	if err != nil {
		me, ok := matrixerr.As(err)
		if !ok || me.Status >= 500 {
			return err
		}
		msg := me.Message
		switch me.Code {
		case "M_LIMIT_EXCEEDED":
			msg = "Too many attempts. Please wait a moment and try again."
		case "M_USER_IN_USE":
			msg = "This username is taken. Choose another."
		}
		return fail(me.Status, msg)
	}
	if err := site(c).Sessions.SignIn(c, uid); err != nil {
		return err
	}
	next := d.Next
	if next == "" {
		next = web.AccountPath
	}
	return c.Redirect(http.StatusSeeOther, next)
}
