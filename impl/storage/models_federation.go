package storage

// Federation tables (migration 20261123000030_federation): this server's
// signing keys, other servers' keys, the device-list outbox and its
// per-destination state, received transactions, subscribers to local users'
// device lists, and the cache of remote users' device lists.

import "github.com/uptrace/bun"

// SigningKey is one of this server's ed25519 signing keys. Current is 1 on
// the key in use and NULL on retired keys; a unique index on it makes "one
// current key" a database fact, so several processes starting at once agree
// on the key (insert-if-absent, then read).
type SigningKey struct {
	bun.BaseModel `bun:"table:signing_keys"`
	KeyID         string `bun:"key_id,pk"`
	Seed          string `bun:"seed,notnull"` // unpadded base64 of the 32-byte ed25519 seed
	CreatedTS     int64  `bun:"created_ts,notnull"`
	ExpiredTS     *int64 `bun:"expired_ts"`
	Current       *int   `bun:"is_current"`
}

// ServerKey is a verified public key of another server, cached until
// ValidUntilTS (already capped at fetch time + 7 days, as the spec asks).
type ServerKey struct {
	bun.BaseModel `bun:"table:server_keys"`
	ServerName    string `bun:"server_name,pk"`
	KeyID         string `bun:"key_id,pk"`
	PublicKey     string `bun:"public_key,notnull"` // unpadded base64
	ValidUntilTS  int64  `bun:"valid_until_ts,notnull"`
	FetchedTS     int64  `bun:"fetched_ts,notnull"`
}

// DeviceListSubscriber records that a remote server asked for a local
// user's devices or keys, so it hears about that user's changes.
type DeviceListSubscriber struct {
	bun.BaseModel `bun:"table:device_list_subscribers"`
	UserID        string `bun:"user_id,pk"`
	ServerName    string `bun:"server_name,pk"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// OutboxEDU is one EDU waiting to be sent to Destination. Rows are written
// in the transaction of the change they describe and deleted once the
// destination acknowledged them; ID orders them per destination. TxnID is
// set when the row is put in a transaction, so a retry (also after a crash)
// resends exactly the same rows under the same txnId.
type OutboxEDU struct {
	bun.BaseModel `bun:"table:federation_outbox"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Destination   string `bun:"destination,notnull"`
	EDUType       string `bun:"edu_type,notnull"`
	Content       string `bun:"content,notnull"` // JSON object
	TxnID         string `bun:"txn_id,notnull"`  // "" until batched
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// Destination is the sending state of one remote server: its backoff and
// the lease of the process currently sending to it (one transaction in
// flight per destination, across processes).
type Destination struct {
	bun.BaseModel `bun:"table:federation_destinations"`
	Destination   string `bun:"destination,pk"`
	Failures      int    `bun:"failures,notnull"`
	NextAttemptTS int64  `bun:"next_attempt_ts,notnull"`
	LeaseUntilTS  int64  `bun:"lease_until_ts,notnull"`
	LeaseOwner    string `bun:"lease_owner,notnull"`
}

// ReceivedTxn makes PUT /send/{txnId} idempotent per (origin, txnId).
type ReceivedTxn struct {
	bun.BaseModel `bun:"table:federation_received_txns"`
	Origin        string `bun:"origin,pk"`
	TxnID         string `bun:"txn_id,pk"`
	ReceivedTS    int64  `bun:"received_ts,notnull"`
}

// RemoteDeviceList is the state of the cached device list of a remote
// user. Every stream_id up to KnownThrough is accounted for (by a snapshot
// or applied EDUs); ids applied above it are rows of RemoteDeviceSeen. The
// list needs a resync while StaleGen > ResyncedGen.
type RemoteDeviceList struct {
	bun.BaseModel `bun:"table:remote_device_lists"`
	UserID        string `bun:"user_id,pk"`
	ServerName    string `bun:"server_name,notnull"`
	KnownThrough  int64  `bun:"known_through,notnull"`
	StaleGen      int64  `bun:"stale_gen,notnull"`
	ResyncedGen   int64  `bun:"resynced_gen,notnull"`
	Failures      int    `bun:"failures,notnull"`
	NextAttemptTS int64  `bun:"next_attempt_ts,notnull"`
	ClaimedUntil  int64  `bun:"claimed_until_ts,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
	// UpdateTS is when an m.device_list_update about the user last
	// arrived (0: never); FetchedTS when the list was last fetched from
	// the user's server (0: never).
	UpdateTS  int64 `bun:"update_ts,notnull"`
	FetchedTS int64 `bun:"fetched_ts,notnull"`
}

// RemoteDevice is one cached device of a remote user.
type RemoteDevice struct {
	bun.BaseModel `bun:"table:remote_devices"`
	UserID        string  `bun:"user_id,pk"`
	DeviceID      string  `bun:"device_id,pk"`
	DisplayName   *string `bun:"display_name"`
	KeyJSON       *string `bun:"key_json"` // signed device_keys object; NULL if none
}

// RemoteDeviceSeen is an applied m.device_list_update stream_id above the
// list's KnownThrough (only when EDUs arrive out of series).
type RemoteDeviceSeen struct {
	bun.BaseModel `bun:"table:remote_device_seen"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,pk"`
}
