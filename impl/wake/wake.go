// Package wake tells waiting /sync long polls that something changed for
// a user, in this process and in every other process on the same database.
//
// A change calls Publish inside its transaction, naming the users whose
// sync streams it touches (a to-device message's recipients, the owner of
// a changed device list, ...). The announcement is part of the
// transaction, so nothing is announced that did not commit and nothing
// commits unannounced:
//
//   - In this process, every running Hub is told right after commit
//     (storage.AfterCommit): a waiting /sync wakes within microseconds.
//   - On PostgreSQL, Publish also calls pg_notify (delivered on commit);
//     every Hub LISTENs on one dedicated connection, the mechanism the
//     token cache uses for revocations (impl/auth). While that connection
//     is down, the Hub wakes all its waiters every FallbackInterval so they
//     re-check, and once more when it is back (notifications may have been
//     lost meanwhile).
//   - On SQLite, Publish appends to the sync_wakeups log, which each Hub
//     polls every PollInterval for rows past its cursor (one writer at a
//     time, so rows appear in sequence order and the cursor never skips
//     one). That carries changes made by other processes on the same file
//     (the admin CLI); rows older than an hour are pruned.
//
// A wake-up only says "look again": a waiter re-reads its streams from the
// database, so a spurious or duplicated wake-up costs one check and a lost
// one is bounded by the fallbacks above.
package wake

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/myelin-hs/myelin/impl/storage"
)

// channel is the PostgreSQL NOTIFY channel; a payload is a list of user
// IDs separated by newlines (which no user ID contains).
const channel = "myelin_sync_wake"

const (
	// maxPayload keeps a NOTIFY payload under PostgreSQL's 8000 bytes.
	maxPayload = 7000
	logKeep    = time.Hour
	pruneEvery = 5 * time.Minute
)

// local is the set of Hubs running in this process.
var local struct {
	mu   sync.RWMutex
	hubs map[*Hub]struct{}
}

// Publish announces, inside the transaction tx that makes the change, that
// the sync streams of userIDs changed. ctx must be the transaction's
// context (storage.Store.Tx) for this process's waiters to be woken right
// after commit; other processes hear of it through the database.
func Publish(ctx context.Context, tx bun.IDB, userIDs ...string) error {
	users := unique(userIDs)
	if len(users) == 0 {
		return nil
	}
	if tx.Dialect().Name() == dialect.PG {
		for _, payload := range payloads(users) {
			if _, err := tx.NewRaw("SELECT pg_notify(?, ?)", channel, payload).Exec(ctx); err != nil {
				return fmt.Errorf("announce sync wake-up: %w", err)
			}
		}
	} else {
		now := time.Now().UnixMilli()
		rows := make([]storage.SyncWakeup, len(users))
		for i, u := range users {
			rows[i] = storage.SyncWakeup{UserID: u, CreatedTS: now}
		}
		for start := 0; start < len(rows); start += 500 {
			chunk := rows[start:min(start+500, len(rows))]
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return fmt.Errorf("log sync wake-up: %w", err)
			}
		}
	}
	storage.AfterCommit(ctx, func() { wakeLocal(users) })
	return nil
}

func wakeLocal(users []string) {
	local.mu.RLock()
	defer local.mu.RUnlock()
	for h := range local.hubs {
		h.Wake(users...)
	}
}

func unique(in []string) []string {
	if len(in) <= 1 {
		return in
	}
	seen := make(map[string]struct{}, len(in))
	out := make([]string, 0, len(in))
	for _, u := range in {
		if _, ok := seen[u]; !ok {
			seen[u] = struct{}{}
			out = append(out, u)
		}
	}
	return out
}

// payloads splits users into NOTIFY payloads of at most maxPayload bytes.
func payloads(users []string) []string {
	var out []string
	var b strings.Builder
	for _, u := range users {
		if b.Len() > 0 && b.Len()+1+len(u) > maxPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(u)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// Hub wakes this process's waiters. The zero value is not usable: use
// NewHub, then Run it for as long as the process serves.
type Hub struct {
	Store *storage.Store
	Log   *slog.Logger
	// PollInterval is how often the SQLite log is read (default 50 ms).
	PollInterval time.Duration
	// FallbackInterval is how often every waiter is woken while the
	// PostgreSQL listener is down (default 250 ms).
	FallbackInterval time.Duration
	// DatabaseOnly makes the hub deaf to this process's own changes, as
	// if each came from another process: tests use it to check the path
	// through the database.
	DatabaseOnly bool

	up      atomic.Bool // the PostgreSQL listener is connected
	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
}

type waiter struct{ ch chan struct{} }

// NewHub returns a hub for store's database.
func NewHub(store *storage.Store, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	return &Hub{Store: store, Log: log, waiters: map[string]map[*waiter]struct{}{}}
}

// Subscribe returns a channel that receives a value after a change for
// userID is announced, and a function to stop listening (call it). Take
// the subscription before reading the state it guards, so a change that
// commits in between is not missed.
func (h *Hub) Subscribe(userID string) (<-chan struct{}, func()) {
	w := &waiter{ch: make(chan struct{}, 1)}
	h.mu.Lock()
	set := h.waiters[userID]
	if set == nil {
		set = map[*waiter]struct{}{}
		h.waiters[userID] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	return w.ch, func() {
		h.mu.Lock()
		if set := h.waiters[userID]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(h.waiters, userID)
			}
		}
		h.mu.Unlock()
	}
}

// Waiting is the number of subscriptions (for metrics and tests).
func (h *Hub) Waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.waiters {
		n += len(s)
	}
	return n
}

