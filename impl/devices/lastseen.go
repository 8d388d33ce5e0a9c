package devices

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
)

// LastSeen collects, in memory, where and when each device was last seen,
// and writes the latest value per device to the database in batches: a
// database write per authenticated request would cost more than the
// request itself, and the spec allows the values to be minutes old.
//
// A nil *LastSeen records nothing.
type LastSeen struct {
	Store *storage.Store
	Log   *slog.Logger

	mu      sync.Mutex
	pending map[deviceKey]seenAt

	flushMu sync.Mutex // one flush at a time
}

type deviceKey struct{ user, device string }

type seenAt struct {
	ip string
	ts int64 // ms since the epoch
}

// flushChunk is how many devices one UPDATE statement covers.
const flushChunk = 500

// Record notes that deviceID of userID made a request from ip at now. It
// only writes to a map under a mutex; after a device's first request in a
// flush interval it allocates nothing.
func (l *LastSeen) Record(userID, deviceID, ip string, now time.Time) {
	if l == nil {
		return
	}
	k := deviceKey{userID, deviceID}
	v := seenAt{ip: ip, ts: now.UnixMilli()}
	l.mu.Lock()
	if l.pending == nil {
		l.pending = make(map[deviceKey]seenAt)
	}
	if old, ok := l.pending[k]; !ok || old.ts <= v.ts {
		l.pending[k] = v
	}
	l.mu.Unlock()
}

// overlay replaces d's last-seen values with newer buffered ones.
func (l *LastSeen) overlay(d *storage.Device) {
	if l == nil {
		return
	}
	l.mu.Lock()
	v, ok := l.pending[deviceKey{d.UserID, d.DeviceID}]
	l.mu.Unlock()
	if ok && (d.LastSeenTS == nil || *d.LastSeenTS < v.ts) {
		d.LastSeenIP, d.LastSeenTS = &v.ip, &v.ts
	}
}

// forget drops buffered values of deleted devices. (Flush could not
// resurrect them anyway, since it only updates existing rows; this keeps
// them from being written to a new device that reuses the ID.)
func (l *LastSeen) forget(userID string, deviceIDs []string) {
	if l == nil || len(deviceIDs) == 0 {
		return
	}
	l.mu.Lock()
	for _, d := range deviceIDs {
		delete(l.pending, deviceKey{userID, d})
	}
	l.mu.Unlock()
}

// seenRow is one row of the VALUES list a flush updates from.
type seenRow struct {
	UserID     string `bun:"user_id"`
	DeviceID   string `bun:"device_id"`
	LastSeenIP string `bun:"last_seen_ip"`
	LastSeenTS int64  `bun:"last_seen_ts"`
}

// Flush writes the buffered values. It only UPDATEs existing devices (a
// device deleted meanwhile stays deleted) and never moves a device's
// last_seen_ts backwards (another process may have written a newer one).
// Values that could not be written are kept for the next flush.
func (l *LastSeen) Flush(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	rows := make([]seenRow, 0, len(batch))
	for k, v := range batch {
		rows = append(rows, seenRow{UserID: k.user, DeviceID: k.device, LastSeenIP: v.ip, LastSeenTS: v.ts})
	}
	for start := 0; start < len(rows); start += flushChunk {
		chunk := rows[start:min(start+flushChunk, len(rows))]
		_, err := l.Store.DB.NewUpdate().
			With("_data", l.Store.DB.NewValues(&chunk)).
			Model((*storage.Device)(nil)).
			TableExpr("_data").
			Set("last_seen_ip = _data.last_seen_ip").
			Set("last_seen_ts = _data.last_seen_ts").
			Where("device.user_id = _data.user_id AND device.device_id = _data.device_id").
			Where("(device.last_seen_ts IS NULL OR device.last_seen_ts < _data.last_seen_ts)").
			Exec(ctx)
		if err != nil {
			l.requeue(rows[start:])
			return fmt.Errorf("flush last-seen: %w", err)
		}
	}
	return nil
}

// requeue puts rows that failed to flush back, unless newer values have
// been recorded since.
func (l *LastSeen) requeue(rows []seenRow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = make(map[deviceKey]seenAt, len(rows))
	}
	for _, r := range rows {
		k := deviceKey{r.UserID, r.DeviceID}
		if cur, ok := l.pending[k]; !ok || cur.ts < r.LastSeenTS {
			l.pending[k] = seenAt{ip: r.LastSeenIP, ts: r.LastSeenTS}
		}
	}
}

// Run flushes every interval until ctx is done. (The final flush at
// shutdown is the caller's: see app.App's shutdown hooks.)
func (l *LastSeen) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Flush(ctx); err != nil && ctx.Err() == nil && l.Log != nil {
				l.Log.Error("last-seen flush failed; will retry", "err", err)
			}
		}
	}
}
