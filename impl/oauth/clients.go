package oauth

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Grant types and application types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"

	AppWeb    = "web"
	AppNative = "native"
)

// supportedGrants are the grant types of the token endpoint, in the order
// the metadata lists them.
var supportedGrants = []string{GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode}

// localizable are the human-readable fields that may carry a "#tag"
// language suffix (RFC 7591 §2.2).
var localizable = []string{"client_name", "logo_uri", "tos_uri", "policy_uri"}

// Client is a registered client's metadata, as answered to it.
type Client struct {
	ClientID                 string   `json:"client_id"`
	ClientIDIssuedAt         int64    `json:"client_id_issued_at,omitempty"`
	ApplicationType          string   `json:"application_type"`
	ClientName               string   `json:"client_name,omitempty"`
	ClientURI                string   `json:"client_uri"`
	LogoURI                  string   `json:"logo_uri,omitempty"`
	TOSURI                   string   `json:"tos_uri,omitempty"`
	PolicyURI                string   `json:"policy_uri,omitempty"`
	RedirectURIs             []string `json:"redirect_uris,omitempty"`
	GrantTypes               []string `json:"grant_types"`
	ResponseTypes            []string `json:"response_types"`
	TokenEndpointAuthMethod  string   `json:"token_endpoint_auth_method"`
	Contacts                 []string `json:"contacts,omitempty"`
	IDTokenSignedResponseAlg string   `json:"id_token_signed_response_alg,omitempty"`
	// Localized holds the language-tagged variants ("client_name#fr").
	Localized map[string]string `json:"-"`
}

// MarshalJSON writes the fields and the localized variants.
func (c Client) MarshalJSON() ([]byte, error) {
	type plain Client
	js, err := json.Marshal(plain(c))
	if err != nil || len(c.Localized) == 0 {
		return js, err
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, err
	}
	for k, v := range c.Localized {
		m[k] = v
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (c *Client) UnmarshalJSON(b []byte) error {
	type plain Client
	if err := json.Unmarshal(b, (*plain)(c)); err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		if s, ok := v.(string); ok && strings.Contains(k, "#") {
			if c.Localized == nil {
				c.Localized = map[string]string{}
			}
			c.Localized[k] = s
		}
	}
	return nil
}

// HasGrant reports whether the client registered grant type g.
func (c *Client) HasGrant(g string) bool { return slices.Contains(c.GrantTypes, g) }

// Name is the client's name in the language of acceptLanguage (an
// Accept-Language header) when it registered one, else its plain name,
// else its URI's host.
func (c *Client) Name(acceptLanguage string) string {
	return c.localized("client_name", c.ClientName, acceptLanguage, hostOf(c.ClientURI))
}

// Logo is the client's logo URI in the preferred language ("" if none).
func (c *Client) Logo(acceptLanguage string) string {
	return c.localized("logo_uri", c.LogoURI, acceptLanguage, "")
}

// TOS and Policy are the terms-of-service and policy URIs.
func (c *Client) TOS(acceptLanguage string) string {
	return c.localized("tos_uri", c.TOSURI, acceptLanguage, "")
}
func (c *Client) Policy(acceptLanguage string) string {
	return c.localized("policy_uri", c.PolicyURI, acceptLanguage, "")
}

func (c *Client) localized(field, plain, acceptLanguage, fallback string) string {
	for _, part := range strings.Split(acceptLanguage, ",") {
		tag := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if tag == "" || tag == "*" {
			continue
		}
		for k, v := range c.Localized {
			f, t, _ := strings.Cut(k, "#")
			if f == field && (strings.EqualFold(t, tag) || strings.EqualFold(t, strings.SplitN(tag, "-", 2)[0])) {
				return v
			}
		}
	}
	if plain != "" {
		return plain
	}
	return fallback
}

func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Hostname()
}

// RegistrationError is an RFC 7591 §3.2.2 error.
type RegistrationError struct {
	Code        string // invalid_redirect_uri or invalid_client_metadata
	Description string
}

