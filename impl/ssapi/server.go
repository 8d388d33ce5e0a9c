// Package ssapi is the server-server HTTP adapter: it implements the
// generated fedapi.StrictServerInterface over the federation services.
package ssapi

import (
	"context"

	"github.com/myelin-hs/myelin/gen/fedapi"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// Server implements every server-server operation of the vendored spec.
type Server struct{}

var _ fedapi.StrictServerInterface = (*Server)(nil)

func notYet(op string) error {
	return matrixerr.Unsupported(op + " is not implemented by this server yet")
}

func (s *Server) GetServerKeys(context.Context, fedapi.GetServerKeysRequestObject) (fedapi.GetServerKeysResponseObject, error) {
	return nil, notYet("GET /_matrix/key/v2/server")
}
func (s *Server) GetServerKey(context.Context, fedapi.GetServerKeyRequestObject) (fedapi.GetServerKeyResponseObject, error) {
	return nil, notYet("GET /_matrix/key/v2/server/{keyId}")
}
func (s *Server) SendTransaction(context.Context, fedapi.SendTransactionRequestObject) (fedapi.SendTransactionResponseObject, error) {
	return nil, notYet("PUT /send/{txnId}")
}
func (s *Server) GetUserDevices(context.Context, fedapi.GetUserDevicesRequestObject) (fedapi.GetUserDevicesResponseObject, error) {
	return nil, notYet("GET /user/devices/{userId}")
}
func (s *Server) ClaimUserEncryptionKeys(context.Context, fedapi.ClaimUserEncryptionKeysRequestObject) (fedapi.ClaimUserEncryptionKeysResponseObject, error) {
	return nil, notYet("POST /user/keys/claim")
}
func (s *Server) QueryUserEncryptionKeys(context.Context, fedapi.QueryUserEncryptionKeysRequestObject) (fedapi.QueryUserEncryptionKeysResponseObject, error) {
	return nil, notYet("POST /user/keys/query")
}
