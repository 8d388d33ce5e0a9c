package auth

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// revokedChannel is the PostgreSQL NOTIFY channel; a payload is a
// comma-separated list of hex token hashes.
const revokedChannel = "myelin_token_revoked"

const (
	// notifyBatch keeps a payload (65 bytes a hash) under PostgreSQL's
	// 8000-byte limit.
	notifyBatch = 100
	// logKeep is how long SQLite revocation log rows are kept: far longer
	// than any process may lag before it flushes its cache anyway.
	logKeep       = time.Hour
	pruneInterval = 5 * time.Minute
)

// PublishRevoked announces, inside the transaction tx that deletes them,
// that the tokens with these hex hashes are revoked, so the token caches
// of every process drop them once tx commits (see the package comment).
func PublishRevoked(ctx context.Context, tx bun.IDB, hashes []string) error {
	if len(hashes) == 0 {
		return nil
	}
	if tx.Dialect().Name() == dialect.PG {
		for start := 0; start < len(hashes); start += notifyBatch {
			chunk := hashes[start:min(start+notifyBatch, len(hashes))]
			if _, err := tx.NewRaw("SELECT pg_notify(?, ?)", revokedChannel, strings.Join(chunk, ",")).Exec(ctx); err != nil {
				return fmt.Errorf("announce revoked tokens: %w", err)
			}
		}
		return nil
	}
	now := time.Now().UnixMilli()
	rows := make([]storage.TokenRevocation, len(hashes))
	for i, h := range hashes {
		rows[i] = storage.TokenRevocation{TokenHash: h, CreatedTS: now}
	}
	for start := 0; start < len(rows); start += 500 {
		chunk := rows[start:min(start+500, len(rows))]
		if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
			return fmt.Errorf("log revoked tokens: %w", err)
		}
	}
	return nil
}

// applyPayload drops the tokens named by a notification payload.
func (c *Cache) applyPayload(payload string) {
	keys := make([]tokens.Hash, 0, strings.Count(payload, ",")+1)
	for s := range strings.SplitSeq(payload, ",") {
		h, err := tokens.ParseHash(s)
		if err != nil {
			c.log.Warn("token cache: bad revocation notification; flushing", "err", err)
			c.flush()
			return
		}
		keys = append(keys, h)
	}
	c.invalidate(keys)
}

// listen follows revocations on PostgreSQL. While the listener is down
// the cache serves nothing from memory (notifications sent meanwhile are
// lost); each ping proves every earlier revocation applied.
func (c *Cache) listen(ctx context.Context) {
	(&storage.Listener{
		DSN: c.db.Store.DSN, Channel: revokedChannel, AppName: "myelin-token-cache",
		What: "token cache", Log: c.log,
		OnNotify:  c.applyPayload,
		OnDown:    c.unsynced,
		PingEvery: syncInterval,
		OnPing:    func(start time.Time) { c.synced(int64(start.Sub(c.epoch))) },
	}).Run(ctx)
}

// poll follows the SQLite revocation log from its current end.
func (c *Cache) poll(ctx context.Context) {
	cursor := int64(-1)
	var lastPrune time.Time
	tick := time.NewTicker(syncInterval)
	defer tick.Stop()
	var end *storage.LogEnd // nil until prepared: every poll queries
	defer func() {
		if end != nil {
			end.Close()
		}
	}()
	for {
		if end == nil {
			end, _ = c.db.Store.NewLogEnd(ctx, (*storage.TokenRevocation)(nil))
		}
		t := c.now()
		next, err := c.pollOnce(ctx, end, cursor)
		if err == nil {
			cursor = next
			c.synced(t)
		} else if ctx.Err() == nil {
			c.log.Warn("token cache: cannot read the revocation log; serving from the database", "err", err)
		}
		if time.Since(lastPrune) > pruneInterval {
			lastPrune = time.Now()
			if _, err := c.db.Store.DB.NewDelete().Model((*storage.TokenRevocation)(nil)).
				Where("created_ts < ?", time.Now().Add(-logKeep).UnixMilli()).Exec(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("token cache: cannot prune the revocation log", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollOnce applies log rows after cursor and returns the new cursor. A
// negative cursor starts at the end of the log: nothing was cached yet.
// end (when not nil) tells cheaply whether there is anything after cursor.
func (c *Cache) pollOnce(ctx context.Context, end *storage.LogEnd, cursor int64) (int64, error) {
	if cursor < 0 {
		err := c.db.Store.R.NewSelect().Model((*storage.TokenRevocation)(nil)).
			ColumnExpr("COALESCE(MAX(seq), 0)").Scan(ctx, &cursor)
		return cursor, err
	}
	if end != nil {
		if last, err := end.Seq(ctx); err != nil {
			return cursor, err
		} else if last <= cursor {
			return cursor, nil
		}
	}
	for {
		var rows []storage.TokenRevocation
		if err := c.db.Store.R.NewSelect().Model(&rows).Column("seq", "token_hash").
			Where("seq > ?", cursor).Order("seq").Limit(1000).Scan(ctx); err != nil {
			return cursor, err
		}
		if len(rows) == 0 {
			return cursor, nil
		}
		keys := make([]tokens.Hash, 0, len(rows))
		for _, r := range rows {
			h, err := tokens.ParseHash(r.TokenHash)
			if err != nil {
				c.flush()
				continue
			}
			keys = append(keys, h)
		}
		c.invalidate(keys)
		cursor = rows[len(rows)-1].Seq
	}
}
