package storage

// Per-user stores of end-to-end encryption state (migrations
// 20261205000501_account_data and 20261205000502_key_backup): global
// account data (secret storage lives there) and the server-side key
// backup. The server keeps their contents opaque.

import "github.com/uptrace/bun"

// AccountData is the current content of one global account data type of
// a user. StreamID is the user's account-data stream position of the last
// change (unique per user), so "changed since P" is stream_id > P.
type AccountData struct {
	bun.BaseModel `bun:"table:account_data"`
	UserID        string `bun:"user_id,pk"`
	EventType     string `bun:"event_type,pk"`
	Content       string `bun:"content,notnull"` // a JSON object
	StreamID      int64  `bun:"stream_id,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}

// AccountDataStream holds the last account-data stream position allocated
// for a user: an upsert-increment inside the transaction of the change, so
// positions are strictly increasing across processes and a change becomes
// visible only after every earlier one has committed.
type AccountDataStream struct {
	bun.BaseModel `bun:"table:account_data_streams"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,notnull"`
}

// KeyBackupVersion is one version of a user's server-side key backup. The
// current version is the highest one not deleted; deleted versions stay
// as tombstones so their numbers are never handed out again. Etag changes
// whenever the stored keys change; KeyCount is the number of keys stored.
type KeyBackupVersion struct {
	bun.BaseModel `bun:"table:key_backup_versions"`
	UserID        string `bun:"user_id,pk"`
	Version       int64  `bun:"version,pk"`
	Algorithm     string `bun:"algorithm,notnull"`
	AuthData      string `bun:"auth_data,notnull"` // a JSON object
	Etag          int64  `bun:"etag,notnull"`
	KeyCount      int64  `bun:"key_count,notnull"`
	Deleted       bool   `bun:"deleted,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// KeyBackupSession is one backed-up megolm session key (opaque
// session_data) with the metadata the replacement rule compares.
type KeyBackupSession struct {
	bun.BaseModel     `bun:"table:key_backup_sessions"`
	UserID            string `bun:"user_id,pk"`
	Version           int64  `bun:"version,pk"`
	RoomID            string `bun:"room_id,pk"`
	SessionID         string `bun:"session_id,pk"`
	FirstMessageIndex int64  `bun:"first_message_index,notnull"`
	ForwardedCount    int64  `bun:"forwarded_count,notnull"`
	IsVerified        bool   `bun:"is_verified,notnull"`
	SessionData       string `bun:"session_data,notnull"` // a JSON object
}
