package csapi

// Account operations: registration, login, logout, password, deactivation.
// Each translates the generated types to an accounts.Service call.

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/accounts"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// errLegacyOff answers the legacy login API when --auth is oauth: the
// spec's answer for an authentication API a server does not offer.
func errLegacyOff() error {
	return matrixerr.Unrecognized(http.StatusNotFound, "This server offers the OAuth 2.0 API only (see GET /_matrix/client/v1/auth_metadata)")
}

// errAppServiceLoginUnsupported answers an application service's login
// (or registration without inhibit_login) when the legacy API is off.
func errAppServiceLoginUnsupported() error {
	return matrixerr.New(http.StatusBadRequest, "M_APPSERVICE_LOGIN_UNSUPPORTED", "This server offers the OAuth 2.0 API only: application services cannot log in")
}

func (s *Server) Register(ctx context.Context, req clientapi.RegisterRequestObject) (clientapi.RegisterResponseObject, error) {
	body := req.Body
	if body == nil {
		body = &clientapi.RegisterJSONRequestBody{}
	}
	r := accounts.RegisterRequest{
		Guest:                    req.Params.Kind != nil && *req.Params.Kind == "guest",
		Username:                 body.Username,
		Password:                 body.Password,
		DeviceID:                 body.DeviceId,
		InitialDeviceDisplayName: body.InitialDeviceDisplayName,
		InhibitLogin:             body.InhibitLogin != nil && *body.InhibitLogin,
		RefreshToken:             body.RefreshToken != nil && *body.RefreshToken,
		IP:                       auth.ClientIP(ctx),
	}
	if isAppServiceRegistration(ctx, req.Body) {
		// Application services register users whichever API is offered
		// (v1.17), but log in through the legacy one only.
		if !s.Config.LegacyAuth() && !r.InhibitLogin {
			return nil, errAppServiceLoginUnsupported()
		}
		return s.registerAppService(ctx, r)
	}
	if !s.Config.LegacyAuth() {
		// Accounts are created in the browser (prompt=create).
		return nil, matrixerr.Forbidden("Registration is done through the OAuth 2.0 API (the browser), not this endpoint")
	}
	var err error
	if body.Auth != nil {
		if r.Auth, err = authDict(body.Auth); err != nil {
			return nil, err
		}
	}
	res, err := s.Accounts.Register(ctx, r)
	if err != nil {
		return nil, err
	}
	return clientapi.Register200JSONResponse{UserId: res.UserID, AccessToken: optional(res.AccessToken),
		DeviceId: optional(res.DeviceID), HomeServer: optional(res.HomeServer),
		RefreshToken: optional(res.RefreshToken), ExpiresInMs: expiresIn(res.ExpiresInMS)}, nil
}

func (s *Server) CheckUsernameAvailability(ctx context.Context, req clientapi.CheckUsernameAvailabilityRequestObject) (clientapi.CheckUsernameAvailabilityResponseObject, error) {
	if err := s.Accounts.UsernameAvailable(ctx, req.Params.Username, auth.ClientIP(ctx)); err != nil {
		return nil, err
	}
	available := true
	return clientapi.CheckUsernameAvailability200JSONResponse{Available: &available}, nil
}

// expiresIn is expires_in_ms: absent when the access token never expires.
func expiresIn(ms int64) *int {
	if ms == 0 {
		return nil
	}
	v := int(ms)
	return &v
}

func (s *Server) GetLoginFlows(context.Context, clientapi.GetLoginFlowsRequestObject) (clientapi.GetLoginFlowsResponseObject, error) {
	if !s.Config.LegacyAuth() {
		return nil, errLegacyOff()
	}
	var flows []loginFlowJSON
	for _, t := range accounts.LoginFlows() {
		f := loginFlowJSON{Type: t}
		if t == accounts.LoginToken && s.Sessions.LoginTokensEnabled(auth.Principal{}) {
			yes := true
			f.GetLoginToken = &yes
		}
		flows = append(flows, f)
	}
	flows = append(flows, s.ssoFlows()...)
	if s.AppServices.Any() {
		flows = append(flows, loginFlowJSON{Type: accounts.LoginAppService})
	}
	return loginFlowsResponse{Flows: flows}, nil
}

