package csapi

// Operations of this area not built yet: each answers a clear Matrix error
// (never a panic) until it moves to its own file.

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

func (s *Server) DeactivateAccount(context.Context, clientapi.DeactivateAccountRequestObject) (clientapi.DeactivateAccountResponseObject, error) {
	return nil, notYet("POST /account/deactivate")
}
func (s *Server) ChangePassword(context.Context, clientapi.ChangePasswordRequestObject) (clientapi.ChangePasswordResponseObject, error) {
	return nil, notYet("POST /account/password")
}
func (s *Server) RequestTokenToResetPasswordEmail(context.Context, clientapi.RequestTokenToResetPasswordEmailRequestObject) (clientapi.RequestTokenToResetPasswordEmailResponseObject, error) {
	return nil, notYet("requestToken")
}
func (s *Server) RequestTokenToResetPasswordMSISDN(context.Context, clientapi.RequestTokenToResetPasswordMSISDNRequestObject) (clientapi.RequestTokenToResetPasswordMSISDNResponseObject, error) {
	return nil, notYet("requestToken")
}
func (s *Server) GetLoginFlows(context.Context, clientapi.GetLoginFlowsRequestObject) (clientapi.GetLoginFlowsResponseObject, error) {
	return nil, notYet("GET /login")
}
func (s *Server) Login(context.Context, clientapi.LoginRequestObject) (clientapi.LoginResponseObject, error) {
	return nil, notYet("POST /login")
}
func (s *Server) Logout(context.Context, clientapi.LogoutRequestObject) (clientapi.LogoutResponseObject, error) {
	return nil, notYet("POST /logout")
}
func (s *Server) LogoutAll(context.Context, clientapi.LogoutAllRequestObject) (clientapi.LogoutAllResponseObject, error) {
	return nil, notYet("POST /logout/all")
}
func (s *Server) Register(context.Context, clientapi.RegisterRequestObject) (clientapi.RegisterResponseObject, error) {
	return nil, notYet("POST /register")
}
func (s *Server) CheckUsernameAvailability(context.Context, clientapi.CheckUsernameAvailabilityRequestObject) (clientapi.CheckUsernameAvailabilityResponseObject, error) {
	return nil, notYet("GET /register/available")
}
func (s *Server) RequestTokenToRegisterEmail(context.Context, clientapi.RequestTokenToRegisterEmailRequestObject) (clientapi.RequestTokenToRegisterEmailResponseObject, error) {
	return nil, notYet("requestToken")
}
func (s *Server) RequestTokenToRegisterMSISDN(context.Context, clientapi.RequestTokenToRegisterMSISDNRequestObject) (clientapi.RequestTokenToRegisterMSISDNResponseObject, error) {
	return nil, notYet("requestToken")
}