func (e *RegistrationError) Error() string { return e.Code + ": " + e.Description }

func badMetadata(format string, a ...any) *RegistrationError {
	return &RegistrationError{Code: "invalid_client_metadata", Description: fmt.Sprintf(format, a...)}
}

func badRedirect(format string, a ...any) *RegistrationError {
	return &RegistrationError{Code: "invalid_redirect_uri", Description: fmt.Sprintf(format, a...)}
}

// Limits of a registration.
const (
	maxRedirectURIs = 20
	maxFieldBytes   = 2048
)

// ValidateMetadata checks a registration request against the spec's
// client-metadata rules and returns the metadata to register (unknown
// fields dropped, defaults filled in, unsupported grant types left out).
func ValidateMetadata(raw map[string]any) (*Client, error) {
	str := func(k string) (string, error) {
		v, ok := raw[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", badMetadata("%s must be a string", k)
		}
		if len(s) > maxFieldBytes {
			return "", badMetadata("%s is longer than %d bytes", k, maxFieldBytes)
		}
		return s, nil
	}
	strs := func(k string) ([]string, bool, error) {
		v, ok := raw[k]
		if !ok || v == nil {
			return nil, false, nil
		}
		arr, ok := v.([]any)
		if !ok {
			return nil, true, badMetadata("%s must be an array of strings", k)
		}
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, ok := e.(string)
			if !ok || len(s) > maxFieldBytes {
				return nil, true, badMetadata("%s must be an array of strings", k)
			}
			out = append(out, s)
		}
		return out, true, nil
	}
	c := &Client{}
	var err error
	if c.ClientURI, err = str("client_uri"); err != nil {
		return nil, err
	}
	if c.ClientURI == "" {
		return nil, badMetadata("client_uri is required")
	}
	base, err := parseClientURI(c.ClientURI)
	if err != nil {
		return nil, err
	}
	if c.ApplicationType, err = str("application_type"); err != nil {
		return nil, err
	}
	switch c.ApplicationType {
	case "":
		c.ApplicationType = AppWeb
	case AppWeb, AppNative:
	default:
		return nil, badMetadata("application_type must be web or native")
	}
	if c.ClientName, err = str("client_name"); err != nil {
		return nil, err
	}
	for k, p := range map[string]*string{"logo_uri": &c.LogoURI, "tos_uri": &c.TOSURI, "policy_uri": &c.PolicyURI} {
		if *p, err = str(k); err != nil {
			return nil, err
		}
		if *p != "" {
			if err := checkCommonBase(k, *p, base); err != nil {
				return nil, err
			}
		}
	}
	// Localized variants of the human-readable fields.
	for k := range raw {
		field, tag, ok := strings.Cut(k, "#")
		if !ok || !slices.Contains(localizable, field) {
			continue
		}
		if !validLanguageTag(tag) {
			return nil, badMetadata("%s: %q is not a language tag", k, tag)
		}
		v, err := str(k)
		if err != nil {
			return nil, err
		}
		if field != "client_name" && v != "" {
			if err := checkCommonBase(k, v, base); err != nil {
				return nil, err
			}
		}
		if c.Localized == nil {
			c.Localized = map[string]string{}
		}
		c.Localized[k] = v
	}
	if c.Contacts, _, err = strs("contacts"); err != nil {
		return nil, err
	}
	method, err := str("token_endpoint_auth_method")
	if err != nil {
		return nil, err
	}
	if method != "" && method != "none" {
		return nil, badMetadata("token_endpoint_auth_method %q is not supported: clients are public (none)", method)
	}
	c.TokenEndpointAuthMethod = "none"
	if c.IDTokenSignedResponseAlg, err = str("id_token_signed_response_alg"); err != nil {
		return nil, err
	}
	if c.IDTokenSignedResponseAlg != "" && c.IDTokenSignedResponseAlg != "RS256" {
		return nil, badMetadata("id_token_signed_response_alg %q is not supported (RS256 is)", c.IDTokenSignedResponseAlg)
	}
	grants, given, err := strs("grant_types")
	if err != nil {
		return nil, err
	}
	if !given {
		grants = []string{GrantAuthorizationCode}
	}
	for _, g := range supportedGrants {
		if slices.Contains(grants, g) {
			c.GrantTypes = append(c.GrantTypes, g)
		}
	}
	if len(c.GrantTypes) == 0 {
		return nil, badMetadata("none of grant_types is supported (%s)", strings.Join(supportedGrants, ", "))
	}
	rtypes, given, err := strs("response_types")
	if err != nil {
		return nil, err
	}
	if !given {
		rtypes = []string{"code"}
	}
	for _, r := range rtypes {
		if r != "code" {
			return nil, badMetadata("response type %q is not supported (code is)", r)
		}
	}
	c.ResponseTypes = []string{}
	if len(rtypes) > 0 {
		c.ResponseTypes = []string{"code"}
	}
	if c.HasGrant(GrantAuthorizationCode) && len(c.ResponseTypes) == 0 {
		return nil, badMetadata("the authorization_code grant needs the code response type")
	}
	redirects, _, err := strs("redirect_uris")
	if err != nil {
		return nil, &RegistrationError{Code: "invalid_redirect_uri", Description: err.(*RegistrationError).Description}
	}
	if c.HasGrant(GrantAuthorizationCode) && len(redirects) == 0 {
		return nil, badRedirect("redirect_uris is required for the authorization_code grant")
	}
	if len(redirects) > maxRedirectURIs {
		return nil, badRedirect("at most %d redirect_uris", maxRedirectURIs)
	}
	for _, r := range redirects {
		if err := checkRedirectURI(c.ApplicationType, r, base); err != nil {
			return nil, err
		}
		if !slices.Contains(c.RedirectURIs, r) {
			c.RedirectURIs = append(c.RedirectURIs, r)
		}
	}
	return c, nil
}

