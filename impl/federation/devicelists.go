package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/mxid"
	"github.com/myelin-hs/myelin/impl/storage"
)

// DeviceLists keeps the cache of remote users' device lists: it applies
// m.device_list_update EDUs whose prev_ids are all known, and otherwise
// marks the list stale and resyncs it from the user's server with
// GET /user/devices/{userId} (one resync per user at a time across
// processes, with backoff on failure). It is the e2ekeys.Remote.
type DeviceLists struct {
	Store  *storage.Store
	Client *Client
	Log    *slog.Logger

	wakeOnce sync.Once
	wake     chan struct{}
}

var _ e2ekeys.Remote = (*DeviceLists)(nil)

const (
	// maxSeen bounds the stream ids remembered above known_through per user
	// (only used when EDUs arrive out of series); older ones are folded
	// into known_through.
	maxSeen = 100
	// resyncLease is how long a claimed resync blocks others.
	resyncLease      = 60 * time.Second
	maxResyncBackoff = 10 * time.Minute
	resyncWorkers    = 4
)

func (d *DeviceLists) now() int64 { return time.Now().UnixMilli() }

// populated reports whether the cached list has ever been filled (by a
// resync or by an update starting a sequence), so it can be answered from.
func populated(l storage.RemoteDeviceList) bool {
	return l.StaleGen == l.ResyncedGen || l.ResyncedGen > 0 || l.KnownThrough > 0
}

func (d *DeviceLists) wakeCh() chan struct{} {
	d.wakeOnce.Do(func() { d.wake = make(chan struct{}, 1) })
	return d.wake
}

// Wake makes the resync worker look for stale lists now.
func (d *DeviceLists) Wake() {
	select {
	case d.wakeCh() <- struct{}{}:
	default:
	}
}

// lockList returns the list row of userID, creating it if absent (created
// reports that), and holds the row lock on PostgreSQL until tx ends (the
// UPDATE takes it), so concurrent EDUs and resyncs of one user serialise.
func (d *DeviceLists) lockList(ctx context.Context, tx bun.IDB, userID, server string) (row storage.RemoteDeviceList, created bool, err error) {
	now := d.now()
	row = storage.RemoteDeviceList{UserID: userID, ServerName: server, UpdatedTS: now}
	res, err := tx.NewInsert().Model(&row).On("CONFLICT (user_id) DO NOTHING").Exec(ctx)
	if err != nil {
		return row, false, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return row, true, nil
	}
	if _, err := tx.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).Set("updated_ts = ?", now).
		Where("user_id = ?", userID).Exec(ctx); err != nil {
		return row, false, err
	}
	err = tx.NewSelect().Model(&row).Where("user_id = ?", userID).Scan(ctx)
	return row, false, err
}

func markStale(ctx context.Context, tx bun.IDB, userID string) error {
	_, err := tx.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).
		Set("stale_gen = stale_gen + 1").Where("user_id = ?", userID).Exec(ctx)
	return err
}

// Apply applies one m.device_list_update from origin inside tx (the
// transaction that records the received txn). It reports whether the list
// became (or is) stale and needs a resync. Updates about users of other
// servers than origin are dropped by the caller.
func (d *DeviceLists) Apply(ctx context.Context, tx bun.IDB, origin string, u DeviceListUpdate) (stale bool, err error) {
	row, created, err := d.lockList(ctx, tx, u.UserID, origin)
	if err != nil {
		return false, err
	}
	if !created && row.StaleGen > row.ResyncedGen {
		// A resync is due; it will see this update too, but one already
		// in flight may have fetched an older list, so ask for another.
		return true, markStale(ctx, tx, u.UserID)
	}
	seen, err := d.seen(ctx, tx, u.UserID)
	if err != nil {
		return false, err
	}
	known := func(id int64) bool { return id <= row.KnownThrough || seen[id] }
	if !created && known(u.StreamID) {
		return false, nil // duplicate
	}
	// An empty prev_id starts a sequence: fine for a list never seen, but
	// on a cached list it means the sender lost track (e.g. its database
	// was restored), so the cache cannot be trusted. A prev_id on a list
	// never seen refers to updates we do not have.
	if created != (len(u.PrevID) == 0) {
		return true, markStale(ctx, tx, u.UserID)
	}
	for _, p := range u.PrevID {
		if !known(p) {
			return true, markStale(ctx, tx, u.UserID)
		}
	}
	if err := d.applyDevice(ctx, tx, u); err != nil {
		return false, err
	}
	return false, d.advance(ctx, tx, row, seen, u.StreamID)
}

