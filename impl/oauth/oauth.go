// Package oauth is Myelin's OAuth 2.0 authorisation server, on the Matrix
// spec's profile of it (client-server API, "OAuth 2.0 API", v1.15–v1.18):
// server metadata, dynamic client registration (RFC 7591) with the spec's
// client-metadata rules, the authorisation code grant with PKCE S256 only
// (RFC 6749 §4.1, RFC 7636), the device authorisation grant (RFC 8628),
// refresh, revocation (RFC 7009), introspection for resource servers
// (RFC 7662), and the minimal OpenID Connect pieces matrix-js-sdk needs
// (discovery document, JWKS, a signed id_token for the openid scope).
//
// # Why hand-written on primitives
//
// The tokens this server issues are Myelin's own device-bound access and
// refresh tokens (impl/devices, impl/sessions): every endpoint, the token
// cache and its cross-process revocation, and the refresh rotation of
// impl/sessions keep working for OAuth sessions unchanged. The two
// libraries considered both mint their own tokens:
//
//   - github.com/zitadel/oidc/v3/pkg/op hands the client
//     Encrypt(tokenID + ":" + subject) (op.CreateBearerToken) or a JWT,
//     not the token the storage issued; its refresh flow cannot keep
//     impl/sessions' rule (the old refresh token stays valid until the new
//     pair is used); it accepts PKCE "plain" when no method is given; and
//     it brings its own router, login-UI redirect protocol and storage
//     interface of ~25 methods for what is five endpoints here.
//   - github.com/ory/fosite has the same shape (token strategies that
//     sign or HMAC its own token format, a storage of its own sessions),
//     and is not on the Go proxy this project uses.
//
// What remains is small and mostly Matrix-specific (the client-metadata
// and redirect-URI rules, scopes → devices, device IDs chosen by the
// client), so it is written here, with github.com/go-jose/go-jose/v4 for
// the ID-token signing key and JWKS.
//
// # State
//
// Everything lives in the database (several processes on one PostgreSQL
// work): clients, codes and device grants (stored as SHA-256 hashes),
// the OAuth session of each device (client and scope; it goes with the
// device), and the ID-token signing key (created by the first process
// that needs it). An authorisation request between the authorize page and
// the consent form is carried by the form itself (re-validated on POST;
// CSRF-protected by impl/web).
//
// # Tokens
//
// A grant creates (or reuses, if the client names an existing device of
// the same user) the device of the device scope through devices.Core, so
// the new device is announced in device lists like a login's; the access
// token expires after Config.AccessTokenLifetime and comes with a refresh
// token (sessions.Service.AttachRefresh); the refresh grant is
// sessions.Service.Refresh. Revoking either token deletes the device, as
// POST /logout does.
package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Paths of the endpoints, under the public base URL.
const (
	PathAuthorize  = "/_myelin/oauth2/authorize"
	PathToken      = "/_myelin/oauth2/token"
	PathRegister   = "/_myelin/oauth2/register"
	PathRevoke     = "/_myelin/oauth2/revoke"
	PathIntrospect = "/_myelin/oauth2/introspect"
	PathDevice     = "/_myelin/oauth2/device"
	PathKeys       = "/_myelin/oauth2/keys.json"
	PathUserinfo   = "/_myelin/oauth2/userinfo"
	PathLink       = "/_myelin/link"
	PathAccount    = "/_myelin/account/"
	PathDiscovery  = "/.well-known/openid-configuration"
	// PathUnstableMetadata and PathUnstableIssuer are MSC2965's names of
	// the discovery endpoints, from before v1.15.
	PathUnstableMetadata = "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"
	PathUnstableIssuer   = "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer"
	codePrefix           = "myl_code_"
	deviceCodeRunes      = "BCDFGHJKLMNPQRSTVWXZ" // RFC 8628 §6.1: no vowels, no look-alikes
)

// AccountActions are the account-management actions the account page
// serves (impl/web's account page, built by the account helper).
var AccountActions = []string{
	"org.matrix.devices_list", "org.matrix.device_view", "org.matrix.device_delete",
	"org.matrix.account_deactivate", "org.matrix.cross_signing_reset",
}

