package csapi

// Application services (impl/appservice): registration and login with
// m.login.application_service, and the operations an appservice makes
// without user-interactive auth (v1.17). The caller is an appservice when
// its principal carries AppService (identity assertion ran in the auth
// middleware).

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/accounts"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/server"
)

// isAppServiceRegistration reports whether a POST /register body asks for
// m.login.application_service: as auth.type (the spec's form) or as the
// top-level type that older bridges send.
func isAppServiceRegistration(ctx context.Context, body *clientapi.RegisterJSONRequestBody) bool {
	if body != nil && body.Auth != nil && body.Auth.Type != nil && *body.Auth.Type == accounts.LoginAppService {
		return true
	}
	var top struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(server.RawBody(ctx), &top)
	return top.Type == accounts.LoginAppService
}

// registerAppService answers an appservice's POST /register: the as_token
// is required (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise).
func (s *Server) registerAppService(ctx context.Context, r accounts.RegisterRequest) (clientapi.RegisterResponseObject, error) {
	reg, err := s.AppServices.Caller(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.Accounts.RegisterAppService(ctx, reg, r)
	if err != nil {
		return nil, err
	}
	return clientapi.Register200JSONResponse{UserId: res.UserID, AccessToken: optional(res.AccessToken),
		DeviceId: optional(res.DeviceID), HomeServer: optional(res.HomeServer),
		RefreshToken: optional(res.RefreshToken), ExpiresInMs: expiresIn(res.ExpiresInMS)}, nil
}

// loginAppService answers POST /login with m.login.application_service.
func (s *Server) loginAppService(ctx context.Context, r accounts.LoginRequest) (clientapi.LoginResponseObject, error) {
	reg, err := s.AppServices.Caller(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.Accounts.LoginAppServiceUser(ctx, reg, r)
	if err != nil {
		return nil, err
	}
	return clientapi.Login200JSONResponse{UserId: res.UserID, AccessToken: res.AccessToken,
		DeviceId: res.DeviceID, HomeServer: &res.HomeServer,
		RefreshToken: optional(res.RefreshToken), ExpiresInMs: expiresIn(res.ExpiresInMS)}, nil
}

// updateDeviceAsAppService is PUT /devices/{deviceId} by an appservice
// (MSC4190): an unknown device is created (201), a known one renamed (200).
func (s *Server) updateDeviceAsAppService(ctx context.Context, p auth.Principal, req clientapi.UpdateDeviceRequestObject) (clientapi.UpdateDeviceResponseObject, error) {
	var name *string
	if req.Body != nil {
		name = req.Body.DisplayName
	}
	created, err := s.Devices.CreateOrRename(ctx, p.UserID, req.DeviceId, name)
	if err != nil {
		return nil, err
	}
	if created {
		return clientapi.UpdateDevice201JSONResponse{}, nil
	}
	return clientapi.UpdateDevice200JSONResponse{}, nil
}

// errNoDevice answers an operation that needs a device made by an
// appservice that asserted none (no device_id).
func errNoDevice() *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_MISSING_PARAM",
		"This operation needs a device: an application service must assert one with the device_id query parameter")
}

// noUIA stands for a finished user-interactive auth where none is needed.
func noUIA(context.Context, bun.Tx) error { return nil }
