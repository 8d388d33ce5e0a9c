package web

import (
	"net/http"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// genericSignInError is the one answer to an unknown user and a wrong
// password.
const genericSignInError = "Invalid username or password."

type signInData struct {
	Next, Username, Error string
}

func renderSignIn(c echo.Context, status int, d signInData) error {
	return Render(c, status, Page{Title: "Sign in"}, func(p Page) templ.Component { return signInPage(p, d) })
}

func (s *Site) signInPage(c echo.Context) error {
	next := SafeNext(c.QueryParam("next"))
	if _, ok := s.Sessions.Current(c); ok && next != "" {
		return c.Redirect(http.StatusSeeOther, next)
	}
	return renderSignIn(c, http.StatusOK, signInData{Next: next})
}

func (s *Site) signIn(c echo.Context) error {
	next := SafeNext(c.FormValue("next"))
	user, password := c.FormValue("username"), c.FormValue("password")
	d := signInData{Next: next, Username: user}
	if user == "" || password == "" {
		d.Error = "Enter your username and password."
		return renderSignIn(c, http.StatusBadRequest, d)
	}
	uid, err := s.Passwords.CheckSignIn(c.Request().Context(), user, password, c.RealIP())
	if err != nil {
		me, ok := matrixerr.As(err)
		if !ok || me.Status >= 500 {
			return err
		}
		status := http.StatusUnauthorized
		switch me.Code {
		case "M_LIMIT_EXCEEDED":
			status, d.Error = http.StatusTooManyRequests, "Too many attempts. Please wait a moment and try again."
		case "M_USER_DEACTIVATED":
			// Told only to who knows the password, as /login does.
			d.Error = "This account has been deactivated."
		case "M_USER_LOCKED":
			d.Error = "This account has been locked by the server's administrators."
		default:
			d.Error = genericSignInError
		}
		return renderSignIn(c, status, d)
	}
	if err := s.Sessions.SignIn(c, uid); err != nil {
		return err
	}
	if next == "" {
		next = s.AfterSignIn
	}
	return c.Redirect(http.StatusSeeOther, next)
}

func (s *Site) signOut(c echo.Context) error {
	if err := s.Sessions.SignOut(c); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, SignInPath)
}
