package storage

import "github.com/uptrace/bun"

// WebSession is a signed-in browser (impl/web): the cookie's value is
// stored only as its SHA-256 (hex), and the row is valid until ExpiresTS.
type WebSession struct {
	bun.BaseModel `bun:"table:web_sessions"`
	SessionHash   string `bun:"session_hash,pk"`
	UserID        string `bun:"user_id,notnull"`
	// IP and UserAgent are those of the sign-in, shown on the account page.
	IP        string `bun:"ip,notnull"`
	UserAgent string `bun:"user_agent,notnull"`
	CreatedTS int64  `bun:"created_ts,notnull"`
	ExpiresTS int64  `bun:"expires_ts,notnull"`
}

// UIAApproval lets one Operation (a uia operation name) of UserID through
// without user-interactive auth until ExpiresTS; using it deletes it.
type UIAApproval struct {
	bun.BaseModel `bun:"table:uia_approvals"`
	UserID        string `bun:"user_id,pk"`
	Operation     string `bun:"operation,pk"`
	ExpiresTS     int64  `bun:"expires_ts,notnull"`
}