func (d *DeviceLists) seen(ctx context.Context, tx bun.IDB, userID string) (map[int64]bool, error) {
	var ids []int64
	if err := tx.NewSelect().Model((*storage.RemoteDeviceSeen)(nil)).Column("stream_id").
		Where("user_id = ?", userID).Scan(ctx, &ids); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	m := make(map[int64]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m, nil
}

func (d *DeviceLists) applyDevice(ctx context.Context, tx bun.IDB, u DeviceListUpdate) error {
	if u.Deleted {
		_, err := tx.NewDelete().Model((*storage.RemoteDevice)(nil)).
			Where("user_id = ? AND device_id = ?", u.UserID, u.DeviceID).Exec(ctx)
		return err
	}
	dev := storage.RemoteDevice{UserID: u.UserID, DeviceID: u.DeviceID, DisplayName: u.DeviceDisplayName}
	if k := remoteDeviceKeys(u.Keys, u.UserID, u.DeviceID); k != nil {
		s := string(k)
		dev.KeyJSON = &s
	}
	_, err := tx.NewInsert().Model(&dev).On("CONFLICT (user_id, device_id) DO UPDATE").
		Set("display_name = EXCLUDED.display_name, key_json = EXCLUDED.key_json").Exec(ctx)
	return err
}

// advance records stream id s as applied: known_through moves over s and
// any contiguous ids seen before; other ids are remembered (up to maxSeen,
// the oldest folding into known_through).
func (d *DeviceLists) advance(ctx context.Context, tx bun.IDB, row storage.RemoteDeviceList, seen map[int64]bool, s int64) error {
	kt := row.KnownThrough
	if s == kt+1 || len(seen) == 0 && kt == 0 {
		kt = s
		for seen[kt+1] {
			kt++
		}
	} else {
		if _, err := tx.NewInsert().Model(&storage.RemoteDeviceSeen{UserID: row.UserID, StreamID: s}).
			On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
			return err
		}
		seen[s] = true
		if len(seen) > maxSeen {
			ids := make([]int64, 0, len(seen))
			for id := range seen {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			kt = max(kt, ids[len(seen)-maxSeen-1])
		}
	}
	if kt != row.KnownThrough {
		if _, err := tx.NewDelete().Model((*storage.RemoteDeviceSeen)(nil)).
			Where("user_id = ? AND stream_id <= ?", row.UserID, kt).Exec(ctx); err != nil {
			return err
		}
	}
	_, err := tx.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).Set("known_through = ?", kt).
		Where("user_id = ?", row.UserID).Exec(ctx)
	return err
}

// claim takes the resync lease of userID if it is free, stale and due (or
// force). It reports whether this caller now owns the resync, and the
// stale generation being resolved.
func (d *DeviceLists) claim(ctx context.Context, userID string, force bool) (bool, int64, error) {
	now := d.now()
	q := d.Store.DB.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).
		Set("claimed_until_ts = ?", now+resyncLease.Milliseconds()).
		Where("user_id = ? AND claimed_until_ts < ? AND stale_gen > resynced_gen", userID, now)
	if !force {
		q = q.Where("next_attempt_ts <= ?", now)
	}
	var gens []int64
	err := q.Returning("stale_gen").Scan(ctx, &gens)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, 0, err
	}
	if len(gens) == 0 {
		return false, 0, nil
	}
	return true, gens[0], nil
}