// Service is the authorisation server.
type Service struct {
	Store    *storage.Store
	Config   *config.Config
	Devices  *devices.Core
	Sessions *sessions.Service
	// Limits may be nil (rate limits off).
	Limits *ratelimit.Limiter
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time

	keys keyCache
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Issuer is the issuer identifier: the public base URL with a trailing
// slash.
func (s *Service) Issuer() string { return s.Config.BaseURL() + "/" }

func (s *Service) url(path string) string { return s.Config.BaseURL() + path }

// Metadata is the authorisation server metadata (RFC 8414) as GET
// /_matrix/client/v1/auth_metadata answers it.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	PromptValuesSupported             []string `json:"prompt_values_supported"`
	AccountManagementURI              string   `json:"account_management_uri"`
	AccountManagementActionsSupported []string `json:"account_management_actions_supported"`
}

// Metadata returns the server metadata.
func (s *Service) Metadata() Metadata {
	return Metadata{
		Issuer:                            s.Issuer(),
		AuthorizationEndpoint:             s.url(PathAuthorize),
		TokenEndpoint:                     s.url(PathToken),
		RevocationEndpoint:                s.url(PathRevoke),
		RegistrationEndpoint:              s.url(PathRegister),
		DeviceAuthorizationEndpoint:       s.url(PathDevice),
		ResponseTypesSupported:            []string{"code"},
		GrantTypesSupported:               append([]string(nil), supportedGrants...),
		ResponseModesSupported:            []string{"query", "fragment"},
		CodeChallengeMethodsSupported:     []string{"S256"},
		PromptValuesSupported:             []string{"create"},
		AccountManagementURI:              s.url(PathAccount),
		AccountManagementActionsSupported: append([]string(nil), AccountActions...),
	}
}

// Discovery is the OpenID Connect discovery document at
// /.well-known/openid-configuration: the metadata plus what OIDC relying
// parties (matrix-js-sdk's oidc-client-ts) need.
func (s *Service) Discovery() map[string]any {
	m := s.Metadata()
	return map[string]any{
		"issuer":                                        m.Issuer,
		"authorization_endpoint":                        m.AuthorizationEndpoint,
		"token_endpoint":                                m.TokenEndpoint,
		"revocation_endpoint":                           m.RevocationEndpoint,
		"registration_endpoint":                         m.RegistrationEndpoint,
		"device_authorization_endpoint":                 m.DeviceAuthorizationEndpoint,
		"introspection_endpoint":                        s.url(PathIntrospect),
		"userinfo_endpoint":                             s.url(PathUserinfo),
		"jwks_uri":                                      s.url(PathKeys),
		"response_types_supported":                      m.ResponseTypesSupported,
		"grant_types_supported":                         m.GrantTypesSupported,
		"response_modes_supported":                      m.ResponseModesSupported,
		"code_challenge_methods_supported":              m.CodeChallengeMethodsSupported,
		"prompt_values_supported":                       m.PromptValuesSupported,
		"account_management_uri":                        m.AccountManagementURI,
		"account_management_actions_supported":          m.AccountManagementActionsSupported,
		"scopes_supported":                              []string{ScopeOpenID, ScopeAPI, ScopeDevice + "*"},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{"RS256"},
		"token_endpoint_auth_methods_supported":         []string{"none"},
		"revocation_endpoint_auth_methods_supported":    []string{"none"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"claims_supported":                              []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "device_id"},
	}
}

// Error is an OAuth error response (RFC 6749 §5.2 and the RFCs that
// extend it): {"error", "error_description"} with an HTTP status.
type Error struct {
	Status      int
	Code        string
	Description string
	// RetryAfter is set on rate-limited answers.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func oauthErr(status int, code, desc string) *Error {
	return &Error{Status: status, Code: code, Description: desc}
}

func invalidRequest(desc string) *Error {
	return oauthErr(http.StatusBadRequest, "invalid_request", desc)
}
func invalidGrant(desc string) *Error { return oauthErr(http.StatusBadRequest, "invalid_grant", desc) }
func invalidClient(desc string) *Error {
	return oauthErr(http.StatusUnauthorized, "invalid_client", desc)
}

