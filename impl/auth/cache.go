package auth

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

const (
	shardCount = 64 // power of two; a token hash's first byte picks the shard
	// syncInterval is how often the revocation feed proves it is current
	// (a ping on the LISTEN connection, or a poll of the SQLite log).
	syncInterval = 200 * time.Millisecond
	// maxStale is how old the feed's last proof may be for cached entries
	// to be used. Below one second, so another process's revocation is
	// honoured within one second.
	maxStale = 800 * time.Millisecond
	// entryTTL re-validates even tokens nobody revoked through Myelin.
	entryTTL = 30 * time.Second
)

// never is a syncedAt that is always too old.
const never = math.MinInt64 / 2

// Cache is an Authenticator that remembers resolved tokens; see the
// package documentation for how revocations reach it.
type Cache struct {
	db       *DBAuthenticator
	log      *slog.Logger
	perShard int
	epoch    time.Time
	// gen is bumped before every invalidation; a lookup that read the
	// database stores its result only if gen did not move meanwhile.
	gen atomic.Uint64
	// syncedAt (ns since epoch): every revocation committed before it has
	// been applied.
	syncedAt atomic.Int64
	misses   atomic.Uint64
	shards   [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[tokens.Hash]entry
	_  [32]byte // keep shards on separate cache lines
}

type entry struct {
	p  Principal
	at int64 // ns since epoch when the database said the token was valid
}

// NewCache returns a cache of at most size tokens in front of the database
// of store. It serves from memory only while Run is running.
func NewCache(store *storage.Store, size int, log *slog.Logger) *Cache {
	c := &Cache{
		db:       &DBAuthenticator{Store: store},
		log:      log,
		perShard: max(1, size/shardCount),
		epoch:    time.Now(),
	}
	c.syncedAt.Store(never)
	for i := range c.shards {
		c.shards[i].m = make(map[tokens.Hash]entry)
	}
	return c
}

func (c *Cache) now() int64 { return int64(time.Since(c.epoch)) }

// Authenticate implements Authenticator.
func (c *Cache) Authenticate(ctx context.Context, token string) (Principal, error) {
	h := tokens.HashToken(token)
	now := c.now()
	fresh := now-c.syncedAt.Load() < int64(maxStale)
	s := &c.shards[h[0]&(shardCount-1)]
	if fresh {
		s.mu.RLock()
		e, ok := s.m[h]
		s.mu.RUnlock()
		if ok && now-e.at < int64(entryTTL) {
			if e.p.ExpiresTS != 0 && e.p.Expired(time.Now().UnixMilli()) {
				return Principal{}, ErrExpired()
			}
			return e.p, nil
		}
	}
	gen := c.gen.Load()
	c.misses.Add(1)
	p, err := c.db.lookup(ctx, h)
	if err == nil && p.Expired(time.Now().UnixMilli()) {
		return Principal{}, ErrExpired()
	}
	if err != nil || !fresh {
		return p, err
	}
	s.mu.Lock()
	if c.gen.Load() == gen {
		if len(s.m) >= c.perShard {
			for k := range s.m { // map iteration starts at a random entry
				delete(s.m, k)
				break
			}
		}
		s.m[h] = entry{p: p, at: now}
	}
	s.mu.Unlock()
	return p, nil
}

// Revoked drops the tokens with these hex SHA-256 hashes. devices.Core
// calls it after a revoking transaction commits.
func (c *Cache) Revoked(_ context.Context, hashes []string) {
	keys := make([]tokens.Hash, 0, len(hashes))
	for _, s := range hashes {
		h, err := tokens.ParseHash(s)
		if err != nil {
			c.log.Warn("token cache: unparseable revoked hash; flushing", "err", err)
			c.flush()
			return
		}
		keys = append(keys, h)
	}
	c.invalidate(keys)
}

func (c *Cache) invalidate(keys []tokens.Hash) {
	if len(keys) == 0 {
		return
	}
	c.gen.Add(1)
	for _, k := range keys {
		s := &c.shards[k[0]&(shardCount-1)]
		s.mu.Lock()
		delete(s.m, k)
		s.mu.Unlock()
	}
}

func (c *Cache) flush() {
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// synced records that every revocation committed before t (a c.now()
// taken before the feed's round trip) has been applied. If the previous
// proof is too old, revocations may have been missed while the feed was
// down: everything cached is dropped first.
func (c *Cache) synced(t int64) {
	if t-c.syncedAt.Load() >= int64(maxStale) {
		c.flush()
	}
	c.syncedAt.Store(t)
}

// unsynced forgets the feed's last proof and everything cached: the feed
// lost its connection, so revocations may go unnoticed until it is back.
func (c *Cache) unsynced() {
	c.syncedAt.Store(never)
	c.flush()
}

// Misses counts lookups that went to the database.
func (c *Cache) Misses() uint64 { return c.misses.Load() }

// Len is the number of cached tokens.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Run follows other processes' revocations until ctx ends: LISTEN on
// PostgreSQL, polling the revocation log on SQLite.
func (c *Cache) Run(ctx context.Context) {
	if c.db.Store.Dialect == storage.Postgres {
		c.listen(ctx)
		return
	}
	c.poll(ctx)
}
