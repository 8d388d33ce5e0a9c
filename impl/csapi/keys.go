package csapi

import (
	"context"
	"net/http"
	"time"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/server"
)

// keysResponse is an answer built outside the generated models: device
// keys are signed objects (see server.WriteJSON).
type keysResponse struct{ v any }

func (r keysResponse) write(w http.ResponseWriter) error { return server.WriteJSON(w, r.v) }

func (r keysResponse) VisitQueryKeysResponse(w http.ResponseWriter) error { return r.write(w) }
func (r keysResponse) VisitClaimKeysResponse(w http.ResponseWriter) error { return r.write(w) }

// remoteTimeout is the spec's timeout parameter (default 10 s), bounded.
func remoteTimeout(ms *int) time.Duration {
	if ms == nil || *ms <= 0 {
		return 10 * time.Second
	}
	return min(time.Duration(*ms)*time.Millisecond, 60*time.Second)
}

func (s *Server) UploadKeys(ctx context.Context, _ clientapi.UploadKeysRequestObject) (clientapi.UploadKeysResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if p.DeviceID == "" {
		return nil, errNoDevice()
	}
	// The raw body: device_keys is verified against the device's signature.
	counts, err := s.Keys.Upload(ctx, p.UserID, p.DeviceID, server.RawBody(ctx))
	if err != nil {
		return nil, err
	}
	return clientapi.UploadKeys200JSONResponse{OneTimeKeyCounts: counts}, nil
}

func (s *Server) QueryKeys(ctx context.Context, req clientapi.QueryKeysRequestObject) (clientapi.QueryKeysResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.Body == nil || req.Body.DeviceKeys == nil {
		return nil, matrixerr.BadJSON(`Missing field "device_keys"`)
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout(req.Body.Timeout))
	defer cancel()
	res, err := s.Keys.Query(ctx, p.UserID, e2ekeys.DeviceLists(req.Body.DeviceKeys))
	if err != nil {
		return nil, err
	}
	return keysResponse{res}, nil
}

func (s *Server) ClaimKeys(ctx context.Context, req clientapi.ClaimKeysRequestObject) (clientapi.ClaimKeysResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	if req.Body == nil || req.Body.OneTimeKeys == nil {
		return nil, matrixerr.BadJSON(`Missing field "one_time_keys"`)
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout(req.Body.Timeout))
	defer cancel()
	keys, failures, err := s.Keys.Claim(ctx, req.Body.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	return keysResponse{map[string]any{"one_time_keys": keys, "failures": failures}}, nil
}
