// Package ssapi is the server-server HTTP adapter: it implements the
// generated fedapi.StrictServerInterface over the federation services.
package ssapi

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/fedapi"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/server"
	"github.com/myelin-hs/myelin/impl/specversions"
)

// Server implements every server-server operation of the vendored spec.
type Server struct {
	Fed *federation.Service
}

var _ fedapi.StrictServerInterface = (*Server)(nil)

// jsonResponse is an answer built outside the generated models (see
// server.WriteJSON); a device without keys has no "keys" member at all.
type jsonResponse struct{ v any }

func (r jsonResponse) write(w http.ResponseWriter) error { return server.WriteJSON(w, r.v) }

func (r jsonResponse) VisitGetServerKeysResponse(w http.ResponseWriter) error { return r.write(w) }
func (r jsonResponse) VisitGetServerKeyResponse(w http.ResponseWriter) error  { return r.write(w) }
func (r jsonResponse) VisitGetUserDevicesResponse(w http.ResponseWriter) error {
	return r.write(w)
}
func (r jsonResponse) VisitQueryUserEncryptionKeysResponse(w http.ResponseWriter) error {
	return r.write(w)
}
func (r jsonResponse) VisitClaimUserEncryptionKeysResponse(w http.ResponseWriter) error {
	return r.write(w)
}

// GetServerKey serves /_matrix/key/v2/server, and the /server/{keyId} form
// that spec v1.6 removed (old servers still ask for it; the router rewrites
// it here): all keys, whatever keyId names.
func (s *Server) GetServerKey(ctx context.Context, _ fedapi.GetServerKeyRequestObject) (fedapi.GetServerKeyResponseObject, error) {
	doc, err := s.Fed.Identity.KeyDocument(ctx)
	if err != nil {
		return nil, err
	}
	return jsonResponse{doc}, nil
}

func (s *Server) SendTransaction(ctx context.Context, req fedapi.SendTransactionRequestObject) (fedapi.SendTransactionResponseObject, error) {
	origin, err := federation.Origin(ctx)
	if err != nil {
		return nil, err
	}
	// The raw body: EDU contents carry signed device keys.
	res, err := s.Fed.Receiver.Receive(ctx, origin, req.TxnId, server.RawBody(ctx))
	if err != nil {
		return nil, err
	}
	out := fedapi.SendTransaction200JSONResponse{Pdus: make(map[string]struct {
		Error *string `json:"error,omitempty"`
	}, len(res))}
	for id, r := range res {
		var e struct {
			Error *string `json:"error,omitempty"`
		}
		if r.Error != "" {
			e.Error = &r.Error
		}
		out.Pdus[id] = e
	}
	return out, nil
}

func (s *Server) GetUserDevices(ctx context.Context, req fedapi.GetUserDevicesRequestObject) (fedapi.GetUserDevicesResponseObject, error) {
	origin, err := federation.Origin(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := s.Fed.UserDevices(ctx, origin, req.UserId)
	if err != nil {
		return nil, err
	}
	return jsonResponse{devs}, nil
}

func (s *Server) ClaimUserEncryptionKeys(ctx context.Context, req fedapi.ClaimUserEncryptionKeysRequestObject) (fedapi.ClaimUserEncryptionKeysResponseObject, error) {
	if _, err := federation.Origin(ctx); err != nil {
		return nil, err
	}
	keys, err := s.Fed.ClaimKeys(ctx, req.Body.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	return jsonResponse{map[string]any{"one_time_keys": keys}}, nil
}

func (s *Server) QueryUserEncryptionKeys(ctx context.Context, req fedapi.QueryUserEncryptionKeysRequestObject) (fedapi.QueryUserEncryptionKeysResponseObject, error) {
	origin, err := federation.Origin(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := s.Fed.QueryKeys(ctx, origin, e2ekeys.DeviceLists(req.Body.DeviceKeys))
	if err != nil {
		return nil, err
	}
	return jsonResponse{keys}, nil
}

// Coverage says how this server answers the changes spec versions made to
// the server-server operations (see csapi.Coverage); anything not named is
// served.
var Coverage = specversions.Status{}

// CoverageRows is the coverage table of the server-server API.
func CoverageRows() []specversions.Row {
	return specversions.Rows(specversions.FromFedAPI(fedapi.SpecOperations), nil, Coverage)
}
