package app

import (
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/appservice"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/sessions"
)

// authenticateAppService authenticates a request made with the as_token of
// reg: identity assertion of ?user_id= (default: the sender) and, v1.17,
// ?device_id=. Appservice requests bypass the token cache (the token is
// checked against the loaded registrations) and record no last-seen.
func (a *App) authenticateAppService(c echo.Context, reg *appservice.Registration) error {
	r := c.Request()
	q := r.URL.Query()
	p, err := appservice.Assert(r.Context(), a.Store, reg, q.Get("user_id"), q.Get("device_id"))
	if err != nil {
		return err
	}
	if err := sessions.Gate(p, isLogout(c.Path())); err != nil {
		return err
	}
	c.SetRequest(r.WithContext(auth.WithPrincipal(r.Context(), p)))
	return nil
}

// requestToken hands the presented access token to the operations that
// take an as_token without requiring authentication (POST /register and
// /login with m.login.application_service).
func requestToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if tok := AccessToken(r); tok != "" {
			c.SetRequest(r.WithContext(appservice.WithRequestToken(r.Context(), tok)))
		}
		return next(c)
	}
}

// ReloadAppServices reads the application services' registration files
// again (on SIGHUP). On an error the loaded registrations stay.
func (a *App) ReloadAppServices() error {
	if err := a.Services.AppServices.Reload(); err != nil {
		return err
	}
	a.Log.Info("application services reloaded", "count", len(a.Services.AppServices.All()))
	return nil
}
