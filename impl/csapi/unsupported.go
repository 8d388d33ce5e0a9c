package csapi

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// Room account data: Myelin holds no rooms, so there is none to read and
// none may be stored.
func (s *Server) GetAccountDataPerRoom(ctx context.Context, _ clientapi.GetAccountDataPerRoomRequestObject) (clientapi.GetAccountDataPerRoomResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	return nil, matrixerr.New(http.StatusNotFound, "M_NOT_FOUND", "No room account data: this server holds no rooms")
}

func (s *Server) SetAccountDataPerRoom(ctx context.Context, _ clientapi.SetAccountDataPerRoomRequestObject) (clientapi.SetAccountDataPerRoomResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	return nil, matrixerr.New(http.StatusForbidden, "M_FORBIDDEN", "Room account data cannot be stored: this server holds no rooms")
}

// GetAuthMetadata: the OAuth 2.0 API is optional, and a server without it
// answers 404 M_UNRECOGNIZED, as the spec says, so that clients use the
// legacy authentication API.
func (s *Server) GetAuthMetadata(context.Context, clientapi.GetAuthMetadataRequestObject) (clientapi.GetAuthMetadataResponseObject, error) {
	return nil, matrixerr.Unrecognized(http.StatusNotFound, "This server does not support the OAuth 2.0 API")
}
