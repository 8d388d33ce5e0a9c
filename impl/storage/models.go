package storage

// The models below are the tables of migration 20261122000001_core. Times
// are milliseconds since the Unix epoch, as everywhere in Matrix.
// (The migration package declares its own frozen copies of the table
// definitions, so later edits here cannot change what an old migration did.)

import "github.com/uptrace/bun"

// User is a local account. Deactivated accounts keep their row so the user
// ID is never handed out again.
type User struct {
	bun.BaseModel `bun:"table:users"`
	UserID        string `bun:"user_id,pk"`
	PasswordHash  string `bun:"password_hash,nullzero"`
	IsGuest       bool   `bun:"is_guest,notnull"`
	Deactivated   bool   `bun:"deactivated,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
	// Migration 20261205000401: a server admin (may lock and suspend
	// others); locked (every request but logout answers M_USER_LOCKED);
	// suspended (some actions answer M_USER_SUSPENDED); erased (deactivated
	// with erase: true, nothing kept beyond the ID).
	Admin     bool `bun:"admin,notnull"`
	Locked    bool `bun:"locked,notnull"`
	Suspended bool `bun:"suspended,notnull"`
	Erased    bool `bun:"erased,notnull"`
}

// Device is one of a user's devices.
type Device struct {
	bun.BaseModel `bun:"table:devices"`
	UserID        string  `bun:"user_id,pk"`
	DeviceID      string  `bun:"device_id,pk"`
	DisplayName   *string `bun:"display_name"`
	LastSeenIP    *string `bun:"last_seen_ip"`
	LastSeenTS    *int64  `bun:"last_seen_ts"`
	CreatedTS     int64   `bun:"created_ts,notnull"`
}

// AccessToken binds a token (stored only as its SHA-256) to one device. A
// unique index on (user_id, device_id) enforces "at most one live token per
// device"; deleting the device cascades to its token.
type AccessToken struct {
	bun.BaseModel `bun:"table:access_tokens"`
	TokenHash     string `bun:"token_hash,pk"`
	UserID        string `bun:"user_id,notnull"`
	DeviceID      string `bun:"device_id,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
	// ExpiresTS is when the token stops working (nil: never); only tokens
	// of clients that use refresh tokens expire (migration 20261205000401).
	ExpiresTS *int64 `bun:"expires_ts"`
	// RetireRefresh is the hash of the refresh token that was refreshed to
	// issue this token: the first use of this token consumes it.
	RetireRefresh *string `bun:"retire_refresh"`
}

// RefreshToken is a refresh token (stored only as its SHA-256) of one
// device (migration 20261205000401). A refresh issues a successor
// (NextHash; its PrevHash points back); the token stays valid until the
// successor or the successor's access token is first used, which sets
// ConsumedTS. Presenting a consumed token again means it was stolen.
// Deleting the device cascades to its refresh tokens.
type RefreshToken struct {
	bun.BaseModel `bun:"table:refresh_tokens"`
	TokenHash     string  `bun:"token_hash,pk"`
	UserID        string  `bun:"user_id,notnull"`
	DeviceID      string  `bun:"device_id,notnull"`
	PrevHash      *string `bun:"prev_hash"`
	NextHash      *string `bun:"next_hash"`
	ConsumedTS    *int64  `bun:"consumed_ts"`
	CreatedTS     int64   `bun:"created_ts,notnull"`
}

// UIASession is a user-interactive authentication session. It lives in the
// database so it survives restarts and works across server processes.
type UIASession struct {
	bun.BaseModel `bun:"table:uia_sessions"`
	SessionID     string `bun:"session_id,pk"`
	// Operation binds the session to what it was started for, e.g.
	// "register" or "delete_device:<sha256 of the device id>".
	Operation string `bun:"operation,notnull"`
	// UserID is the account the session authenticates ("" for register).
	UserID    string `bun:"user_id,notnull"`
	Completed string `bun:"completed,notnull"` // JSON array of stage types
	Params    string `bun:"params,notnull"`    // JSON object remembered from the first request
	Result    string `bun:"result,notnull"`    // JSON of the final response (idempotent retries)
	CreatedTS int64  `bun:"created_ts,notnull"`
	ExpiresTS int64  `bun:"expires_ts,notnull"`
	// RegistrationToken is the token whose use this session has reserved
	// (migration 20261123000010); the use is counted when the session
	// finishes and released when it expires unfinished.
	RegistrationToken *string `bun:"registration_token"`
}

// RegistrationToken gates registration in "token" mode.
type RegistrationToken struct {
	bun.BaseModel `bun:"table:registration_tokens"`
	Token         string `bun:"token,pk"`
	UsesAllowed   *int64 `bun:"uses_allowed"`
	Pending       int64  `bun:"pending,notnull"`
	Completed     int64  `bun:"completed,notnull"`
	ExpiryTS      *int64 `bun:"expiry_ts"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// LoginToken is a short-lived single-use m.login.token.
type LoginToken struct {
	bun.BaseModel `bun:"table:login_tokens"`
	TokenHash     string `bun:"token_hash,pk"`
	UserID        string `bun:"user_id,notnull"`
	ExpiresTS     int64  `bun:"expires_ts,notnull"`
}

// ThreePID binds a third-party identifier to a user.
type ThreePID struct {
	bun.BaseModel `bun:"table:threepids"`
	Medium        string `bun:"medium,pk"`
	Address       string `bun:"address,pk"`
	UserID        string `bun:"user_id,notnull"`
	AddedTS       int64  `bun:"added_ts,notnull"`
}

// UserStream holds the last stream_id allocated for a user's device-list
// change stream. Allocation is an upsert-increment inside the transaction
// that makes the change, so ids are gap-free, strictly increasing and safe
// with several processes.
type UserStream struct {
	bun.BaseModel `bun:"table:user_streams"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,notnull"`
}

// DeviceListChange is one row of a user's device-list change stream.
type DeviceListChange struct {
	bun.BaseModel `bun:"table:device_list_stream"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,pk"`
	DeviceID      string `bun:"device_id,notnull"`
	Deleted       bool   `bun:"deleted,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
	// CrossSigning marks a change of the user's cross-signing keys
	// (migration 20261205000101); DeviceID is then the key's public key.
	CrossSigning bool `bun:"cross_signing,notnull"`
}

// DeviceKeys are a device's uploaded identity keys (the signed JSON object).
type DeviceKeys struct {
	bun.BaseModel `bun:"table:device_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	KeyJSON       string `bun:"key_json,notnull"`
}

// OneTimeKey is one uploaded one-time key; KeyID is "algorithm:id".
type OneTimeKey struct {
	bun.BaseModel `bun:"table:one_time_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	KeyID         string `bun:"key_id,pk"`
	Algorithm     string `bun:"algorithm,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
	// UploadSeq orders uploads of a device (migration 20261205000101):
	// keys are claimed oldest upload first.
	UploadSeq int64 `bun:"upload_seq,notnull"`
}

// RateLimitBucket is a token bucket shared by every server process
// (migration 20261123000010): failed logins per account.
type RateLimitBucket struct {
	bun.BaseModel `bun:"table:rate_limit_buckets"`
	Key           string  `bun:"key,pk"`
	Tokens        float64 `bun:"tokens,notnull"`
	UpdatedTS     int64   `bun:"updated_ts,notnull"`
}
