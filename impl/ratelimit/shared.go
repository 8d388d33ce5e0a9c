package ratelimit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// shared is a set of token buckets in the table rate_limit_buckets, shared
// by every process on the database. Each take is one atomic upsert: the
// row lock (PostgreSQL) or the single writer (SQLite) serialises
// concurrent takes of one key, also across processes.
type shared struct {
	Store *storage.Store
	Rate  float64 // tokens per second
	Burst int
	// Prefix starts every key of this set: its sweep leaves other sets'
	// rows (refilled at other rates) alone.
	Prefix string

	mu        sync.Mutex
	lastSweep time.Time
}

// refilled is the SQL expression of a row's tokens at ?now, capped at the
// burst. Arguments: now, rate per ms, and again, and burst twice.
const refilled = `(CASE WHEN rate_limit_buckets.tokens + (? - rate_limit_buckets.updated_ts) * ? > ? ` +
	`THEN ? ELSE rate_limit_buckets.tokens + (? - rate_limit_buckets.updated_ts) * ? END)`

// take removes one token from key's bucket, or answers 429 with the time
// until one is available.
func (s *shared) take(ctx context.Context, key string) error {
	now := time.Now().UnixMilli()
	s.sweep(ctx, now)
	perMS := s.Rate / 1000
	burst := float64(s.Burst)
	ref := []any{now, perMS, burst, burst, now, perMS}
	args := append([]any{key, burst - 1, now}, ref...)
	args = append(append(args, now), ref...)
	var left float64
	err := s.Store.DB.NewRaw(`INSERT INTO rate_limit_buckets ("key", tokens, updated_ts) VALUES (?, ?, ?) `+
		`ON CONFLICT ("key") DO UPDATE SET tokens = `+refilled+` - 1, updated_ts = ? `+
		`WHERE `+refilled+` >= 1 RETURNING tokens`, args...).Scan(ctx, &left)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("ratelimit: take %s: %w", key, err)
	}
	// Empty: the wait is the time to refill to one token.
	var b storage.RateLimitBucket
	if err := s.Store.DB.NewSelect().Model(&b).Where(`"key" = ?`, key).Scan(ctx); err != nil {
		return fmt.Errorf("ratelimit: read %s: %w", key, err)
	}
	have := math.Min(burst, b.Tokens+float64(now-b.UpdatedTS)*perMS)
	wait := time.Duration(math.Ceil((1 - have) / perMS * float64(time.Millisecond)))
	return matrixerr.LimitExceeded(max(wait, time.Millisecond))
}

// refund gives one token back to key's bucket (up to the burst).
func (s *shared) refund(ctx context.Context, key string) error {
	_, err := s.Store.DB.NewUpdate().Model((*storage.RateLimitBucket)(nil)).
		Set("tokens = CASE WHEN tokens + 1 > ? THEN ? ELSE tokens + 1 END", s.Burst, s.Burst).
		Where(`"key" = ?`, key).Exec(ctx)
	return err
}

// sweep deletes, at most once a minute per process, the buckets that have
// refilled completely (a missing row is a full bucket), so keys tried once
// do not pile up.
func (s *shared) sweep(ctx context.Context, now int64) {
	s.mu.Lock()
	due := now-s.lastSweep.UnixMilli() > time.Minute.Milliseconds()
	if due {
		s.lastSweep = time.UnixMilli(now)
	}
	s.mu.Unlock()
	if !due {
		return
	}
	full := now - int64(math.Ceil(float64(s.Burst)/s.Rate*1000))
	// Best effort: a failed sweep is retried a minute later.
	_, _ = s.Store.DB.NewDelete().Model((*storage.RateLimitBucket)(nil)).Where("updated_ts < ?", full).Where(`"key" LIKE ?`, s.Prefix+"%").Exec(ctx)
}
