package csapi

// Operations of this area not built yet: each answers a clear Matrix error
// (never a panic) until it moves to its own file.

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

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
