package csapi

import (
	"cmp"
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

// errApprovalGone: the approval of a cross-signing reset was used by a
// concurrent upload; this one goes through user-interactive auth.
var errApprovalGone = errors.New("csapi: cross-signing reset approval already used")

func (r keysResponse) VisitUploadCrossSigningSignaturesResponse(w http.ResponseWriter) error {
	return r.write(w)
}

// UploadCrossSigningKeys runs user-interactive auth only when the upload
// replaces keys (spec v1.11): the first upload and an identical retry go
// through without, and so does the first replacement after the user
// approved a reset on the account page (the approval is used up in the
// upload's transaction). The auth is m.login.password, or m.oauth for an
// OAuth session.
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
	if _, approved, err := s.UIA.Approved(ctx, p.UserID, uia.OpCrossSigningUpload()); err != nil {
		return nil, err
	} else if approved {
		err := s.Keys.UploadCrossSigningKeys(ctx, p.UserID, raw, func(ctx context.Context, tx bun.Tx) error {
			if ok, err := s.UIA.ConsumeApproval(ctx, tx, p.UserID, uia.OpCrossSigningUpload()); err != nil || !ok {
				return cmp.Or(err, errApprovalGone)
			}
			return nil
		})
		if !errors.Is(err, errApprovalGone) {
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
	flows, params, err := s.UIA.FlowsFor(ctx, p.UserID, p.DeviceID, uia.Link{Action: uia.ActionCrossSigningReset})
	if err != nil {
		return nil, err
	}
	res, err := s.UIA.Authenticate(ctx, uia.Request{
		Operation:       uia.OpCrossSigningUpload(),
		UserID:          p.UserID,
		Flows:           flows,
		ChallengeParams: params,
		Auth:            dict,
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
