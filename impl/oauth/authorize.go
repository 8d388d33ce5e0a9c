package oauth

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// AuthRequest is an authorisation request's parameters (RFC 6749 §4.1.1,
// RFC 7636, OIDC's nonce and prompt).
type AuthRequest struct {
	ClientID, RedirectURI, ResponseType, ResponseMode, Scope, State string
	CodeChallenge, CodeChallengeMethod, Nonce, Prompt               string
}

// FromQuery reads an AuthRequest from query or form values.
func FromQuery(v url.Values) AuthRequest {
	return AuthRequest{ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"),
		ResponseType: v.Get("response_type"), ResponseMode: v.Get("response_mode"), Scope: v.Get("scope"),
		State: v.Get("state"), CodeChallenge: v.Get("code_challenge"), CodeChallengeMethod: v.Get("code_challenge_method"),
		Nonce: v.Get("nonce"), Prompt: v.Get("prompt")}
}

// Values is the request as form values (the consent form carries them).
func (r AuthRequest) Values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"client_id": r.ClientID, "redirect_uri": r.RedirectURI,
		"response_type": r.ResponseType, "response_mode": r.ResponseMode, "scope": r.Scope, "state": r.State,
		"code_challenge": r.CodeChallenge, "code_challenge_method": r.CodeChallengeMethod, "nonce": r.Nonce, "prompt": r.Prompt} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// Authorization is a checked authorisation request, ready for consent.
type Authorization struct {
	Request AuthRequest
	Client  *Client
	Scope   Scope
	Mode    string // query or fragment
	// Create: the client asked for the registration page (prompt=create).
	Create bool
}

// PageError is an error shown to the user instead of redirecting: the
// client or redirect URI cannot be trusted (RFC 6749 §4.1.2.1).
type PageError struct{ Description string }

func (e *PageError) Error() string { return e.Description }

// RedirectError is an error sent back to the client's redirect URI.
type RedirectError struct {
	URL         string // where to send the browser
	Code        string
	Description string
}

func (e *RedirectError) Error() string { return e.Code + ": " + e.Description }

// CheckAuthorization validates an authorisation request. A *PageError
// means the browser must not be redirected; a *RedirectError carries the
// URL that answers the client.
func (s *Service) CheckAuthorization(ctx context.Context, r AuthRequest) (*Authorization, error) {
	if r.ClientID == "" {
		return nil, &PageError{"The request names no client (client_id)."}
	}
	client, err := s.Client(ctx, r.ClientID)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, &PageError{"The application is not registered with this server (unknown client_id)."}
	}
	if r.RedirectURI == "" || !client.redirectMatches(r.RedirectURI) {
		return nil, &PageError{"The redirect URI is not one the application registered."}
	}
	a := &Authorization{Request: r, Client: client, Mode: r.ResponseMode}
	fail := func(code, desc string) error {
		mode := a.Mode
		if mode != "fragment" {
			mode = "query"
		}
		return &RedirectError{URL: callbackURL(r.RedirectURI, mode, url.Values{"error": {code}, "error_description": {desc}, "state": {r.State}}),
			Code: code, Description: desc}
	}
	switch r.ResponseMode {
	case "":
		a.Mode = "query"
	case "query", "fragment":
	default:
		a.Mode = "query"
		return nil, fail("invalid_request", "response_mode must be query or fragment")
	}
	if r.ResponseType != "code" {
		return nil, fail("unsupported_response_type", "response_type must be code")
	}
	if !client.HasGrant(GrantAuthorizationCode) {
		return nil, fail("unauthorized_client", "the client did not register the authorization_code grant")
	}
	if r.CodeChallenge == "" {
		return nil, fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
	}
	if r.CodeChallengeMethod != "S256" {
		return nil, fail("invalid_request", "code_challenge_method must be S256 (plain is not accepted)")
	}
	if !validPKCE(r.CodeChallenge, 43, 43) {
		return nil, fail("invalid_request", "code_challenge must be 43 characters of base64url (an S256 hash)")
	}
	if len(r.State) > 2048 || len(r.Nonce) > 2048 {
		return nil, fail("invalid_request", "state and nonce may not be longer than 2048 bytes")
	}
	if a.Scope, err = ParseScope(r.Scope); err != nil {
		return nil, fail("invalid_scope", strings.TrimPrefix(err.Error(), "invalid_scope: "))
	}
	for _, p := range strings.Fields(r.Prompt) {
		switch p {
		case "create":
			a.Create = true
		case "none":
			// Myelin always asks for consent.
			return nil, fail("interaction_required", "the user must sign in and consent")
		}
	}
	return a, nil
}

// callbackURL builds the redirect to the client with params in the query
// or the fragment.
func callbackURL(redirect, mode string, params url.Values) string {
	for k, v := range params {
		if len(v) == 0 || v[0] == "" {
			delete(params, k)
		}
	}
	u, err := url.Parse(redirect)
	if err != nil {
		return redirect
	}
	if mode == "fragment" {
		u.Fragment = ""
		return u.String() + "#" + params.Encode()
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Deny answers a request the user declined: access_denied to the client.
func (a *Authorization) Deny() string {
	return callbackURL(a.Request.RedirectURI, a.Mode, url.Values{"error": {"access_denied"},
		"error_description": {"The user declined the request"}, "state": {a.Request.State}})
}

// Grant issues a single-use code for userID's consent and returns the URL
// that sends it to the client.
func (s *Service) Grant(ctx context.Context, a *Authorization, userID string) (string, error) {
	code := tokens.NewRefreshLikeToken(codePrefix, tokens.AccessTokenBytes)
	now := s.now()
	row := storage.OAuthCode{CodeHash: tokens.HashToken(code).String(), ClientID: a.Client.ClientID, UserID: userID,
		DeviceID: a.Scope.DeviceID, Scope: a.Scope.String(), RedirectURI: a.Request.RedirectURI,
		CodeChallenge: a.Request.CodeChallenge, CreatedTS: now.UnixMilli(), ExpiresTS: now.Add(s.Config.OAuth.CodeTTL).UnixMilli()}
	if a.Request.Nonce != "" {
		row.Nonce = &a.Request.Nonce
	}
	// Codes that expired long ago (a used one is kept for its lifetime
	// past expiry, to recognise a replay) are dropped here.
	if _, err := s.Store.DB.NewDelete().Model((*storage.OAuthCode)(nil)).
		Where("expires_ts < ?", now.Add(-s.Config.OAuth.CodeTTL-s.Config.AccessTokenLifetime).UnixMilli()).Exec(ctx); err != nil {
		return "", err
	}
	if _, err := s.Store.DB.NewInsert().Model(&row).Exec(ctx); err != nil {
		return "", fmt.Errorf("store code: %w", err)
	}
	return callbackURL(a.Request.RedirectURI, a.Mode, url.Values{"code": {code}, "state": {a.Request.State}}), nil
}