// fromMatrix turns an error of another domain package into an OAuth
// error (rate limits keep their status and retry time).
func fromMatrix(err error) error {
	var me *matrixerr.Error
	if !errors.As(err, &me) {
		return err
	}
	switch me.Code {
	case "M_LIMIT_EXCEEDED":
		e := oauthErr(http.StatusTooManyRequests, "slow_down", "Too many requests")
		if ms, ok := me.Extra["retry_after_ms"].(int64); ok {
			e.RetryAfter = time.Duration(ms) * time.Millisecond
		}
		return e
	case "M_UNKNOWN_TOKEN":
		return invalidGrant(me.Message)
	case "M_USER_LOCKED":
		return invalidGrant("The account is locked")
	case "M_USER_DEACTIVATED":
		return invalidGrant("The account is deactivated")
	}
	if me.Status >= 500 {
		return err
	}
	return invalidRequest(me.Message)
}

func (s *Service) allow(ip string) error {
	if err := s.Limits.Allow(ip, ""); err != nil {
		return fromMatrix(err)
	}
	return nil
}

// TokenResponse is a successful token endpoint answer.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
}

// grantee is what a grant authorised: a user's device for a client.
type grantee struct {
	client   *Client
	userID   string
	scope    Scope
	nonce    string
	authTime time.Time
}

// issue creates or reuses the scope's device for the user (announced in
// device lists when new), binds fresh access and refresh tokens to it and
// records the OAuth session, inside tx. It returns the hashes of tokens
// the device held before (revoked).
func (s *Service) issue(ctx context.Context, tx bun.Tx, g grantee, ip string) (TokenResponse, []string, error) {
	var u storage.User
	err := tx.NewSelect().Model(&u).Column("deactivated", "locked").Where("user_id = ?", g.userID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && u.Deactivated) {
		return TokenResponse{}, nil, invalidGrant("The account is deactivated")
	}
	if err != nil {
		return TokenResponse{}, nil, err
	}
	if u.Locked {
		return TokenResponse{}, nil, invalidGrant("The account is locked")
	}
	name := g.client.Name("")
	if len([]rune(name)) > devices.MaxDisplayNameChars {
		name = string([]rune(name)[:devices.MaxDisplayNameChars])
	}
	l, err := s.Devices.IssueToken(ctx, tx, g.userID, g.scope.DeviceID, &name, ip)
	if err != nil {
		return TokenResponse{}, nil, err
	}
	t, err := s.Sessions.AttachRefresh(ctx, tx, g.userID, l.DeviceID, l.AccessToken)
	if err != nil {
		return TokenResponse{}, nil, err
	}
	sess := storage.OAuthSession{UserID: g.userID, DeviceID: l.DeviceID, ClientID: g.client.ClientID,
		Scope: g.scope.String(), CreatedTS: s.now().UnixMilli()}
	if _, err := tx.NewInsert().Model(&sess).
		On("CONFLICT (user_id, device_id) DO UPDATE").
		Set("client_id = EXCLUDED.client_id, scope = EXCLUDED.scope, created_ts = EXCLUDED.created_ts").
		Exec(ctx); err != nil {
		return TokenResponse{}, nil, fmt.Errorf("record oauth session: %w", err)
	}
	out := TokenResponse{AccessToken: t.AccessToken, TokenType: "Bearer", ExpiresIn: t.ExpiresInMS / 1000,
		RefreshToken: t.RefreshToken, Scope: g.scope.String()}
	if g.scope.OpenID {
		if out.IDToken, err = s.idToken(ctx, g, l.DeviceID); err != nil {
			return TokenResponse{}, nil, err
		}
	}
	return out, l.Revoked, nil
}

// commit runs fn in a transaction and, after commit, tells this process's
// token cache about revoked hashes. A *Error that fn sets in failure is
// returned after the transaction committed (used when a failure must
// still commit a revocation).
func (s *Service) commit(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) ([]string, error)) error {
	var revoked []string
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var err error
		revoked, err = fn(ctx, tx)
		return err
	})
	if err == nil {
		s.Devices.NotifyRevoked(ctx, revoked)
	}
	return err
}

