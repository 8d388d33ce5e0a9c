// Package config holds Myelin's typed configuration. Values come, lowest
// precedence first, from Defaults(), an optional YAML file (--config or
// MYELIN_CONFIG), MYELIN_* environment variables, and command-line flags.
// Verify() rejects bad values with one clear line before anything starts.
package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/myelin-hs/myelin/impl/mxid"
)

// Registration modes.
const (
	RegistrationDisabled = "disabled"
	RegistrationOpen     = "open"
	RegistrationToken    = "token"
)

// Authentication APIs (--auth).
const (
	AuthLegacy = "legacy"
	AuthOAuth  = "oauth"
	AuthBoth   = "both"
)

// Config is the whole configuration.
type Config struct {
	Listen string `yaml:"listen"`
	// MetricsListen is where Prometheus metrics are served ("": nowhere).
	MetricsListen string `yaml:"metrics_listen"`
	ServerName    string `yaml:"server_name"`
	Database      string `yaml:"database"`
	PublicBaseURL string `yaml:"public_base_url"`
	// DatabaseMaxConns is the PostgreSQL pool size (or SQLite reader pool).
	DatabaseMaxConns int `yaml:"database_max_conns"`
	// TokenCacheSize bounds the in-memory access-token cache (0: off).
	TokenCacheSize int `yaml:"token_cache_size"`

	Registration  string `yaml:"registration"`
	GuestsEnabled bool   `yaml:"guests_enabled"`

	MaxBodyBytes  int64         `yaml:"max_body_bytes"`
	UIASessionTTL time.Duration `yaml:"uia_session_ttl"`
	LoginTokenTTL time.Duration `yaml:"login_token_ttl"`
	// AccessTokenLifetime is the lifetime of access tokens issued to
	// clients that asked for a refresh token (refresh_token: true); other
	// clients get non-expiring tokens.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// GetLoginToken enables POST /login/get_token (m.get_login_token).
	GetLoginToken bool `yaml:"get_login_token"`

	// Auth says which authentication APIs are served: the legacy one
	// (POST /login, /register with UIA), the OAuth 2.0 API, or both.
	Auth  string      `yaml:"auth"`
	OAuth OAuthConfig `yaml:"oauth"`

	Password PasswordPolicy `yaml:"password"`
	Argon2   Argon2         `yaml:"argon2"`
	// Pepper is an optional server-side secret mixed into password hashes.
	Pepper string `yaml:"pepper"`

	RateLimit RateLimits `yaml:"rate_limit"`
	// TrustedProxies lists CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`

	LastSeenFlushInterval time.Duration `yaml:"last_seen_flush_interval"`

	// Federation.
	FederationResolve  map[string]string `yaml:"federation_resolve"`
	FederationPeers    []string          `yaml:"federation_peers"`
	PublishDeviceNames bool              `yaml:"publish_device_names"`
	KeyValidity        time.Duration     `yaml:"key_validity"`
	FederationTestDrop int               `yaml:"-"` // test-only: drop every Nth outgoing EDU
	// FederationListen is where the federation API is served over TLS
	// with TLSCert and TLSKey ("": only on Listen, e.g. behind a proxy
	// that terminates TLS).
	FederationListen string `yaml:"federation_listen"`
	TLSCert          string `yaml:"tls_cert"`
	TLSKey           string `yaml:"tls_key"`
	// FederationDeviceListTTL is how long a remote user's device list
	// fetched for a query answers later queries, when no updates keep it
	// current; FederationDeviceListTrust is how long after the last update
	// about a user its list counts as kept current.
	FederationDeviceListTTL   time.Duration `yaml:"federation_device_list_ttl"`
	FederationDeviceListTrust time.Duration `yaml:"federation_device_list_trust"`

	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`

	// AppServiceConfigFiles are the application service registration
	// files (impl/appservice reads and checks them; re-read on SIGHUP).
	AppServiceConfigFiles []string `yaml:"app_service_config_files"`
}

// OAuthConfig tunes the OAuth 2.0 authorisation server (impl/oauth).
type OAuthConfig struct {
	// IntrospectionClients are the confidential clients (resource servers,
	// e.g. a homeserver in delegated-auth mode) allowed to call the
	// introspection endpoint (RFC 7662).
	IntrospectionClients []OAuthClientSecret `yaml:"introspection_clients"`
	// CodeTTL is the lifetime of an authorisation code.
	CodeTTL time.Duration `yaml:"code_ttl"`
	// DeviceCodeTTL is the lifetime of a device authorisation grant's
	// device and user codes; DeviceInterval the polling interval clients
	// are told.
	DeviceCodeTTL  time.Duration `yaml:"device_code_ttl"`
	DeviceInterval time.Duration `yaml:"device_interval"`
}

// OAuthClientSecret is a confidential client's credentials.
type OAuthClientSecret struct {
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
}

// LegacyAuth reports whether the legacy login and registration API is
// served.
func (c *Config) LegacyAuth() bool { return c.Auth != AuthOAuth }

// OAuthEnabled reports whether the OAuth 2.0 API is served.
func (c *Config) OAuthEnabled() bool { return c.Auth != AuthLegacy }

// PasswordPolicy is checked on registration and password change.
type PasswordPolicy struct {
	MinLength     int  `yaml:"min_length"`
	RequireDigit  bool `yaml:"require_digit"`
	RequireSymbol bool `yaml:"require_symbol"`
	RequireUpper  bool `yaml:"require_upper"`
	RequireLower  bool `yaml:"require_lower"`
}

// Argon2 are the argon2id parameters for new password hashes.
type Argon2 struct {
	MemoryKiB   uint32 `yaml:"memory_kib"`
	Iterations  uint32 `yaml:"iterations"`
	Parallelism uint8  `yaml:"parallelism"`
}

// RateLimits configures the token buckets on credential endpoints.
type RateLimits struct {
	Enabled bool `yaml:"enabled"`
	// PerIP and PerAccount apply to login, register, register/available,
	// password and deactivate.
	PerIP      Bucket `yaml:"per_ip"`
	PerAccount Bucket `yaml:"per_account"`
	// FailedLogin limits failed logins per account, across all processes.
	FailedLogin Bucket `yaml:"failed_login"`
	// LoginToken limits POST /login/get_token (and the login tokens of
	// confirmed SSO logins) per account, across all
	// processes (the spec suggests about one a minute); unset (zero) is
	// the default, 1 a minute with a burst of 3.
	LoginToken Bucket `yaml:"login_token"`
}

// Bucket is a token bucket: Rate tokens per second, up to Burst.
type Bucket struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Defaults returns the safe defaults.
func Defaults() Config {
	return Config{
		Listen:              "127.0.0.1:8008",
		ServerName:          "localhost",
		Database:            "./data/myelin.db",
		DatabaseMaxConns:    4,
		TokenCacheSize:      65536,
		Registration:        RegistrationDisabled,
		MaxBodyBytes:        1 << 20,
		UIASessionTTL:       15 * time.Minute,
		LoginTokenTTL:       2 * time.Minute,
		AccessTokenLifetime: 5 * time.Minute,
		Auth:                AuthBoth,
		OAuth:               OAuthConfig{CodeTTL: 2 * time.Minute, DeviceCodeTTL: 15 * time.Minute, DeviceInterval: 5 * time.Second},
		Password:            PasswordPolicy{MinLength: 8},
		Argon2:              Argon2{MemoryKiB: 19456, Iterations: 2, Parallelism: 1},
		RateLimit: RateLimits{
			Enabled:     true,
			PerIP:       Bucket{Rate: 2, Burst: 20},
			PerAccount:  Bucket{Rate: 1, Burst: 10},
			FailedLogin: Bucket{Rate: 1.0 / 60, Burst: 5},
			LoginToken:  Bucket{Rate: 1.0 / 60, Burst: 3},
		},
		LastSeenFlushInterval:     60 * time.Second,
		PublishDeviceNames:        true,
		KeyValidity:               7 * 24 * time.Hour,
		FederationDeviceListTTL:   5 * time.Second,
		FederationDeviceListTrust: time.Hour,
		LogLevel:                  "info",
		LogFormat:                 "text",
	}
}

// Verify checks every value and returns the first problem as one line.
func (c *Config) Verify() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port: %v", c.Listen, err)
	}
	if !mxid.ValidServerName(c.ServerName) || len(c.ServerName) > 230 {
		return fmt.Errorf("server-name: %q is not a valid Matrix server name", c.ServerName)
	}
	if c.Database == "" {
		return errors.New("database: must not be empty")
	}
	if c.PublicBaseURL != "" {
		u, err := url.Parse(c.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("public-base-url: %q is not an http(s) URL", c.PublicBaseURL)
		}
	}
	switch c.Registration {
	case RegistrationDisabled, RegistrationOpen, RegistrationToken:
	default:
		return fmt.Errorf("registration: %q is not one of disabled, open, token", c.Registration)
	}
	if c.MetricsListen != "" {
		_, port, err := net.SplitHostPort(c.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics-listen: %q is not host:port (%v)", c.MetricsListen, err)
		}
		if c.MetricsListen == c.Listen && port != "0" {
			return fmt.Errorf("metrics-listen: %q is also listen: metrics need their own address", c.MetricsListen)
		}
	}
	if c.DatabaseMaxConns < 1 || c.DatabaseMaxConns > 1000 {
		return fmt.Errorf("database-max-conns: %d is out of range 1..1000", c.DatabaseMaxConns)
	}
	if c.TokenCacheSize < 0 || c.TokenCacheSize > 10_000_000 {
		return fmt.Errorf("token-cache-size: %d is out of range 0..10000000", c.TokenCacheSize)
	}
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("max-body-bytes: %d is below 1024", c.MaxBodyBytes)
	}
	if c.UIASessionTTL < time.Second {
		return fmt.Errorf("uia-session-ttl: %s is too short", c.UIASessionTTL)
	}
	if c.LoginTokenTTL < time.Second {
		return fmt.Errorf("login-token-ttl: %s is too short", c.LoginTokenTTL)
	}
	if c.AccessTokenLifetime < time.Second {
		return fmt.Errorf("access-token-lifetime: %s is too short", c.AccessTokenLifetime)
	}
	switch c.Auth {
	case AuthLegacy, AuthOAuth, AuthBoth:
	default:
		return fmt.Errorf("auth: %q is not one of legacy, oauth, both", c.Auth)
	}
	if c.OAuth.CodeTTL < time.Second || c.OAuth.CodeTTL > 10*time.Minute {
		return fmt.Errorf("oauth.code_ttl: %s is out of range 1s..10m (RFC 6749 recommends at most 10 minutes)", c.OAuth.CodeTTL)
	}
	if c.OAuth.DeviceCodeTTL < 10*time.Second || c.OAuth.DeviceCodeTTL > 24*time.Hour {
		return fmt.Errorf("oauth.device_code_ttl: %s is out of range 10s..24h", c.OAuth.DeviceCodeTTL)
	}
	if c.OAuth.DeviceInterval < time.Second || c.OAuth.DeviceInterval > time.Minute || c.OAuth.DeviceInterval%time.Second != 0 {
		return fmt.Errorf("oauth.device_interval: %s is not whole seconds in 1s..1m", c.OAuth.DeviceInterval)
	}
	seen := map[string]bool{}
	for i, ic := range c.OAuth.IntrospectionClients {
		if ic.ClientID == "" || len(ic.ClientSecret) < 16 {
			return fmt.Errorf("oauth.introspection_clients[%d]: client_id must be set and client_secret at least 16 characters", i)
		}
		if seen[ic.ClientID] {
			return fmt.Errorf("oauth.introspection_clients[%d]: client_id %q is listed twice", i, ic.ClientID)
		}
		seen[ic.ClientID] = true
	}
	if c.Password.MinLength < 1 || c.Password.MinLength > 512 {
		return fmt.Errorf("password.min_length: %d is out of range 1..512", c.Password.MinLength)
	}
	if c.Argon2.Iterations < 1 || c.Argon2.Parallelism < 1 || c.Argon2.MemoryKiB < 8*uint32(c.Argon2.Parallelism) || c.Argon2.MemoryKiB > 4<<20 {
		return fmt.Errorf("argon2: memory_kib=%d iterations=%d parallelism=%d are not valid argon2id parameters",
			c.Argon2.MemoryKiB, c.Argon2.Iterations, c.Argon2.Parallelism)
	}
	if lt := c.RateLimit.LoginToken; lt != (Bucket{}) && (lt.Rate <= 0 || lt.Burst < 1) {
		return fmt.Errorf("rate_limit.login_token: rate must be > 0 and burst >= 1")
	}
	for name, b := range map[string]Bucket{"per_ip": c.RateLimit.PerIP, "per_account": c.RateLimit.PerAccount, "failed_login": c.RateLimit.FailedLogin} {
		if c.RateLimit.Enabled && (b.Rate <= 0 || b.Burst < 1) {
			return fmt.Errorf("rate_limit.%s: rate must be > 0 and burst >= 1", name)
		}
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		return err
	}
	if c.LastSeenFlushInterval < 10*time.Millisecond {
		return fmt.Errorf("last-seen-flush-interval: %s is too short", c.LastSeenFlushInterval)
	}
	for name, base := range c.FederationResolve {
		u, err := url.Parse(base)
		if name == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("federation-resolve: %q=%q is not NAME=http(s)://host[:port]", name, base)
		}
	}
	for _, peer := range c.FederationPeers {
		if !mxid.ValidServerName(peer) {
			return fmt.Errorf("federation-peers: %q is not a server name", peer)
		}
	}
	if c.FederationTestDrop < 0 {
		return fmt.Errorf("federation-test-drop: %d is negative", c.FederationTestDrop)
	}
	if err := c.verifyTLS(); err != nil {
		return err
	}
	if c.FederationDeviceListTTL < 100*time.Millisecond || c.FederationDeviceListTTL > time.Hour {
		return fmt.Errorf("federation-device-list-ttl: %s is out of range 100ms..1h", c.FederationDeviceListTTL)
	}
	if c.FederationDeviceListTrust < time.Second || c.FederationDeviceListTrust > 30*24*time.Hour {
		return fmt.Errorf("federation-device-list-trust: %s is out of range 1s..30d", c.FederationDeviceListTrust)
	}
	if c.KeyValidity < time.Hour {
		return fmt.Errorf("key-validity: %s is shorter than an hour", c.KeyValidity)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log-format: %q is not one of text, json", c.LogFormat)
	}
	return nil
}

// verifyTLS checks the federation listener: an address apart from the
// others, with a certificate and key that load and match.
func (c *Config) verifyTLS() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key: set both or neither")
	}
	if c.FederationListen == "" {
		if c.TLSCert != "" {
			return errors.New("tls-cert: set federation-listen too (federation is served over TLS on its own address)")
		}
		return nil
	}
	_, port, err := net.SplitHostPort(c.FederationListen)
	if err != nil {
		return fmt.Errorf("federation-listen: %q is not host:port (%v)", c.FederationListen, err)
	}
	if port != "0" && (c.FederationListen == c.Listen || c.FederationListen == c.MetricsListen) {
		return fmt.Errorf("federation-listen: %q is also listen or metrics-listen: federation needs its own address", c.FederationListen)
	}
	if c.TLSCert == "" {
		return errors.New("federation-listen: set tls-cert and tls-key (other servers reach federation over HTTPS only)")
	}
	if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
		return fmt.Errorf("tls-cert/tls-key: %v", err)
	}
	return nil
}

// TrustedProxyPrefixes parses TrustedProxies.
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted-proxies: %q is not an IP or CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted-proxies: %q is not an IP or CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// BaseURL is the URL clients reach this server at.
func (c *Config) BaseURL() string {
	if c.PublicBaseURL != "" {
		return strings.TrimRight(c.PublicBaseURL, "/")
	}
	return "http://" + c.Listen
}

// setting is one value settable by flag and environment variable.
type setting struct {
	name  string // flag name; env is MYELIN_ + upper(name with - → _)
	usage string
	set   func(c *Config, v string) error
}

func str(p func(c *Config) *string) func(c *Config, v string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(c *Config) *time.Duration) func(c *Config, v string) error {
	return func(c *Config, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		*p(c) = d
		return nil
	}
}

func boolean(p func(c *Config) *bool) func(c *Config, v string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*p(c) = b
		return nil
	}
}

func integer(p func(c *Config) *int) func(c *Config, v string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*p(c) = n
		return nil
	}
}

// parseDuration accepts Go durations plus a day suffix ("90d").
func parseDuration(v string) (time.Duration, error) {
	if strings.HasSuffix(v, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(v, "d"))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 90s, 15m, 7d)", v)
	}
	return d, nil
}

// ParseDuration is parseDuration for other packages (admin CLI).
func ParseDuration(v string) (time.Duration, error) { return parseDuration(v) }

var settings = []setting{
	{"listen", "address to listen on (host:port)", str(func(c *Config) *string { return &c.Listen })},
	{"metrics-listen", "address to serve Prometheus metrics on at /metrics (host:port; default: off)", str(func(c *Config) *string { return &c.MetricsListen })},
	{"server-name", "the Matrix server name (the part after ':' in user IDs)", str(func(c *Config) *string { return &c.ServerName })},
	{"database", "SQLite file path (or sqlite://PATH) or postgres://… URL", str(func(c *Config) *string { return &c.Database })},
	{"database-max-conns", "PostgreSQL pool size / SQLite reader pool size", integer(func(c *Config) *int { return &c.DatabaseMaxConns })},
	{"token-cache-size", "access tokens kept in memory to spare a database query per request (0: off)", integer(func(c *Config) *int { return &c.TokenCacheSize })},
	{"public-base-url", "URL clients use to reach this server (for .well-known)", str(func(c *Config) *string { return &c.PublicBaseURL })},
	{"registration", "registration mode: disabled, open or token", str(func(c *Config) *string { return &c.Registration })},
	{"guests", "allow guest registration (kind=guest)", boolean(func(c *Config) *bool { return &c.GuestsEnabled })},
	{"max-body-bytes", "largest request body accepted", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		c.MaxBodyBytes = n
		return nil
	}},
	{"uia-session-ttl", "lifetime of a user-interactive auth session", dur(func(c *Config) *time.Duration { return &c.UIASessionTTL })},
	{"login-token-ttl", "lifetime of an m.login.token (admin CLI and POST /login/get_token)", dur(func(c *Config) *time.Duration { return &c.LoginTokenTTL })},
	{"access-token-lifetime", "lifetime of access tokens of clients that use refresh tokens", dur(func(c *Config) *time.Duration { return &c.AccessTokenLifetime })},
	{"get-login-token", "allow POST /login/get_token (log a new client in from an existing session)", boolean(func(c *Config) *bool { return &c.GetLoginToken })},
	{"auth", "authentication APIs served: legacy (POST /login, /register), oauth (the OAuth 2.0 API) or both", str(func(c *Config) *string { return &c.Auth })},
	{"password-min-length", "minimum password length", integer(func(c *Config) *int { return &c.Password.MinLength })},
	{"pepper", "server-side secret mixed into new password hashes", str(func(c *Config) *string { return &c.Pepper })},
	{"rate-limit", "on or off: rate limits on credential endpoints", func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "on", "true", "1":
			c.RateLimit.Enabled = true
		case "off", "false", "0":
			c.RateLimit.Enabled = false
		default:
			return fmt.Errorf("%q is not on or off", v)
		}
		return nil
	}},
	{"trusted-proxies", "comma-separated IPs/CIDRs whose X-Forwarded-For is trusted", func(c *Config, v string) error {
		c.TrustedProxies = splitList(v)
		return nil
	}},
	{"last-seen-flush-interval", "how often buffered last-seen updates are written", dur(func(c *Config) *time.Duration { return &c.LastSeenFlushInterval })},
	{"federation-resolve", "NAME=URL: reach server NAME at base URL (repeatable; env: comma separated)", func(c *Config, v string) error {
		for _, item := range splitList(v) {
			name, base, ok := strings.Cut(item, "=")
			if !ok {
				return fmt.Errorf("%q is not NAME=URL", item)
			}
			if c.FederationResolve == nil {
				c.FederationResolve = map[string]string{}
			}
			c.FederationResolve[strings.TrimSpace(name)] = strings.TrimSpace(base)
		}
		return nil
	}},
	{"federation-peers", "comma-separated servers that always receive device-list updates", func(c *Config, v string) error {
		c.FederationPeers = append(c.FederationPeers, splitList(v)...)
		return nil
	}},
	{"publish-device-names", "publish device display names over federation", boolean(func(c *Config) *bool { return &c.PublishDeviceNames })},
	{"key-validity", "valid_until_ts horizon of the published signing key", dur(func(c *Config) *time.Duration { return &c.KeyValidity })},
	{"federation-listen", "address to serve the federation API on over TLS (host:port; needs tls-cert and tls-key)", str(func(c *Config) *string { return &c.FederationListen })},
	{"tls-cert", "PEM certificate (chain) of the federation listener; reloaded when the file changes", str(func(c *Config) *string { return &c.TLSCert })},
	{"tls-key", "PEM private key of the federation listener", str(func(c *Config) *string { return &c.TLSKey })},
	{"federation-device-list-ttl", "how long a remote user's device list fetched for a query answers later ones, when no updates keep it current", dur(func(c *Config) *time.Duration { return &c.FederationDeviceListTTL })},
	{"federation-device-list-trust", "how long after the last update about a remote user its cached device list counts as kept current", dur(func(c *Config) *time.Duration { return &c.FederationDeviceListTrust })},
	{"log-level", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
	{"log-format", "text or json", str(func(c *Config) *string { return &c.LogFormat })},
	{"appservice-config", "application service registration file (repeatable; env: comma separated; re-read on SIGHUP)", func(c *Config, v string) error {
		c.AppServiceConfigFiles = append(c.AppServiceConfigFiles, splitList(v)...)
		return nil
	}},
	{"federation-test-drop", "TEST ONLY: drop every Nth outgoing device-list EDU", integer(func(c *Config) *int { return &c.FederationTestDrop })},
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// EnvName is the environment variable for a flag name.
func EnvName(flagName string) string {
	return "MYELIN_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// multi lets a flag be repeated; each occurrence is applied in order.
type multi struct {
	s    setting
	vals *[]string
}

func (m multi) String() string { return "" }
func (m multi) Set(v string) error {
	*m.vals = append(*m.vals, v)
	return nil
}

// SplitArgs separates the configuration flags in args (--database,
// --server-name, --config, … in any of Go's flag forms, wherever they
// stand) from the rest, keeping the order of each, so an admin command's
// own flags and arguments can be mixed with them:
// `myelin user create alice --database x.db` and
// `myelin user --database x.db create alice` mean the same. A "--" ends
// the flags: everything after it is left as is.
func SplitArgs(args []string) (configArgs, rest []string) {
	isSetting := map[string]bool{"config": true, "h": true, "help": true}
	for _, s := range settings {
		isSetting[s.name] = true
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return configArgs, append(rest, args[i:]...)
		}
		name, hasValue := strings.TrimLeft(a, "-"), false
		if n, _, ok := strings.Cut(name, "="); ok {
			name, hasValue = n, true
		}
		if !strings.HasPrefix(a, "-") || !isSetting[name] {
			rest = append(rest, a)
			continue
		}
		configArgs = append(configArgs, a)
		if !hasValue && name != "h" && name != "help" && i+1 < len(args) {
			i++
			configArgs = append(configArgs, args[i])
		}
	}
	return configArgs, rest
}

// Load builds the configuration from args (without the program name),
// the environment and the optional YAML file, then verifies it.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
	configPath := fs.String("config", "", "optional YAML configuration file (env MYELIN_CONFIG)")
	raw := map[string]*[]string{}
	for _, s := range settings {
		vals := &[]string{}
		raw[s.name] = vals
		fs.Var(multi{s, vals}, s.name, s.usage+" (env "+EnvName(s.name)+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c := Defaults()
	path := *configPath
	if path == "" {
		path = getenv("MYELIN_CONFIG")
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %v", path, err)
		}
	}
	for _, s := range settings {
		if v := getenv(EnvName(s.name)); v != "" {
			if err := s.set(&c, v); err != nil {
				return nil, fmt.Errorf("%s: %v", EnvName(s.name), err)
			}
		}
	}
	for _, s := range settings {
		for _, v := range *raw[s.name] {
			if err := s.set(&c, v); err != nil {
				return nil, fmt.Errorf("--%s: %v", s.name, err)
			}
		}
	}
	if err := c.Verify(); err != nil {
		return nil, err
	}
	return &c, nil
}
