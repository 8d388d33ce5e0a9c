package storage

import "github.com/uptrace/bun"

// The tables of the OAuth 2.0 authorisation server (impl/oauth; migration
// 20261207000701_oauth). Codes and device codes are stored only as
// SHA-256 hashes, like every other secret.

// OAuthClient is a dynamically registered client (RFC 7591). Metadata is
// the registered metadata as answered to the client (JSON); identical
// registrations share one client (MetadataHash is unique).
type OAuthClient struct {
	bun.BaseModel `bun:"table:oauth_clients"`
	ClientID      string `bun:"client_id,pk"`
	Metadata      string `bun:"metadata,notnull"`
	MetadataHash  string `bun:"metadata_hash,notnull,unique"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// OAuthCode is an authorisation code: single use (UsedTS is set by the
// exchange that spends it) and short-lived.
type OAuthCode struct {
	bun.BaseModel `bun:"table:oauth_codes"`
	CodeHash      string  `bun:"code_hash,pk"`
	ClientID      string  `bun:"client_id,notnull"`
	UserID        string  `bun:"user_id,notnull"`
	DeviceID      string  `bun:"device_id,notnull"`
	Scope         string  `bun:"scope,notnull"`
	RedirectURI   string  `bun:"redirect_uri,notnull"`
	CodeChallenge string  `bun:"code_challenge,notnull"`
	Nonce         *string `bun:"nonce"`
	CreatedTS     int64   `bun:"created_ts,notnull"`
	ExpiresTS     int64   `bun:"expires_ts,notnull"`
	UsedTS        *int64  `bun:"used_ts"`
}

// OAuthDeviceGrant is one device authorisation grant (RFC 8628). State is
// pending, approved (UserID set), denied or done (the token was issued).
type OAuthDeviceGrant struct {
	bun.BaseModel  `bun:"table:oauth_device_grants"`
	DeviceCodeHash string  `bun:"device_code_hash,pk"`
	UserCode       string  `bun:"user_code,notnull,unique"`
	ClientID       string  `bun:"client_id,notnull"`
	Scope          string  `bun:"scope,notnull"`
	DeviceID       string  `bun:"device_id,notnull"`
	State          string  `bun:"state,notnull"`
	UserID         *string `bun:"user_id"`
	IntervalS      int64   `bun:"interval_s,notnull"`
	LastPollTS     int64   `bun:"last_poll_ts,notnull"`
	CreatedTS      int64   `bun:"created_ts,notnull"`
	ExpiresTS      int64   `bun:"expires_ts,notnull"`
}

// OAuthSession marks a device whose tokens were issued through the OAuth
// 2.0 API: the client and the scope granted. It goes with the device.
type OAuthSession struct {
	bun.BaseModel `bun:"table:oauth_sessions"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	ClientID      string `bun:"client_id,notnull"`
	Scope         string `bun:"scope,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// OAuthKey is a key signing ID tokens (the JWKS publishes its public
// half). The first process that needs one creates it.
type OAuthKey struct {
	bun.BaseModel `bun:"table:oauth_keys"`
	KID           string `bun:"kid,pk"`
	Alg           string `bun:"alg,notnull"`
	PrivateKey    string `bun:"private_key,notnull"` // PKCS#8 PEM
	CreatedTS     int64  `bun:"created_ts,notnull"`
}
