package storage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Listener follows one PostgreSQL NOTIFY channel on a dedicated connection
// outside the pool, and reconnects (after 100 ms, doubling up to 2 s) when
// that connection drops. Notifications sent while it is down are lost, so
// its users learn of every connection and every loss (OnUp, OnDown) and
// make up for the gap themselves. The token cache (impl/auth) and the sync
// wake-ups (impl/wake) each run one.
type Listener struct {
	// DSN is the store's PostgreSQL data source name.
	DSN string
	// Channel is the NOTIFY channel; AppName names the connection in
	// pg_stat_activity.
	Channel, AppName string
	// What names the listener in log lines ("token cache").
	What string
	Log  *slog.Logger
	// OnNotify receives each payload, on the listener's goroutine.
	OnNotify func(payload string)
	// OnUp runs once LISTEN is in place on a new connection: every change
	// committed from then on will be heard.
	OnUp func()
	// OnDown runs after a connection is lost (not when ctx ends).
	OnDown func()
	// PingEvery, when positive, pings the server that often while
	// connected, and OnPing(start) runs after each answer: the server sends
	// every notification committed before the ping ahead of its answer, so
	// every change committed before start has then been delivered.
	PingEvery time.Duration
	OnPing    func(start time.Time)
}

// Run listens until ctx ends. It returns at once, after logging, if the
// DSN cannot be parsed.
func (l *Listener) Run(ctx context.Context) {
	pc, err := l.config()
	if err != nil {
		l.Log.Error(l.What+": cannot listen for notifications", "err", err)
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		wasUp, err := l.once(ctx, pc)
		if ctx.Err() != nil {
			return
		}
		if wasUp {
			backoff = 100 * time.Millisecond
			if l.OnDown != nil {
				l.OnDown()
			}
		}
		l.Log.Warn(l.What+": listener lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (l *Listener) config() (*pgconn.Config, error) {
	connString, err := PostgresURL(l.DSN)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", l.What, err)
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["application_name"] = l.AppName
	pc.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { l.OnNotify(n.Payload) }
	return pc, nil
}

// once serves one connection until it fails; up says whether LISTEN was
// in place.
func (l *Listener) once(ctx context.Context, pc *pgconn.Config) (up bool, err error) {
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.Channel}.Sanitize()).ReadAll(); err != nil {
		return false, err
	}
	if l.OnUp != nil {
		l.OnUp()
	}
	if l.PingEvery <= 0 {
		for {
			if err := conn.WaitForNotification(ctx); err != nil {
				return true, err
			}
		}
	}
	for {
		start := time.Now()
		if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			return true, err
		}
		l.OnPing(start)
		wait, cancel := context.WithTimeout(ctx, l.PingEvery)
		var werr error
		for werr == nil {
			werr = conn.WaitForNotification(wait)
		}
		cancel()
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		if !pgconn.Timeout(werr) {
			return true, werr
		}
	}
}
