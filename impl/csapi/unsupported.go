package csapi

import (
	"context"
	"encoding/json"
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
	// The spec's fields (oauth.Metadata) and the OpenID pieces clients
	// validate the metadata with (matrix-js-sdk fetches jwks_uri).
	return authMetadata(s.OAuth.Discovery()), nil
}

// authMetadata answers the metadata as a JSON object: the generated type
// has only the fields the spec lists.
type authMetadata map[string]any

func (m authMetadata) VisitGetAuthMetadataResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(map[string]any(m))
}