// Token answers the token endpoint (form already parsed).
func (s *Service) Token(ctx context.Context, form url.Values, ip string) (TokenResponse, error) {
	if err := s.allow(ip); err != nil {
		return TokenResponse{}, err
	}
	if g := form.Get("grant_type"); g == GrantAuthorizationCode || g == GrantDeviceCode {
		// The ID-token key is loaded (or created) before the grant's
		// transaction: on SQLite that holds the only writer.
		if _, err := s.signingKey(ctx); err != nil {
			return TokenResponse{}, err
		}
	}
	switch form.Get("grant_type") {
	case GrantAuthorizationCode:
		return s.exchangeCode(ctx, form, ip)
	case GrantRefreshToken:
		return s.refresh(ctx, form, ip)
	case GrantDeviceCode:
		return s.pollDevice(ctx, form, ip)
	case "":
		return TokenResponse{}, invalidRequest("grant_type is required")
	default:
		return TokenResponse{}, oauthErr(http.StatusBadRequest, "unsupported_grant_type", "grant_type "+form.Get("grant_type")+" is not supported")
	}
}

// publicClient loads the client a token request names (public clients
// authenticate by client_id alone).
func (s *Service) publicClient(ctx context.Context, form url.Values) (*Client, error) {
	id := form.Get("client_id")
	if id == "" {
		return nil, invalidRequest("client_id is required")
	}
	c, err := s.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, invalidClient("Unknown client_id")
	}
	return c, nil
}

