package storage

import "github.com/uptrace/bun"

// TokenRevocation is one entry of the token revocation log (migration
// 20261123000040). On SQLite every process that caches tokens polls it for
// rows after the last sequence number it has seen: SQLite runs one writer
// at a time, so sequence numbers become visible in order and a cursor
// never skips a row. (PostgreSQL uses LISTEN/NOTIFY instead; see
// impl/auth.) Rows are pruned after an hour.
type TokenRevocation struct {
	bun.BaseModel `bun:"table:token_revocations"`
	Seq           int64  `bun:"seq,pk,autoincrement"`
	TokenHash     string `bun:"token_hash,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}
