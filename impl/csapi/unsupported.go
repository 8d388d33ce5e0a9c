package csapi

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// GetAuthMetadata: the OAuth 2.0 API is optional, and a server without it
// answers 404 M_UNRECOGNIZED, as the spec says, so that clients use the
// legacy authentication API.
func (s *Server) GetAuthMetadata(context.Context, clientapi.GetAuthMetadataRequestObject) (clientapi.GetAuthMetadataResponseObject, error) {
	return nil, matrixerr.Unrecognized(http.StatusNotFound, "This server does not support the OAuth 2.0 API")
}