// validLanguageTag is a loose BCP 47 check: letters, digits and hyphens.
func validLanguageTag(t string) bool {
	if t == "" || len(t) > 35 {
		return false
	}
	for _, r := range t {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// isLoopbackHost reports whether h (a URL's hostname) is the loopback
// interface by name or literal.
func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// parseClientURI checks client_uri: an absolute https URL (http only for
// a loopback host, for clients in development) without user info or
// fragment.
func parseClientURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return nil, badMetadata("client_uri must be an absolute URL")
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return nil, badMetadata("client_uri must use https")
	}
	if u.User != nil || u.Fragment != "" {
		return nil, badMetadata("client_uri must not have user info or a fragment")
	}
	return u, nil
}

// sameBase reports whether host is base's host or a subdomain of it.
func sameBase(host, base string) bool {
	host, base = strings.ToLower(host), strings.ToLower(base)
	return host == base || strings.HasSuffix(host, "."+base)
}

// checkCommonBase checks a URI field that must share client_uri's base.
func checkCommonBase(field, s string, base *url.URL) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return badMetadata("%s must be an absolute URL", field)
	}
	if u.Scheme != base.Scheme || u.User != nil || u.Fragment != "" {
		return badMetadata("%s must use the scheme of client_uri, without user info or fragment", field)
	}
	if !sameBase(u.Hostname(), base.Hostname()) {
		return badMetadata("%s must be on the host of client_uri (or a subdomain of it)", field)
	}
	return nil
}