// resync fetches userID's device list from its server and replaces the
// cache with it. The caller holds the claim for generation gen.
func (d *DeviceLists) resync(ctx context.Context, userID string, gen int64) error {
	server, ok := mxid.ServerName(userID)
	if !ok {
		return fmt.Errorf("bad user ID %q", userID)
	}
	var snap UserDevices
	err := d.Client.Do(ctx, "GET", server, "/_matrix/federation/v1/user/devices/"+url.PathEscape(userID), nil, &snap)
	if err == nil && snap.UserID != userID {
		err = fmt.Errorf("answer is about %q", snap.UserID)
	}
	if err != nil {
		d.release(userID, ctx.Err() == nil) // no backoff for a shutdown
		return fmt.Errorf("resync %s: %w", userID, err)
	}
	err = d.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, _, err := d.lockList(ctx, tx, userID, server); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*storage.RemoteDevice)(nil)).Where("user_id = ?", userID).Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*storage.RemoteDeviceSeen)(nil)).Where("user_id = ?", userID).Exec(ctx); err != nil {
			return err
		}
		rows := make([]storage.RemoteDevice, 0, len(snap.Devices))
		have := map[string]bool{}
		for _, dev := range snap.Devices {
			if dev.DeviceID == "" || have[dev.DeviceID] {
				continue
			}
			have[dev.DeviceID] = true
			r := storage.RemoteDevice{UserID: userID, DeviceID: dev.DeviceID, DisplayName: dev.DisplayName}
			if k := remoteDeviceKeys(dev.Keys, userID, dev.DeviceID); k != nil {
				s := string(k)
				r.KeyJSON = &s
			}
			rows = append(rows, r)
		}
		for start := 0; start < len(rows); start += 500 {
			chunk := rows[start:min(start+500, len(rows))]
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return err
			}
		}
		if err := storeRemoteCrossSigning(ctx, tx, userID, map[string]json.RawMessage{
			storage.KeyTypeMaster: snap.MasterKey, storage.KeyTypeSelfSigning: snap.SelfSigningKey}, true); err != nil {
			return err
		}
		_, err := tx.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).
			Set("known_through = ?", snap.StreamID).
			Set("resynced_gen = ?", gen).
			Set("failures = 0").Set("next_attempt_ts = 0").Set("claimed_until_ts = 0").
			Where("user_id = ?", userID).Exec(ctx)
		return err
	})
	if err != nil {
		d.release(userID, true)
		return err
	}
	d.Log.Info("device list resynced", "user_id", userID, "stream_id", snap.StreamID, "devices", len(snap.Devices))
	return nil
}

// release gives up a resync claim; after a failure the next attempt waits
// 1 s, 2 s, 4 s … up to maxResyncBackoff.
func (d *DeviceLists) release(userID string, failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := d.Store.DB.NewUpdate().Model((*storage.RemoteDeviceList)(nil)).Set("claimed_until_ts = 0").Where("user_id = ?", userID)
	if failed {
		var failures int
		if err := d.Store.R.NewSelect().Model((*storage.RemoteDeviceList)(nil)).Column("failures").
			Where("user_id = ?", userID).Scan(ctx, &failures); err != nil && !errors.Is(err, sql.ErrNoRows) {
			d.Log.Warn("device list resync: read backoff", "user_id", userID, "err", err)
		}
		q = q.Set("failures = ?", failures+1).Set("next_attempt_ts = ?", d.now()+backoff(failures+1, time.Second, maxResyncBackoff).Milliseconds())
	}
	if _, err := q.Exec(ctx); err != nil {
		d.Log.Warn("device list resync: release claim", "user_id", userID, "err", err)
	}
}

// backoff is the capped exponential delay after n consecutive failures:
// base, 2·base, 4·base … up to limit.
func backoff(n int, base, limit time.Duration) time.Duration {
	if n < 1 {
		return 0
	}
	if n > 30 {
		return limit
	}
	return min(base<<(n-1), limit)
}