// pkceS256 is BASE64URL(SHA256(verifier)).
func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validPKCE checks an RFC 7636 code verifier or S256 challenge's form.
func validPKCE(v string, minLen, maxLen int) bool {
	if len(v) < minLen || len(v) > maxLen {
		return false
	}
	for _, c := range []byte(v) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func (s *Service) exchangeCode(ctx context.Context, form url.Values, ip string) (TokenResponse, error) {
	client, err := s.publicClient(ctx, form)
	if err != nil {
		return TokenResponse{}, err
	}
	code, verifier, redirect := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	if code == "" || verifier == "" || redirect == "" {
		return TokenResponse{}, invalidRequest("code, code_verifier and redirect_uri are required")
	}
	if !validPKCE(verifier, 43, 128) {
		return TokenResponse{}, invalidGrant("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
	}
	h := tokens.HashToken(code).String()
	now := s.now()
	var out TokenResponse
	var failure error
	err = s.commit(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var c storage.OAuthCode
		q := tx.NewSelect().Model(&c).Where("code_hash = ?", h)
		if s.Store.Dialect == storage.Postgres {
			q = q.For("UPDATE")
		}
		if err := q.Scan(ctx); errors.Is(err, sql.ErrNoRows) {
			return nil, invalidGrant("Unknown or expired code")
		} else if err != nil {
			return nil, err
		}
		if c.UsedTS != nil {
			// RFC 6749 §4.1.2: a code used twice revokes what it issued.
			failure = invalidGrant("The code was already used; the tokens it issued are revoked")
			return s.revokeSession(ctx, tx, c.UserID, c.DeviceID, c.ClientID, *c.UsedTS)
		}
		if now.UnixMilli() >= c.ExpiresTS {
			return nil, invalidGrant("Unknown or expired code")
		}
		if !tokens.Equal(c.ClientID, client.ClientID) {
			return nil, invalidGrant("The code was issued to another client")
		}
		if c.RedirectURI != redirect {
			return nil, invalidGrant("redirect_uri differs from the authorisation request's")
		}
		if subtle.ConstantTimeCompare([]byte(pkceS256(verifier)), []byte(c.CodeChallenge)) != 1 {
			return nil, invalidGrant("code_verifier does not match the code_challenge")
		}
		nowMS := now.UnixMilli()
		if _, err := tx.NewUpdate().Model((*storage.OAuthCode)(nil)).Set("used_ts = ?", nowMS).
			Where("code_hash = ?", h).Exec(ctx); err != nil {
			return nil, err
		}
		scope, err := ParseScope(c.Scope)
		if err != nil {
			return nil, err
		}
		g := grantee{client: client, userID: c.UserID, scope: scope, authTime: time.UnixMilli(c.CreatedTS)}
		if c.Nonce != nil {
			g.nonce = *c.Nonce
		}
		var revoked []string
		out, revoked, err = s.issue(ctx, tx, g, ip)
		return revoked, err
	})
	if err == nil && failure != nil {
		err = failure
	}
	return out, err
}

// revokeSession revokes the tokens of a device whose OAuth session began
// at or after since (the code's exchange) by client: a replayed code
// revokes what it issued, not a later session of the same device.
func (s *Service) revokeSession(ctx context.Context, tx bun.Tx, userID, deviceID, clientID string, since int64) ([]string, error) {
	var sess storage.OAuthSession
	err := tx.NewSelect().Model(&sess).Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sess.ClientID != clientID || sess.CreatedTS < since {
		return nil, nil
	}
	var revoked []string
	if err := tx.NewDelete().Model((*storage.AccessToken)(nil)).Where("user_id = ? AND device_id = ?", userID, deviceID).
		Returning("token_hash").Scan(ctx, &revoked); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err := auth.PublishRevoked(ctx, tx, revoked); err != nil {
		return nil, err
	}
	if _, err := tx.NewDelete().Model((*storage.RefreshToken)(nil)).Where("user_id = ? AND device_id = ?", userID, deviceID).Exec(ctx); err != nil {
		return nil, err
	}
	return revoked, nil
}

func (s *Service) refresh(ctx context.Context, form url.Values, ip string) (TokenResponse, error) {
	client, err := s.publicClient(ctx, form)
	if err != nil {
		return TokenResponse{}, err
	}
	rt := form.Get("refresh_token")
	if rt == "" {
		return TokenResponse{}, invalidRequest("refresh_token is required")
	}
	var row storage.RefreshToken
	err = s.Store.R.NewSelect().Model(&row).Column("user_id", "device_id").
		Where("token_hash = ?", tokens.HashToken(rt).String()).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return TokenResponse{}, invalidGrant("Unknown or revoked refresh token")
	}
	if err != nil {
		return TokenResponse{}, err
	}
	var sess storage.OAuthSession
	err = s.Store.R.NewSelect().Model(&sess).Where("user_id = ? AND device_id = ?", row.UserID, row.DeviceID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !tokens.Equal(sess.ClientID, client.ClientID)) {
		return TokenResponse{}, invalidGrant("The refresh token was not issued to this client")
	}
	if err != nil {
		return TokenResponse{}, err
	}
	t, err := s.Sessions.Refresh(ctx, rt, ip)
	if err != nil {
		return TokenResponse{}, fromMatrix(err)
	}
	return TokenResponse{AccessToken: t.AccessToken, TokenType: "Bearer", ExpiresIn: t.ExpiresInMS / 1000,
		RefreshToken: t.RefreshToken, Scope: sess.Scope}, nil
}

// Revoke answers the revocation endpoint (RFC 7009): an access or refresh
// token ends its device, like POST /logout; an unknown token is no error.
func (s *Service) Revoke(ctx context.Context, token, ip string) error {
	if err := s.allow(ip); err != nil {
		return err
	}
	if token == "" {
		return invalidRequest("token is required")
	}
	h := tokens.HashToken(token).String()
	return s.commit(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var owner struct {
			UserID   string `bun:"user_id"`
			DeviceID string `bun:"device_id"`
		}
		err := tx.NewSelect().Model((*storage.AccessToken)(nil)).Column("user_id", "device_id").
			Where("token_hash = ?", h).Scan(ctx, &owner)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.NewSelect().Model((*storage.RefreshToken)(nil)).Column("user_id", "device_id").
				Where("token_hash = ?", h).Scan(ctx, &owner)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		_, revoked, err := s.Devices.DeleteDevices(ctx, tx, owner.UserID, []string{owner.DeviceID})
		return revoked, err
	})
}

