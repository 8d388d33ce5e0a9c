package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Outbox turns device-list changes into m.device_list_update EDUs, written
// to the federation_outbox table in the transaction of the change (its Hook
// is a devices.ChangeHook), for every server subscribed to the user and
// every configured peer.
type Outbox struct {
	ServerName   string
	Peers        []string
	PublishNames bool
	// Poke is called after the change commits (the sender wakes up).
	Poke func()
}

var _ devices.ChangeHook = (*Outbox)(nil).Hook

// NewOutbox returns the outbox of cfg's server. Every devices.Core that
// changes devices (the server's and the admin CLI's) must carry its Hook,
// so no change misses its EDUs; the server sets Poke to its sender's.
func NewOutbox(cfg *config.Config) *Outbox {
	return &Outbox{ServerName: cfg.ServerName, Peers: cfg.FederationPeers, PublishNames: cfg.PublishDeviceNames}
}

// Hook queues one EDU per change and destination. Changes come from one
// user, in stream order; stream ids are gap-free per user, so the update
// before stream_id s is s-1, and each EDU names it as its prev_id (the
// updates are emitted in series).
func (o *Outbox) Hook(ctx context.Context, tx bun.IDB, changes []devices.Change) error {
	if len(changes) == 0 {
		return nil
	}
	userID := changes[0].UserID
	var subs []string
	if err := tx.NewSelect().Model((*storage.DeviceListSubscriber)(nil)).Column("server_name").
		Where("user_id = ?", userID).Order("server_name").Scan(ctx, &subs); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	dests := destinations(o.ServerName, subs, o.Peers)
	if len(dests) == 0 {
		return nil
	}
	var present, xsign []string
	var devChanges []devices.Change
	for _, c := range changes {
		switch {
		case c.CrossSigning:
			xsign = append(xsign, c.DeviceID)
		case !c.Deleted:
			present = append(present, c.DeviceID)
			fallthrough
		default:
			devChanges = append(devChanges, c)
		}
	}
	var devs []e2ekeys.Device
	if len(present) > 0 {
		var err error
		if devs, err = e2ekeys.LoadDevices(ctx, tx, []string{userID}, present); err != nil {
			return err
		}
	}
	byID := make(map[string]e2ekeys.Device, len(devs))
	for _, d := range devs {
		byID[d.DeviceID] = d
	}
	sigs, err := e2ekeys.OwnerSignatures(ctx, tx, userID)
	if err != nil {
		return err
	}
	ts := time.Now().UnixMilli()
	rows := make([]storage.OutboxEDU, 0, len(changes)*len(dests))
	// Each update names the previous device update as its prev_id (the
	// updates are emitted in series); cross-signing changes share the
	// stream but go out as m.signing_key_update, so they are skipped.
	var prev int64
	if len(devChanges) > 0 {
		if prev, err = previousDeviceUpdate(ctx, tx, userID, devChanges[0].StreamID); err != nil {
			return err
		}
	}
	for _, c := range devChanges {
		u := DeviceListUpdate{UserID: c.UserID, DeviceID: c.DeviceID, StreamID: c.StreamID, PrevID: []int64{}, Deleted: c.Deleted}
		if prev > 0 {
			u.PrevID = []int64{prev}
		}
		prev = c.StreamID
		if !c.Deleted {
			d, ok := byID[c.DeviceID]
			if !ok {
				u.Deleted = true // gone again within this transaction
			} else {
				if o.PublishNames {
					u.DeviceDisplayName = d.DisplayName
				}
				if u.Keys, err = e2ekeys.WithOwnerSignatures(d.Keys, sigs, d.DeviceID); err != nil {
					return err
				}
			}
		}
		content, err := json.Marshal(u)
		if err != nil {
			return err
		}
		for _, dest := range dests {
			rows = append(rows, storage.OutboxEDU{Destination: dest, EDUType: eduDeviceListUpdate, Content: string(content), CreatedTS: ts})
		}
	}
	if len(xsign) > 0 {
		u, err := signingKeyUpdate(ctx, tx, userID, xsign)
		if err != nil {
			return err
		}
		if u != nil {
			content, err := json.Marshal(u)
			if err != nil {
				return err
			}
			for _, dest := range dests {
				rows = append(rows, storage.OutboxEDU{Destination: dest, EDUType: eduSigningKeyUpdate, Content: string(content), CreatedTS: ts})
			}
		}
	}
	if len(rows) == 0 {
		return nil
	}
	for start := 0; start < len(rows); start += 500 {
		chunk := rows[start:min(start+500, len(rows))]
		if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
			return fmt.Errorf("queue device list updates: %w", err)
		}
	}
	dr := make([]storage.Destination, len(dests))
	for i, d := range dests {
		dr[i] = storage.Destination{Destination: d}
	}
	if _, err := tx.NewInsert().Model(&dr).On("CONFLICT (destination) DO NOTHING").Exec(ctx); err != nil {
		return err
	}
	if o.Poke != nil {
		storage.AfterCommit(ctx, o.Poke)
	}
	return nil
}

