package csapi

// Operations whose domain service is still being built answer a clear
// Matrix error (never a panic). Each moves to its own file when built.

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

func notYet(op string) error {
	return matrixerr.Unsupported(op + " is not implemented by this server yet")
}

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
func (s *Server) DeleteDevices(context.Context, clientapi.DeleteDevicesRequestObject) (clientapi.DeleteDevicesResponseObject, error) {
	return nil, notYet("POST /delete_devices")
}
func (s *Server) GetDevices(context.Context, clientapi.GetDevicesRequestObject) (clientapi.GetDevicesResponseObject, error) {
	return nil, notYet("GET /devices")
}
func (s *Server) DeleteDevice(context.Context, clientapi.DeleteDeviceRequestObject) (clientapi.DeleteDeviceResponseObject, error) {
	return nil, notYet("DELETE /devices/{deviceId}")
}
func (s *Server) GetDevice(context.Context, clientapi.GetDeviceRequestObject) (clientapi.GetDeviceResponseObject, error) {
	return nil, notYet("GET /devices/{deviceId}")
}
func (s *Server) UpdateDevice(context.Context, clientapi.UpdateDeviceRequestObject) (clientapi.UpdateDeviceResponseObject, error) {
	return nil, notYet("PUT /devices/{deviceId}")
}
func (s *Server) GetKeysChanges(context.Context, clientapi.GetKeysChangesRequestObject) (clientapi.GetKeysChangesResponseObject, error) {
	return nil, notYet("GET /keys/changes")
}
func (s *Server) ClaimKeys(context.Context, clientapi.ClaimKeysRequestObject) (clientapi.ClaimKeysResponseObject, error) {
	return nil, notYet("POST /keys/claim")
}
func (s *Server) QueryKeys(context.Context, clientapi.QueryKeysRequestObject) (clientapi.QueryKeysResponseObject, error) {
	return nil, notYet("POST /keys/query")
}
func (s *Server) UploadKeys(context.Context, clientapi.UploadKeysRequestObject) (clientapi.UploadKeysResponseObject, error) {
	return nil, notYet("POST /keys/upload")
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