// Introspection is an RFC 7662 answer, in the shape Synapse's delegated
// auth (MSC3861) reads from Matrix Authentication Service.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	Sub       string `json:"sub,omitempty"`
	DeviceID  string `json:"device_id,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	ExpiresIn *int64 `json:"expires_in,omitempty"`
}

// AuthenticateIntrospector checks the credentials of a resource server
// (one of Config.OAuth.IntrospectionClients), in constant time.
func (s *Service) AuthenticateIntrospector(clientID, secret string) error {
	ok := false
	for _, c := range s.Config.OAuth.IntrospectionClients {
		idOK := subtle.ConstantTimeCompare([]byte(c.ClientID), []byte(clientID)) == 1
		secOK := subtle.ConstantTimeCompare([]byte(c.ClientSecret), []byte(secret)) == 1
		if idOK && secOK {
			ok = true
		}
	}
	if !ok {
		return invalidClient("Unknown client or wrong secret")
	}
	return nil
}

// Introspect describes an access token: active while it is unexpired and
// its account neither deactivated nor locked. Refresh tokens and unknown
// tokens are {"active": false}.
func (s *Service) Introspect(ctx context.Context, token string) (Introspection, error) {
	if token == "" {
		return Introspection{}, invalidRequest("token is required")
	}
	var row struct {
		UserID    string  `bun:"user_id"`
		DeviceID  string  `bun:"device_id"`
		CreatedTS int64   `bun:"created_ts"`
		ExpiresTS *int64  `bun:"expires_ts"`
		Locked    bool    `bun:"locked"`
		ClientID  *string `bun:"client_id"`
		Scope     *string `bun:"scope"`
	}
	err := s.Store.R.NewSelect().TableExpr("access_tokens AS t").
		ColumnExpr("t.user_id, t.device_id, t.created_ts, t.expires_ts, u.locked, o.client_id, o.scope").
		Join("JOIN users AS u ON u.user_id = t.user_id").
		Join("LEFT JOIN oauth_sessions AS o ON o.user_id = t.user_id AND o.device_id = t.device_id").
		Where("t.token_hash = ?", tokens.HashToken(token).String()).
		Where("u.deactivated = ?", false).Scan(ctx, &row)
	if errors.Is(err, sql.ErrNoRows) {
		return Introspection{Active: false}, nil
	}
	if err != nil {
		return Introspection{}, err
	}
	now := s.now()
	if row.Locked || (row.ExpiresTS != nil && now.UnixMilli() >= *row.ExpiresTS) {
		return Introspection{Active: false}, nil
	}
	local := strings.TrimPrefix(row.UserID, "@")
	local, _, _ = strings.Cut(local, ":")
	out := Introspection{Active: true, Username: local, Sub: row.UserID, DeviceID: row.DeviceID,
		TokenType: "access_token", Iat: row.CreatedTS / 1000, Scope: SessionScope(row.DeviceID)}
	if row.Scope != nil {
		out.Scope = *row.Scope
	}
	if row.ClientID != nil {
		out.ClientID = *row.ClientID
	}
	if row.ExpiresTS != nil {
		out.Exp = *row.ExpiresTS / 1000
		in := (*row.ExpiresTS - now.UnixMilli()) / 1000
		out.ExpiresIn = &in
	}
	return out, nil
}

// IsOAuthSession reports whether the device's tokens were issued through
// the OAuth 2.0 API (the account helper's m.oauth user-interactive auth
// asks this).
func (s *Service) IsOAuthSession(ctx context.Context, userID, deviceID string) (bool, error) {
	return s.Store.R.NewSelect().Model((*storage.OAuthSession)(nil)).
		Where("user_id = ? AND device_id = ?", userID, deviceID).Exists(ctx)
}

// Userinfo answers the OIDC userinfo endpoint for an access token's
// principal.
func (s *Service) Userinfo(p auth.Principal) map[string]any {
	local := strings.TrimPrefix(p.UserID, "@")
	local, _, _ = strings.Cut(local, ":")
	return map[string]any{"sub": p.UserID, "username": local, "device_id": p.DeviceID}
}
