package csapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/server"
	"github.com/myelin-hs/myelin/impl/uia"
)

// opDeviceSigningUpload binds UIA sessions to cross-signing uploads.
const opDeviceSigningUpload = "keys/device_signing/upload"

func (r keysResponse) VisitUploadCrossSigningSignaturesResponse(w http.ResponseWriter) error {
	return r.write(w)
}

// UploadCrossSigningKeys runs user-interactive auth (m.login.password)
// only when the upload replaces keys (spec v1.11): the first upload and an
// identical retry go through without.
func (s *Server) UploadCrossSigningKeys(ctx context.Context, req clientapi.UploadCrossSigningKeysRequestObject) (clientapi.UploadCrossSigningKeysResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	// The raw body: the keys are signed objects.
	raw := server.RawBody(ctx)
	if p.AppService != "" {
		// An application service replaces its users' keys without
		// user-interactive auth (v1.17).
		if err := s.Keys.UploadCrossSigningKeys(ctx, p.UserID, raw, noUIA); err != nil {
			return nil, err
		}
		return clientapi.UploadCrossSigningKeys200JSONResponse{}, nil
	}
	need, err := s.Keys.CrossSigningUploadNeedsUIA(ctx, p.UserID, raw)
	if err != nil {
		return nil, err
	}
	if !need {
		err := s.Keys.UploadCrossSigningKeys(ctx, p.UserID, raw, nil)
		if !errors.Is(err, e2ekeys.ErrUIARequired) { // keys changed meanwhile: auth after all
			if err != nil {
				return nil, err
			}
			return clientapi.UploadCrossSigningKeys200JSONResponse{}, nil
		}
	}
	var authData any
	if req.Body != nil && req.Body.Auth != nil {
		authData = req.Body.Auth
	}
	dict, err := authDict(authData)
	if err != nil {
		return nil, err
	}
	res, err := s.UIA.Authenticate(ctx, uia.Request{
		Operation: opDeviceSigningUpload,
		UserID:    p.UserID,
		Flows:     []uia.Flow{{Stages: []string{uia.StagePassword}}},
		Auth:      dict,
	})
	if err != nil {
		return nil, err
	}
	if res.Replay != nil {
		return clientapi.UploadCrossSigningKeys200JSONResponse{}, nil
	}
	err = s.Keys.UploadCrossSigningKeys(ctx, p.UserID, raw, func(ctx context.Context, tx bun.Tx) error {
		return s.UIA.Finish(ctx, tx, res.SessionID, struct{}{})
	})
	if err != nil && !errors.Is(err, uia.ErrAlreadyFinished) {
		return nil, err
	}
	return clientapi.UploadCrossSigningKeys200JSONResponse{}, nil
}

func (s *Server) UploadCrossSigningSignatures(ctx context.Context, _ clientapi.UploadCrossSigningSignaturesRequestObject) (clientapi.UploadCrossSigningSignaturesResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	failures, err := s.Keys.UploadSignatures(ctx, p.UserID, server.RawBody(ctx))
	if err != nil {
		return nil, err
	}
	return keysResponse{map[string]any{"failures": failures}}, nil
}