// destinations is subs ∪ peers without ourselves, sorted and unique.
func destinations(self string, subs, peers []string) []string {
	seen := map[string]bool{self: true}
	var out []string
	for _, l := range [][]string{subs, peers} {
		for _, d := range l {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// Sender delivers the outbox: per destination in order, up to 100 EDUs per
// PUT /send/{txnId}, one transaction in flight per destination across all
// processes (a lease on the destination row, claimed with FOR UPDATE SKIP
// LOCKED on PostgreSQL), retrying with capped exponential backoff. A
// transaction is retried with the same rows and txnId until the
// destination accepts it, so the receiver's idempotency makes each EDU
// count once.
type Sender struct {
	Store      *storage.Store
	Client     *Client
	ServerName string
	Log        *slog.Logger
	// DropEvery > 0 drops every DropEvery-th EDU (marked sent, never sent):
	// a test-only switch to exercise gap repair.
	DropEvery int
	// PollInterval is how often the outbox is checked without a Poke (for
	// changes made by other processes, e.g. the admin CLI, and backoff
	// expiry). BackoffBase is the first retry delay.
	PollInterval time.Duration
	BackoffBase  time.Duration
	MaxBackoff   time.Duration

	owner     string
	initOnce  sync.Once
	wake      chan struct{}
	dropCount atomic.Int64
	active    sync.Map // destination → struct{}: deliveries in this process
}

const (
	maxEDUsPerTxn = 100
	leaseDuration = 2 * time.Minute
	maxConcurrent = 16
	claimBatch    = 16
)

func (s *Sender) init() {
	s.initOnce.Do(func() {
		s.wake = make(chan struct{}, 1)
		s.owner = tokens.NewSessionID()
		if s.PollInterval <= 0 {
			s.PollInterval = 500 * time.Millisecond
		}
		if s.BackoffBase <= 0 {
			s.BackoffBase = time.Second
		}
		if s.MaxBackoff <= 0 {
			s.MaxBackoff = 10 * time.Minute
		}
	})
}

// Poke wakes the sender (after a change committed).
func (s *Sender) Poke() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// PeerAlive is told that destination just contacted us: if it was backing
// off, it is retried at once (it is evidently up again).
func (s *Sender) PeerAlive(ctx context.Context, destination string) {
	var failures int
	err := s.Store.R.NewSelect().Model((*storage.Destination)(nil)).Column("failures").
		Where("destination = ?", destination).Scan(ctx, &failures)
	if err != nil || failures == 0 {
		return
	}
	if _, err := s.Store.DB.NewUpdate().Model((*storage.Destination)(nil)).
		Set("failures = 0").Set("next_attempt_ts = 0").Where("destination = ?", destination).Exec(ctx); err != nil {
		s.Log.Warn("federation sender: reset backoff", "destination", destination, "err", err)
		return
	}
	s.Poke()
}

// Run delivers until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	s.init()
	sem := make(chan struct{}, maxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		dests, err := s.claim(ctx, min(claimBatch, maxConcurrent-len(sem)))
		if err != nil && ctx.Err() == nil {
			s.Log.Warn("federation sender: claim destinations", "err", err)
		}
		for _, d := range dests {
			sem <- struct{}{}
			wg.Add(1)
			s.active.Store(d, struct{}{})
			go func() {
				defer func() { s.active.Delete(d); <-sem; wg.Done() }()
				s.deliver(ctx, d)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(s.PollInterval):
		}
	}
}

func (s *Sender) nowMS() int64 { return time.Now().UnixMilli() }

// claim leases up to n destinations that have EDUs waiting and are due.
func (s *Sender) claim(ctx context.Context, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	due := func(q *bun.SelectQuery, now int64) *bun.SelectQuery {
		return q.TableExpr("federation_destinations AS d").
			Where("d.next_attempt_ts <= ? AND d.lease_until_ts < ?", now, now).
			Where("EXISTS (SELECT 1 FROM federation_outbox AS o WHERE o.destination = d.destination)")
	}
	// A cheap read first: the poll finds nothing most of the time, and on
	// SQLite the claim is a write transaction.
	now := s.nowMS()
	exists, err := due(s.Store.R.NewSelect(), now).Exists(ctx)
	if err != nil || !exists {
		return nil, err
	}
	var out []string
	err = s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		now := s.nowMS()
		q := due(tx.NewSelect(), now).Column("d.destination")
		for _, d := range s.activeList() {
			q = q.Where("d.destination <> ?", d)
		}
		q = q.Order("d.next_attempt_ts").Limit(int64(n))
		if s.Store.Dialect == storage.Postgres {
			// Other processes skip the rows being claimed here instead of
			// waiting for them (SQLite has a single writer anyway).
			q = q.For("UPDATE SKIP LOCKED")
		}
		if err := q.Scan(ctx, &out); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		_, err := tx.NewUpdate().Model((*storage.Destination)(nil)).
			Set("lease_until_ts = ?", now+leaseDuration.Milliseconds()).Set("lease_owner = ?", s.owner).
			Where("destination IN (?)", bun.In(out)).Exec(ctx)
		return err
	})
	return out, err
}

func (s *Sender) activeList() []string {
	var out []string
	s.active.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	return out
}

// deliver sends dest's EDUs, batch after batch, until none is left or a
// send fails; then it gives the lease back.
func (s *Sender) deliver(ctx context.Context, dest string) {
	defer s.release(dest)
	for ctx.Err() == nil {
		txnID, edus, err := s.batch(ctx, dest)
		if err != nil {
			if ctx.Err() == nil {
				s.Log.Warn("federation sender: form transaction", "destination", dest, "err", err)
			}
			return
		}
		if txnID == "" {
			return
		}
		if len(edus) > 0 {
			err = s.send(ctx, dest, txnID, edus)
		}
		var re *RemoteError
		if err != nil && errors.As(err, &re) && !re.Retryable() {
			// The destination refuses these EDUs for good; keeping them
			// would block its queue forever. Receivers repair gaps through
			// prev_id.
			s.Log.Warn("federation sender: destination refused transaction; dropping it", "destination", dest, "txn_id", txnID, "err", err)
			err = nil
		}
		if err != nil {
			if ctx.Err() == nil {
				s.Log.Info("federation sender: transaction failed; backing off", "destination", dest, "txn_id", txnID, "err", err)
				s.backoff(dest)
			}
			return
		}
		if err := s.done(ctx, dest, txnID); err != nil {
			s.Log.Warn("federation sender: mark transaction sent", "destination", dest, "err", err)
			return
		}
	}
}

// batch returns the transaction to send to dest: the one already formed
// (a retry, possibly by another process after a crash) or a new one of up
// to 100 EDUs in outbox order. txnID is "" when nothing is waiting.
func (s *Sender) batch(ctx context.Context, dest string) (txnID string, edus []edu, err error) {
	var rows []storage.OutboxEDU
	err = s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		// Extend the lease: this process is still at it.
		if _, err := tx.NewUpdate().Model((*storage.Destination)(nil)).
			Set("lease_until_ts = ?", s.nowMS()+leaseDuration.Milliseconds()).
			Where("destination = ?", dest).Exec(ctx); err != nil {
			return err
		}
		if err := tx.NewSelect().Model(&rows).Where("destination = ? AND txn_id <> ''", dest).
			Order("id").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if len(rows) > 0 {
			txnID = rows[0].TxnID
			return nil
		}
		if err := tx.NewSelect().Model(&rows).Where("destination = ? AND txn_id = ''", dest).
			Order("id").Limit(maxEDUsPerTxn).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		txnID = fmt.Sprintf("%d-%s", rows[len(rows)-1].ID, tokens.NewSessionID()[:8])
		var keep, drop []int64
		kept := rows[:0]
		for _, r := range rows {
			if s.DropEvery > 0 && s.dropCount.Add(1)%int64(s.DropEvery) == 0 {
				drop = append(drop, r.ID)
				continue
			}
			keep = append(keep, r.ID)
			kept = append(kept, r)
		}
		rows = kept
		if len(drop) > 0 {
			s.Log.Warn("federation sender: TEST ONLY: dropping EDUs on purpose", "destination", dest, "count", len(drop))
			if _, err := tx.NewDelete().Model((*storage.OutboxEDU)(nil)).Where("id IN (?)", bun.In(drop)).Exec(ctx); err != nil {
				return err
			}
		}
		if len(keep) == 0 {
			return nil // all dropped: txnID set, nothing to send
		}
		_, err := tx.NewUpdate().Model((*storage.OutboxEDU)(nil)).Set("txn_id = ?", txnID).
			Where("id IN (?)", bun.In(keep)).Exec(ctx)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	for _, r := range rows {
		edus = append(edus, edu{Type: r.EDUType, Content: json.RawMessage(r.Content)})
	}
	return txnID, edus, nil
}

func (s *Sender) send(ctx context.Context, dest, txnID string, edus []edu) error {
	txn := transaction{Origin: s.ServerName, OriginServerTS: s.nowMS(), PDUs: []json.RawMessage{}, EDUs: edus}
	return s.Client.Do(ctx, "PUT", dest, "/_matrix/federation/v1/send/"+url.PathEscape(txnID), txn, nil)
}

// done removes a delivered transaction's rows and clears the backoff.
func (s *Sender) done(ctx context.Context, dest, txnID string) error {
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewDelete().Model((*storage.OutboxEDU)(nil)).
			Where("destination = ? AND txn_id = ?", dest, txnID).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewUpdate().Model((*storage.Destination)(nil)).
			Set("failures = 0").Set("next_attempt_ts = 0").
			Where("destination = ? AND failures > 0", dest).Exec(ctx)
		return err
	})
}

func (s *Sender) backoff(dest string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var failures int
	if err := s.Store.R.NewSelect().Model((*storage.Destination)(nil)).Column("failures").
		Where("destination = ?", dest).Scan(ctx, &failures); err != nil {
		s.Log.Warn("federation sender: read backoff", "destination", dest, "err", err)
	}
	delay := backoff(failures+1, s.BackoffBase, s.MaxBackoff)
	if _, err := s.Store.DB.NewUpdate().Model((*storage.Destination)(nil)).
		Set("failures = ?", failures+1).Set("next_attempt_ts = ?", s.nowMS()+delay.Milliseconds()).
		Where("destination = ?", dest).Exec(ctx); err != nil {
		s.Log.Warn("federation sender: record backoff", "destination", dest, "err", err)
	}
}

// release gives the destination's lease back (also on shutdown, so a
// restarted process need not wait for it to expire).
func (s *Sender) release(dest string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Store.DB.NewUpdate().Model((*storage.Destination)(nil)).
		Set("lease_until_ts = 0").Set("lease_owner = ''").
		Where("destination = ? AND lease_owner = ?", dest, s.owner).Exec(ctx); err != nil {
		s.Log.Warn("federation sender: release lease", "destination", dest, "err", err)
	}
}
