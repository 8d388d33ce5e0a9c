package csapi

// Sessions and moderation (issue 15): refresh, login tokens, the admin
// endpoints, 3PID list and removal, registration-token validity. Each
// translates the generated types to an impl/sessions or impl/accounts
// call.

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/sessions"
)

func (s *Server) Refresh(ctx context.Context, req clientapi.RefreshRequestObject) (clientapi.RefreshResponseObject, error) {
	if req.Body == nil {
		return nil, matrixerr.NotJSON("Missing JSON body")
	}
	t, err := s.Sessions.Refresh(ctx, req.Body.RefreshToken, auth.ClientIP(ctx))
	if err != nil {
		return nil, err
	}
	exp := int(t.ExpiresInMS)
	return clientapi.Refresh200JSONResponse{AccessToken: t.AccessToken, RefreshToken: &t.RefreshToken, ExpiresInMs: &exp}, nil
}

func (s *Server) GenerateLoginToken(ctx context.Context, req clientapi.GenerateLoginTokenRequestObject) (clientapi.GenerateLoginTokenResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var dict map[string]any
	if req.Body != nil && req.Body.Auth != nil {
		if dict, err = authDict(req.Body.Auth); err != nil {
			return nil, err
		}
	}
	lt, err := s.Sessions.GetLoginToken(ctx, p, dict, auth.ClientIP(ctx))
	if err != nil {
		return nil, err
	}
	return clientapi.GenerateLoginToken200JSONResponse{LoginToken: lt.Token, ExpiresInMs: int(lt.ExpiresInMS)}, nil
}

func (s *Server) RegistrationTokenValidity(ctx context.Context, req clientapi.RegistrationTokenValidityRequestObject) (clientapi.RegistrationTokenValidityResponseObject, error) {
	valid, err := s.Accounts.RegistrationTokenValid(ctx, req.Params.Token, auth.ClientIP(ctx))
	if err != nil {
		return nil, err
	}
	return clientapi.RegistrationTokenValidity200JSONResponse{Valid: valid}, nil
}

func (s *Server) GetAdminLockUser(ctx context.Context, req clientapi.GetAdminLockUserRequestObject) (clientapi.GetAdminLockUserResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	on, err := s.Sessions.AdminGet(ctx, p, req.UserId, sessions.FlagLocked)
	if err != nil {
		return nil, err
	}
	return clientapi.GetAdminLockUser200JSONResponse{Locked: on}, nil
}

func (s *Server) SetAdminLockUser(ctx context.Context, req clientapi.SetAdminLockUserRequestObject) (clientapi.SetAdminLockUserResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, matrixerr.NotJSON("Missing JSON body")
	}
	on, err := s.Sessions.AdminSet(ctx, p, req.UserId, sessions.FlagLocked, req.Body.Locked)
	if err != nil {
		return nil, err
	}
	return clientapi.SetAdminLockUser200JSONResponse{Locked: on}, nil
}

func (s *Server) GetAdminSuspendUser(ctx context.Context, req clientapi.GetAdminSuspendUserRequestObject) (clientapi.GetAdminSuspendUserResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	on, err := s.Sessions.AdminGet(ctx, p, req.UserId, sessions.FlagSuspended)
	if err != nil {
		return nil, err
	}
	return clientapi.GetAdminSuspendUser200JSONResponse{Suspended: on}, nil
}

func (s *Server) SetAdminSuspendUser(ctx context.Context, req clientapi.SetAdminSuspendUserRequestObject) (clientapi.SetAdminSuspendUserResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, matrixerr.NotJSON("Missing JSON body")
	}
	on, err := s.Sessions.AdminSet(ctx, p, req.UserId, sessions.FlagSuspended, req.Body.Suspended)
	if err != nil {
		return nil, err
	}
	return clientapi.SetAdminSuspendUser200JSONResponse{Suspended: on}, nil
}

// whoisConnection is the generated (anonymous) type of one connection.
type whoisConnection = struct {
	Ip        *string `json:"ip,omitempty"`
	LastSeen  *int64  `json:"last_seen,omitempty"`
	UserAgent *string `json:"user_agent,omitempty"`
}

type whoisSession = struct {
	Connections *[]whoisConnection `json:"connections,omitempty"`
}

type whoisDevice = struct {
	Sessions *[]whoisSession `json:"sessions,omitempty"`
}

func (s *Server) GetWhoIs(ctx context.Context, req clientapi.GetWhoIsRequestObject) (clientapi.GetWhoIsResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.Sessions.WhoIs(ctx, p, req.UserId)
	if err != nil {
		return nil, err
	}
	devs := make(map[string]whoisDevice, len(w.Devices))
	for id, cs := range w.Devices {
		conns := make([]whoisConnection, len(cs))
		for i, c := range cs {
			conns[i] = whoisConnection{Ip: optional(c.IP), LastSeen: &c.LastSeen}
		}
		devs[id] = whoisDevice{Sessions: &[]whoisSession{{Connections: &conns}}}
	}
	return clientapi.GetWhoIs200JSONResponse{UserId: &w.UserID, Devices: &devs}, nil
}

// threepid is the generated (anonymous) type of one bound 3PID.
type threepid = struct {
	AddedAt     int64                                                       `json:"added_at"`
	Address     string                                                      `json:"address"`
	Medium      clientapi.GetAccount3PIDs200JSONResponseBodyThreepidsMedium `json:"medium"`
	ValidatedAt int64                                                       `json:"validated_at"`
}

func (s *Server) GetAccount3PIDs(ctx context.Context, _ clientapi.GetAccount3PIDsRequestObject) (clientapi.GetAccount3PIDsResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := s.Accounts.ListThreePIDs(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]threepid, len(ts))
	for i, t := range ts {
		out[i] = threepid{AddedAt: t.AddedAt, Address: t.Address,
			Medium: clientapi.GetAccount3PIDs200JSONResponseBodyThreepidsMedium(t.Medium), ValidatedAt: t.ValidatedAt}
	}
	return clientapi.GetAccount3PIDs200JSONResponse{Threepids: &out}, nil
}

func (s *Server) Delete3pidFromAccount(ctx context.Context, req clientapi.Delete3pidFromAccountRequestObject) (clientapi.Delete3pidFromAccountResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, matrixerr.NotJSON("Missing JSON body")
	}
	res, err := s.Accounts.DeleteThreePID(ctx, p, string(req.Body.Medium), req.Body.Address)
	if err != nil {
		return nil, err
	}
	return clientapi.Delete3pidFromAccount200JSONResponse{
		IdServerUnbindResult: clientapi.Delete3pidFromAccount200JSONResponseBodyIdServerUnbindResult(res)}, nil
}