func (s *Server) Login(ctx context.Context, req clientapi.LoginRequestObject) (clientapi.LoginResponseObject, error) {
	if !s.Config.LegacyAuth() {
		if req.Body != nil && string(req.Body.Type) == accounts.LoginAppService {
			return nil, errAppServiceLoginUnsupported()
		}
		return nil, errLegacyOff()
	}
	if req.Body == nil {
		return nil, matrixerr.NotJSON("Missing JSON body")
	}
	b := req.Body
	r := accounts.LoginRequest{
		Type: string(b.Type), User: deref(b.User), Medium: deref(b.Medium), Address: deref(b.Address),
		Password: deref(b.Password), Token: deref(b.Token),
		DeviceID: b.DeviceId, InitialDeviceDisplayName: b.InitialDeviceDisplayName,
		RefreshToken: b.RefreshToken != nil && *b.RefreshToken,
		IP:           auth.ClientIP(ctx),
	}
	if b.Identifier != nil {
		// An identifier is a JSON object with additional properties too.
		var err error
		if r.Identifier, err = authDict(b.Identifier); err != nil {
			return nil, err
		}
	}
	if r.Type == accounts.LoginAppService {
		return s.loginAppService(ctx, r)
	}
	res, err := s.Accounts.Login(ctx, r)
	if err != nil {
		return nil, err
	}
	return clientapi.Login200JSONResponse{UserId: res.UserID, AccessToken: res.AccessToken,
		DeviceId: res.DeviceID, HomeServer: &res.HomeServer,
		RefreshToken: optional(res.RefreshToken), ExpiresInMs: expiresIn(res.ExpiresInMS)}, nil
}

func (s *Server) Logout(ctx context.Context, _ clientapi.LogoutRequestObject) (clientapi.LogoutResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Accounts.Logout(ctx, p); err != nil {
		return nil, err
	}
	return clientapi.Logout200JSONResponse{}, nil
}

func (s *Server) LogoutAll(ctx context.Context, _ clientapi.LogoutAllRequestObject) (clientapi.LogoutAllResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Accounts.LogoutAll(ctx, p); err != nil {
		return nil, err
	}
	return clientapi.LogoutAll200JSONResponse{}, nil
}

func (s *Server) ChangePassword(ctx context.Context, req clientapi.ChangePasswordRequestObject) (clientapi.ChangePasswordResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, matrixerr.NotJSON("Missing JSON body")
	}
	r := accounts.ChangePasswordRequest{
		NewPassword:   req.Body.NewPassword,
		LogoutDevices: req.Body.LogoutDevices == nil || *req.Body.LogoutDevices,
		IP:            auth.ClientIP(ctx),
	}
	if req.Body.Auth != nil {
		if r.Auth, err = authDict(req.Body.Auth); err != nil {
			return nil, err
		}
	}
	if err := s.Accounts.ChangePassword(ctx, p, r); err != nil {
		return nil, err
	}
	return clientapi.ChangePassword200JSONResponse{}, nil
}

func (s *Server) DeactivateAccount(ctx context.Context, req clientapi.DeactivateAccountRequestObject) (clientapi.DeactivateAccountResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var dict map[string]any
	if req.Body != nil && req.Body.Auth != nil {
		if dict, err = authDict(req.Body.Auth); err != nil {
			return nil, err
		}
	}
	erase := req.Body != nil && req.Body.Erase != nil && *req.Body.Erase
	if err := s.Accounts.Deactivate(ctx, p, dict, auth.ClientIP(ctx), erase); err != nil {
		return nil, err
	}
	// Myelin binds no 3PID at an identity server, so there is nothing to
	// unbind: the spec asks for "success" then.
	return clientapi.DeactivateAccount200JSONResponse{IdServerUnbindResult: "success"}, nil
}

// 3PID verification needs an email or SMS sender that Myelin does not
// have. The requestToken endpoints answer as Synapse does without email
// configured: 400 M_UNKNOWN, saying so.
func threepidNotConfigured(what string) error {
	return matrixerr.New(http.StatusBadRequest, "M_UNKNOWN",
		what+" has been disabled on this server: 3PID verification is not configured")
}

func (s *Server) RequestTokenToRegisterEmail(context.Context, clientapi.RequestTokenToRegisterEmailRequestObject) (clientapi.RequestTokenToRegisterEmailResponseObject, error) {
	return nil, threepidNotConfigured("Email-based registration")
}

func (s *Server) RequestTokenToRegisterMSISDN(context.Context, clientapi.RequestTokenToRegisterMSISDNRequestObject) (clientapi.RequestTokenToRegisterMSISDNResponseObject, error) {
	return nil, threepidNotConfigured("Registration by phone number")
}

func (s *Server) RequestTokenToResetPasswordEmail(context.Context, clientapi.RequestTokenToResetPasswordEmailRequestObject) (clientapi.RequestTokenToResetPasswordEmailResponseObject, error) {
	return nil, threepidNotConfigured("Password reset by email")
}

func (s *Server) RequestTokenToResetPasswordMSISDN(context.Context, clientapi.RequestTokenToResetPasswordMSISDNRequestObject) (clientapi.RequestTokenToResetPasswordMSISDNResponseObject, error) {
	return nil, threepidNotConfigured("Password reset by phone number")
}
