package storage

// Cross-signing and fallback keys (migration 20261205000101_crosssigning).

import "github.com/uptrace/bun"

// Cross-signing key types, as in /keys/device_signing/upload.
const (
	KeyTypeMaster      = "master"
	KeyTypeSelfSigning = "self_signing"
	KeyTypeUserSigning = "user_signing"
)

// CrossSigningKey is a local user's current cross-signing key of one type:
// the canonical JSON as uploaded (with the signatures it was uploaded
// with). KeyID is the unpadded base64 public key (the part after
// "ed25519:").
type CrossSigningKey struct {
	bun.BaseModel `bun:"table:cross_signing_keys"`
	UserID        string `bun:"user_id,pk"`
	KeyType       string `bun:"key_type,pk"`
	KeyID         string `bun:"key_id,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}

// KeySignature is a signature uploaded through /keys/signatures/upload,
// added to the target key when it is served. TargetKeyID is a device ID or
// the public key of a master key; SignerKeyID is "ed25519:…".
type KeySignature struct {
	bun.BaseModel `bun:"table:key_signatures"`
	TargetUserID  string `bun:"target_user_id,pk"`
	TargetKeyID   string `bun:"target_key_id,pk"`
	SignerUserID  string `bun:"signer_user_id,pk"`
	SignerKeyID   string `bun:"signer_key_id,pk"`
	Signature     string `bun:"signature,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// FallbackKey is a device's fallback key of one algorithm; Used is set
// once it was handed out by a claim (it stays until replaced).
type FallbackKey struct {
	bun.BaseModel `bun:"table:fallback_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	Algorithm     string `bun:"algorithm,pk"`
	KeyID         string `bun:"key_id,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
	Used          bool   `bun:"used,notnull"`
}

// RemoteCrossSigningKey is a cached master or self-signing key of a remote
// user (from m.signing_key_update, /user/devices or /user/keys/query).
type RemoteCrossSigningKey struct {
	bun.BaseModel `bun:"table:remote_cross_signing_keys"`
	UserID        string `bun:"user_id,pk"`
	KeyType       string `bun:"key_type,pk"`
	KeyJSON       string `bun:"key_json,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}
