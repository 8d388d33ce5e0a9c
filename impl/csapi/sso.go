package csapi

// The legacy API's m.login.sso flow for OAuth 2.0 aware clients (v1.18,
// MSC3824): GET /login lists it, preferred, and the redirect endpoints send
// the browser to impl/ssocompat's pages.

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/server"
	"github.com/myelin-hs/myelin/impl/ssocompat"
)

// loginFlowJSON is one flow of GET /login, with the m.login.sso fields
// that login.yaml's LoginFlow leaves to definitions/sso_login_flow.yaml.
type loginFlowJSON struct {
	Type                string `json:"type"`
	GetLoginToken       *bool  `json:"get_login_token,omitempty"`
	OAuthAwarePreferred *bool  `json:"oauth_aware_preferred,omitempty"`
}

type loginFlowsResponse struct {
	Flows []loginFlowJSON `json:"flows"`
}

func (r loginFlowsResponse) VisitGetLoginFlowsResponse(w http.ResponseWriter) error {
	return server.WriteJSON(w, r)
}

// ssoFlows is the m.login.sso flow when it is offered (--auth both):
// preferred, so an OAuth 2.0 aware client offers only it. No
// identity_providers: the flow ends at this server's own sign-in page.
func (s *Server) ssoFlows() []loginFlowJSON {
	if !ssocompat.Enabled(s.Config) {
		return nil
	}
	yes := true
	return []loginFlowJSON{{Type: ssoFlow, OAuthAwarePreferred: &yes}}
}

const ssoFlow = "m.login.sso"

// errSSOOff answers the redirect endpoints when m.login.sso is not
// offered: the legacy API's answer with --auth oauth, and the same 404
// M_UNRECOGNIZED with --auth legacy (GET /login lists no m.login.sso).
func (s *Server) errSSOOff() error {
	if !s.Config.LegacyAuth() {
		return errLegacyOff()
	}
	return matrixerr.Unrecognized(http.StatusNotFound, "This server does not offer m.login.sso")
}

func (s *Server) RedirectToSSO(_ context.Context, req clientapi.RedirectToSSORequestObject) (clientapi.RedirectToSSOResponseObject, error) {
	if !ssocompat.Enabled(s.Config) {
		return nil, s.errSSOOff()
	}
	to, err := ssocompat.StartLocation(req.Params.RedirectUrl, deref((*string)(req.Params.Action)))
	if err != nil {
		return nil, err
	}
	return clientapi.RedirectToSSO302Response{Headers: clientapi.RedirectToSSO302ResponseHeaders{Location: &to}}, nil
}

func (s *Server) RedirectToIdP(_ context.Context, req clientapi.RedirectToIdPRequestObject) (clientapi.RedirectToIdPResponseObject, error) {
	if !ssocompat.Enabled(s.Config) {
		return nil, s.errSSOOff()
	}
	// GET /login lists no identity providers: every ID is unknown.
	return nil, matrixerr.NotFound("Unknown identity provider: this server signs users in on its own pages (use /login/sso/redirect)")
}