// checkRedirectURI applies the spec's redirect URI rules.
func checkRedirectURI(appType, s string, base *url.URL) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return badRedirect("%q is not an absolute URI", s)
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return badRedirect("%q has a fragment", s)
	}
	web := func() error {
		if u.Scheme != "https" {
			return badRedirect("%q must use https", s)
		}
		if u.User != nil || u.Host == "" {
			return badRedirect("%q must have a host and no user info", s)
		}
		if !sameBase(u.Hostname(), base.Hostname()) {
			return badRedirect("%q is not on the host of client_uri (or a subdomain of it)", s)
		}
		if _, err := url.ParseQuery(u.RawQuery); err != nil {
			return badRedirect("%q has a malformed query", s)
		}
		return nil
	}
	if appType == AppWeb {
		return web()
	}
	switch {
	case u.Scheme == "https":
		return web() // claimed https URI
	case u.Scheme == "http":
		h := u.Hostname()
		if h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return badRedirect("%q: a native client's http redirect must be on localhost, 127.0.0.1 or [::1]", s)
		}
		if u.Port() != "" {
			return badRedirect("%q: a loopback redirect URI has no port (any port is accepted when authorising)", s)
		}
		if u.User != nil {
			return badRedirect("%q has user info", s)
		}
		return nil
	default:
		// Private-use scheme: the reverse-DNS of client_uri's host, no
		// authority.
		if strings.HasPrefix(s[len(u.Scheme)+1:], "//") {
			return badRedirect("%q: a private-use scheme URI has no authority (one slash at most)", s)
		}
		rev := reverseDNS(base.Hostname())
		scheme := strings.ToLower(u.Scheme)
		if scheme != rev && !strings.HasPrefix(scheme, rev+".") {
			return badRedirect("%q: the scheme must start with %q (client_uri's host in reverse-DNS notation)", s, rev)
		}
		return nil
	}
}

func reverseDNS(host string) string {
	parts := strings.Split(strings.ToLower(host), ".")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// redirectMatches reports whether the redirect_uri of an authorisation
// request matches a registered one: exactly, except that a native
// client's loopback URI (registered without a port) matches any port.
func (c *Client) redirectMatches(got string) bool {
	if slices.Contains(c.RedirectURIs, got) {
		return true
	}
	if c.ApplicationType != AppNative {
		return false
	}
	u, err := url.Parse(got)
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.User != nil || u.Fragment != "" {
		return false
	}
	h := u.Hostname()
	if h != "localhost" && h != "127.0.0.1" && h != "::1" {
		return false
	}
	host := h
	if strings.Contains(h, ":") {
		host = "[" + h + "]"
	}
	u.Host = host
	return slices.Contains(c.RedirectURIs, u.String())
}

// Register registers a client (identical metadata shares one client ID)
// and returns it as answered to the client.
func (s *Service) Register(ctx context.Context, raw map[string]any) (*Client, error) {
	c, err := ValidateMetadata(raw)
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	// Canonical enough: encoding/json sorts map keys and the struct's
	// field order is fixed.
	sum := sha256.Sum256(js)
	hash := hex.EncodeToString(sum[:])
	var existing storage.OAuthClient
	err = s.Store.R.NewSelect().Model(&existing).Where("metadata_hash = ?", hash).Scan(ctx)
	if err == nil {
		return decodeClient(existing)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	c.ClientID = tokens.RandomLocalpart() + tokens.RandomLocalpart()
	c.ClientIDIssuedAt = s.now().Unix()
	full, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	row := storage.OAuthClient{ClientID: c.ClientID, Metadata: string(full), MetadataHash: hash, CreatedTS: s.now().UnixMilli()}
	_, err = s.Store.DB.NewInsert().Model(&row).On("CONFLICT (metadata_hash) DO NOTHING").Exec(ctx)
	if err != nil {
		return nil, err
	}
	// A concurrent identical registration may have won: answer its ID.
	if err := s.Store.DB.NewSelect().Model(&existing).Where("metadata_hash = ?", hash).Scan(ctx); err != nil {
		return nil, err
	}
	return decodeClient(existing)
}

// Client returns a registered client, or nil if client_id is unknown.
func (s *Service) Client(ctx context.Context, clientID string) (*Client, error) {
	if clientID == "" || len(clientID) > 255 {
		return nil, nil
	}
	var row storage.OAuthClient
	err := s.Store.R.NewSelect().Model(&row).Where("client_id = ?", clientID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeClient(row)
}

func decodeClient(row storage.OAuthClient) (*Client, error) {
	var c Client
	if err := json.Unmarshal([]byte(row.Metadata), &c); err != nil {
		return nil, fmt.Errorf("oauth: client %s: %w", row.ClientID, err)
	}
	return &c, nil
}
