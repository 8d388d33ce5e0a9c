// Package csapi is the client-server HTTP adapter: it implements the
// generated clientapi.StrictServerInterface by translating between the
// generated request/response types and the domain services. It holds no
// domain logic of its own.
package csapi

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/accountdata"
	"github.com/myelin-hs/myelin/impl/accounts"
	"github.com/myelin-hs/myelin/impl/appservice"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/keybackup"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/syncstream"
	"github.com/myelin-hs/myelin/impl/todevice"
	"github.com/myelin-hs/myelin/impl/uia"
)

// Server implements every client-server operation of the vendored spec.
type Server struct {
	Config *config.Config
	Keys   *e2ekeys.Service
	// UIA runs user-interactive auth for every UIA-protected operation.
	UIA     *uia.Engine
	Devices *devices.Core
	// Accounts registers, logs in and manages accounts.
	Accounts *accounts.Service
	// ToDevice and Streams serve send-to-device, /sync and /keys/changes.
	ToDevice *todevice.Service
	Streams  *syncstream.Service
	// AccountData and KeyBackup are the user's stores (issue 19).
	AccountData *accountdata.Service
	KeyBackup   *keybackup.Service
	// Sessions refreshes tokens, issues login tokens and moderates.
	Sessions *sessions.Service
	// OAuth is the OAuth 2.0 authorisation server (nil with --auth legacy).
	OAuth *oauth.Service
	// AppServices are the registered application services (nil: none).
	AppServices *appservice.Registry
}

// The compiler checks that every operation of the spec is implemented.
var _ clientapi.StrictServerInterface = (*Server)(nil)

func (s *Server) GetVersions(context.Context, clientapi.GetVersionsRequestObject) (clientapi.GetVersionsResponseObject, error) {
	return clientapi.GetVersions200JSONResponse{Versions: Versions, UnstableFeatures: &map[string]bool{}}, nil
}

func (s *Server) GetWellknown(context.Context, clientapi.GetWellknownRequestObject) (clientapi.GetWellknownResponseObject, error) {
	var r clientapi.GetWellknown200JSONResponse
	r.MHomeserver.BaseUrl = s.Config.BaseURL()
	return r, nil
}

func (s *Server) GetCapabilities(ctx context.Context, _ clientapi.GetCapabilitiesRequestObject) (clientapi.GetCapabilitiesResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	c := s.Sessions.Capabilities(p)
	type flag = struct {
		Enabled bool `json:"enabled"`
	}
	var caps clientapi.GetCapabilities200JSONResponseBody_Capabilities
	caps.MChangePassword = &flag{Enabled: c.ChangePassword}
	caps.M3pidChanges = &flag{Enabled: c.ThreePIDChanges}
	caps.MGetLoginToken = &flag{Enabled: c.GetLoginToken}
	// Profiles are outside Myelin's slice.
	caps.MSetDisplayname = &flag{}
	caps.MSetAvatarUrl = &flag{}
	caps.MProfileFields = &struct {
		Allowed    *[]string `json:"allowed,omitempty"`
		Disallowed *[]string `json:"disallowed,omitempty"`
		Enabled    bool      `json:"enabled"`
	}{}
	if c.Lock || c.Suspend {
		caps.MAccountModeration = &struct {
			Lock    *bool `json:"lock,omitempty"`
			Suspend *bool `json:"suspend,omitempty"`
		}{Lock: &c.Lock, Suspend: &c.Suspend}
	}
	return clientapi.GetCapabilities200JSONResponse{Capabilities: caps}, nil
}

func (s *Server) GetTokenOwner(ctx context.Context, _ clientapi.GetTokenOwnerRequestObject) (clientapi.GetTokenOwnerResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	return clientapi.GetTokenOwner200JSONResponse{UserId: p.UserID, DeviceId: optional(p.DeviceID), IsGuest: &p.IsGuest}, nil
}
