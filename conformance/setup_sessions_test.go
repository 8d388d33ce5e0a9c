package conformance

// States of the examples of refresh tokens, login tokens, account
// moderation and 3PIDs (issue 15).

import (
	"context"
	"fmt"
	"net/http"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func init() {
	// The admin examples are about @peter:rabbit.rocks; the caller is a
	// server admin of rabbit.rocks.
	admin := state{ServerName: "rabbit.rocks", Account: "admin", Prepare: adminAndPeter}
	notAdmin := state{Status: http.StatusForbidden, Why: "the caller is not a server admin", ServerName: "rabbit.rocks", Account: "alice"}
	noPeter := state{Status: http.StatusNotFound, Why: "there is no such account", ServerName: "rabbit.rocks", Account: "admin", Prepare: makeAdmin}
	for _, op := range []string{"GetAdminLockUser", "SetAdminLockUser", "GetAdminSuspendUser", "SetAdminSuspendUser"} {
		states[op] = []state{admin, notAdmin, noPeter}
	}
	whois := admin
	whois.Absent = map[string]string{
		"devices.teapot.sessions[0].connections[0].user_agent": "Myelin records no user agents",
		"devices.teapot.sessions[0].connections[1]":            "one connection a device: Myelin keeps where each device was last seen",
	}
	states["GetWhoIs"] = []state{whois}
	states["Refresh"] = []state{
		{Account: "alice", Prepare: realRefreshToken},
		{Status: http.StatusUnauthorized, Why: "the refresh token is unknown"},
	}
	states["GenerateLoginToken"] = []state{
		{Account: "alice", Config: func(c *config.Config) { c.GetLoginToken = true }},
	}
	states["GetAccount3PIDs"] = []state{{Account: "alice", Prepare: bindEmail}}
	states["Delete3pidFromAccount"] = []state{{Account: "alice", Prepare: bindEmail}}
	states["RegistrationTokenValidity"] = []state{
		{Config: func(c *config.Config) { c.Registration = config.RegistrationToken }},
		{Status: http.StatusForbidden, Why: "registration is disabled", Config: func(c *config.Config) {
			c.Registration = config.RegistrationDisabled
		}},
	}
}

// makeAdmin makes the state's account a server admin (as `myelin user
// admin USER on` does).
func makeAdmin(e *env, _ map[string]any) error {
	return e.srv.App.Services.Sessions.SetFlag(context.Background(), e.userID(), sessions.FlagAdmin, true)
}

// adminAndPeter makes the account an admin and creates @peter with a
// device "teapot" that has been seen.
func adminAndPeter(e *env, body map[string]any) error {
	if err := makeAdmin(e, body); err != nil {
		return err
	}
	testenv.CreateUser(e.t, e.srv, "peter", "peter's password")
	testenv.Login(e.t, e.srv, "@peter:"+e.srv.Config.ServerName, "teapot")
	return nil
}

// realRefreshToken logs the account in with refresh_token: true and puts
// the refresh token it got in place of the example's.
func realRefreshToken(e *env, body map[string]any) error {
	r, err := e.call("Login", "POST", "/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "password": e.st.password(), "refresh_token": true,
		"identifier": map[string]any{"type": "m.id.user", "user": e.st.Account}}, http.StatusOK)
	if err != nil {
		return err
	}
	if r.Str("refresh_token") == "" {
		return fmt.Errorf("login with refresh_token: true gave no refresh token: %s", r.Raw)
	}
	body["refresh_token"] = r.Str("refresh_token")
	return nil
}

// bindEmail binds the example's address to the account (as `myelin user
// threepid add` does).
func bindEmail(e *env, _ map[string]any) error {
	return e.srv.App.Services.Accounts.AddThreePID(context.Background(), e.userID(), "email", "example@example.org")
}

// askForRefreshToken: the login example answers with a refresh token,
// which a server gives only to a client that asks for one.
func askForRefreshToken(_ *env, body map[string]any) error {
	body["refresh_token"] = true
	return nil
}