// Run resyncs stale lists until ctx ends: woken by Wake, and at least every
// few seconds (lists marked stale by other processes, backoff expiry).
func (d *DeviceLists) Run(ctx context.Context) {
	sem := make(chan struct{}, resyncWorkers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var users []string
		err := d.Store.R.NewSelect().Model((*storage.RemoteDeviceList)(nil)).Column("user_id").
			Where("stale_gen > resynced_gen AND next_attempt_ts <= ? AND claimed_until_ts < ?", d.now(), d.now()).
			Order("next_attempt_ts").Limit(64).Scan(ctx, &users)
		if err != nil && !errors.Is(err, sql.ErrNoRows) && ctx.Err() == nil {
			d.Log.Warn("device list resync: scan", "err", err)
		}
		for _, u := range users {
			ok, gen, err := d.claim(ctx, u, false)
			if err != nil || !ok {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				d.release(u, false)
				return
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := d.resync(ctx, u, gen); err != nil && ctx.Err() == nil {
					d.Log.Info("device list resync failed", "user_id", u, "err", err)
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wakeCh():
		case <-time.After(2 * time.Second):
		}
	}
}

// ensure makes sure userID's list is cached, resyncing it now if it was
// never fetched. A list that is cached but stale is answered from the cache
// (the worker refreshes it) rather than making the client wait; one whose
// fetch failed lately is not fetched again before its backoff ends.
func (d *DeviceLists) ensure(ctx context.Context, userID string) error {
	server, _ := mxid.ServerName(userID)
	var row storage.RemoteDeviceList
	err := d.Store.R.NewSelect().Model(&row).Where("user_id = ?", userID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		err = d.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			if _, _, err := d.lockList(ctx, tx, userID, server); err != nil {
				return err
			}
			return markStale(ctx, tx, userID)
		})
		if err == nil {
			err = d.Store.R.NewSelect().Model(&row).Where("user_id = ?", userID).Scan(ctx)
		}
	}
	for err == nil {
		if populated(row) {
			return nil
		}
		if wait := time.Duration(row.NextAttemptTS-d.now()) * time.Millisecond; wait > 0 {
			return fmt.Errorf("%s could not be reached; retrying in %s", server, wait.Round(time.Second))
		}
		ok, gen, cerr := d.claim(ctx, userID, true)
		if cerr != nil {
			return cerr
		}
		if ok {
			return d.resync(ctx, userID, gen)
		}
		// Another resync of this user is running (maybe in another
		// process): wait for its outcome.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		err = d.Store.R.NewSelect().Model(&row).Where("user_id = ?", userID).Scan(ctx)
	}
	return err
}

// QueryDevices implements e2ekeys.Remote from the cache, fetching the lists
// of users never seen before.
func (d *DeviceLists) QueryDevices(ctx context.Context, users map[string][]string) (map[string]map[string]json.RawMessage, map[string]error) {
	failures := map[string]error{}
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for u := range users {
		server, ok := mxid.ServerName(u)
		if !ok {
			continue
		}
		ids = append(ids, u)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.ensure(ctx, u); err != nil {
				mu.Lock()
				failures[server] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out := map[string]map[string]json.RawMessage{}
	var rows []storage.RemoteDevice
	if len(ids) > 0 {
		if err := d.Store.R.NewSelect().Model(&rows).Where("user_id IN (?)", bun.In(ids)).
			Where("key_json IS NOT NULL").Order("user_id", "device_id").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			for _, u := range ids {
				server, _ := mxid.ServerName(u)
				failures[server] = err
			}
			return out, failures
		}
	}
	for _, r := range rows {
		if !e2ekeys.Wanted(users[r.UserID], r.DeviceID) {
			continue
		}
		k, err := e2ekeys.WithDisplayName(json.RawMessage(*r.KeyJSON), r.DisplayName)
		if err != nil {
			continue
		}
		if out[r.UserID] == nil {
			out[r.UserID] = map[string]json.RawMessage{}
		}
		out[r.UserID][r.DeviceID] = k
	}
	return out, failures
}

// ClaimKeys implements e2ekeys.Remote with POST /user/keys/claim.
func (d *DeviceLists) ClaimKeys(ctx context.Context, server string, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	var resp struct {
		OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	}
	if err := d.Client.Do(ctx, "POST", server, "/_matrix/federation/v1/user/keys/claim",
		map[string]any{"one_time_keys": req}, &resp); err != nil {
		return nil, err
	}
	return resp.OneTimeKeys, nil
}