// Wake wakes the waiters of the users.
func (h *Hub) Wake(userIDs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range userIDs {
		for w := range h.waiters[u] {
			signal(w)
		}
	}
}

// WakeAll wakes every waiter (they re-check).
func (h *Hub) WakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for w := range set {
			signal(w)
		}
	}
}

func signal(w *waiter) {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// Run follows the database's announcements until ctx ends. This process's
// own changes wake waiters while Run runs.
func (h *Hub) Run(ctx context.Context) {
	if h.PollInterval <= 0 {
		h.PollInterval = 50 * time.Millisecond
	}
	if h.FallbackInterval <= 0 {
		h.FallbackInterval = 250 * time.Millisecond
	}
	if !h.DatabaseOnly {
		local.mu.Lock()
		if local.hubs == nil {
			local.hubs = map[*Hub]struct{}{}
		}
		local.hubs[h] = struct{}{}
		local.mu.Unlock()
		defer func() {
			local.mu.Lock()
			delete(local.hubs, h)
			local.mu.Unlock()
		}()
	}
	if h.Store.Dialect == storage.Postgres {
		h.listen(ctx)
	} else {
		h.poll(ctx)
	}
}

func (h *Hub) applyPayload(payload string) {
	h.Wake(strings.Split(payload, "\n")...)
}

// listen follows the announcements on PostgreSQL; while the listener is
// down, waiters are woken every FallbackInterval.
func (h *Hub) listen(ctx context.Context) {
	go h.fallback(ctx)
	(&storage.Listener{
		DSN: h.Store.DSN, Channel: channel, AppName: "myelin-sync-wake",
		What: "sync wake-ups", Log: h.Log,
		OnNotify: h.applyPayload,
		OnUp: func() {
			h.up.Store(true)
			// Waiters that checked while the connection was down may have
			// missed a change; now that every later one is heard, they
			// check once more.
			h.WakeAll()
		},
		OnDown: func() { h.up.Store(false) },
	}).Run(ctx)
}

// fallback wakes every waiter each FallbackInterval while the listener is
// down, so they re-check the database themselves.
func (h *Hub) fallback(ctx context.Context) {
	t := time.NewTicker(h.FallbackInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !h.up.Load() {
				h.WakeAll()
			}
		}
	}
}

// Listening reports whether the PostgreSQL listener is connected (always
// false on SQLite).
func (h *Hub) Listening() bool { return h.up.Load() }

// poll follows the SQLite log from its current end.
func (h *Hub) poll(ctx context.Context) {
	cursor := int64(-1)
	var lastPrune time.Time
	t := time.NewTicker(h.PollInterval)
	defer t.Stop()
	var end *storage.LogEnd // nil until prepared: every poll queries
	defer func() {
		if end != nil {
			end.Close()
		}
	}()
	for {
		if end == nil {
			end, _ = h.Store.NewLogEnd(ctx, (*storage.SyncWakeup)(nil))
		}
		next, err := h.pollOnce(ctx, end, cursor)
		if err == nil {
			cursor = next
		} else if ctx.Err() == nil {
			h.Log.Warn("sync wake-ups: cannot read the log; waking every waiter", "err", err)
			h.WakeAll()
		}
		if time.Since(lastPrune) > pruneEvery {
			lastPrune = time.Now()
			if _, err := h.Store.DB.NewDelete().Model((*storage.SyncWakeup)(nil)).
				Where("created_ts < ?", time.Now().Add(-logKeep).UnixMilli()).Exec(ctx); err != nil && ctx.Err() == nil {
				h.Log.Warn("sync wake-ups: cannot prune the log", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollOnce wakes the users of log rows after cursor and returns the new
// cursor; a negative cursor starts at the end of the log. end (when not
// nil) tells cheaply whether there is anything after cursor.
func (h *Hub) pollOnce(ctx context.Context, end *storage.LogEnd, cursor int64) (int64, error) {
	if cursor < 0 {
		err := h.Store.R.NewSelect().Model((*storage.SyncWakeup)(nil)).
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
		var rows []storage.SyncWakeup
		if err := h.Store.R.NewSelect().Model(&rows).Column("seq", "user_id").
			Where("seq > ?", cursor).Order("seq").Limit(1000).Scan(ctx); err != nil {
			return cursor, err
		}
		if len(rows) == 0 {
			return cursor, nil
		}
		users := make([]string, len(rows))
		for i, r := range rows {
			users[i] = r.UserID
		}
		h.Wake(unique(users)...)
		cursor = rows[len(rows)-1].Seq
	}
}
