package csapi

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// GetAuthMetadata answers the OAuth 2.0 server metadata (impl/oauth);
// with --auth legacy, 404 M_UNRECOGNIZED, as the spec says a server
// without the OAuth 2.0 API answers, so that clients use the legacy API.
func (s *Server) GetAuthMetadata(context.Context, clientapi.GetAuthMetadataRequestObject) (clientapi.GetAuthMetadataResponseObject, error) {
	if s.OAuth == nil {
		return nil, matrixerr.Unrecognized(http.StatusNotFound, "This server does not support the OAuth 2.0 API")
	}
	m := s.OAuth.Metadata()
	actions := make([]clientapi.GetAuthMetadata200JSONResponseBodyAccountManagementActionsSupported, len(m.AccountManagementActionsSupported))
	for i, a := range m.AccountManagementActionsSupported {
		actions[i] = clientapi.GetAuthMetadata200JSONResponseBodyAccountManagementActionsSupported(a)
	}
	return clientapi.GetAuthMetadata200JSONResponse{
		Issuer: m.Issuer, AuthorizationEndpoint: m.AuthorizationEndpoint, TokenEndpoint: m.TokenEndpoint,
		RevocationEndpoint: m.RevocationEndpoint, RegistrationEndpoint: m.RegistrationEndpoint,
		DeviceAuthorizationEndpoint: &m.DeviceAuthorizationEndpoint,
		ResponseTypesSupported:      m.ResponseTypesSupported, GrantTypesSupported: m.GrantTypesSupported,
		ResponseModesSupported: m.ResponseModesSupported, CodeChallengeMethodsSupported: m.CodeChallengeMethodsSupported,
		PromptValuesSupported: &m.PromptValuesSupported, AccountManagementUri: &m.AccountManagementURI,
		AccountManagementActionsSupported: &actions,
	}, nil
}
