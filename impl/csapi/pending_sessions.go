package csapi

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

// Operations of refresh tokens, login tokens, account moderation and 3PID listing (issue 15) that are not served yet: each answers 501
// M_UNRECOGNIZED and is marked not served in the coverage table
// (coverage.go), so /versions does not claim the versions that need them.

func (s *Server) GetAdminLockUser(context.Context, clientapi.GetAdminLockUserRequestObject) (clientapi.GetAdminLockUserResponseObject, error) {
	return nil, notYet("getAdminLockUser")
}

func (s *Server) SetAdminLockUser(context.Context, clientapi.SetAdminLockUserRequestObject) (clientapi.SetAdminLockUserResponseObject, error) {
	return nil, notYet("setAdminLockUser")
}

func (s *Server) GetAdminSuspendUser(context.Context, clientapi.GetAdminSuspendUserRequestObject) (clientapi.GetAdminSuspendUserResponseObject, error) {
	return nil, notYet("getAdminSuspendUser")
}

func (s *Server) SetAdminSuspendUser(context.Context, clientapi.SetAdminSuspendUserRequestObject) (clientapi.SetAdminSuspendUserResponseObject, error) {
	return nil, notYet("setAdminSuspendUser")
}

func (s *Server) GenerateLoginToken(context.Context, clientapi.GenerateLoginTokenRequestObject) (clientapi.GenerateLoginTokenResponseObject, error) {
	return nil, notYet("generateLoginToken")
}

func (s *Server) RegistrationTokenValidity(context.Context, clientapi.RegistrationTokenValidityRequestObject) (clientapi.RegistrationTokenValidityResponseObject, error) {
	return nil, notYet("registrationTokenValidity")
}

func (s *Server) GetAccount3PIDs(context.Context, clientapi.GetAccount3PIDsRequestObject) (clientapi.GetAccount3PIDsResponseObject, error) {
	return nil, notYet("getAccount3PIDs")
}

func (s *Server) Delete3pidFromAccount(context.Context, clientapi.Delete3pidFromAccountRequestObject) (clientapi.Delete3pidFromAccountResponseObject, error) {
	return nil, notYet("delete3pidFromAccount")
}

func (s *Server) GetWhoIs(context.Context, clientapi.GetWhoIsRequestObject) (clientapi.GetWhoIsResponseObject, error) {
	return nil, notYet("getWhoIs")
}

func (s *Server) Refresh(context.Context, clientapi.RefreshRequestObject) (clientapi.RefreshResponseObject, error) {
	return nil, notYet("refresh")
}
