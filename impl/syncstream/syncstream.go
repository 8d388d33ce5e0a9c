// Package syncstream is the device half of /sync: send-to-device
// messages, device-list changes, one-time and fallback key counts, and
// (through a Source someone else provides) global account data, with long
// polling; and /keys/changes over the same tokens.
//
// # Tokens
//
// A next_batch token is a small composition of stream positions, all of
// them stored in the database, so a token survives restarts and any
// process on the same database can continue it:
//
//	s<user tag><device tag>_t<to-device position>_d<device-list position>[_a<account data>...]
//
// Each Source names its position with a short key of lowercase letters;
// a position missing from a token is 0 (a stream added later starts from
// its beginning) and an unknown one is ignored. A since token this server
// cannot read at all (another server's, or garbage) starts over as an
// initial sync, which acknowledges nothing. The tags (6 hex digits of
// SHA-256 of the user ID and of the device ID) refuse a token of another
// device: its to-device position would acknowledge, and so delete, this
// device's messages unseen.
//
// # Long polling
//
// Sync subscribes to the user's wake-ups (impl/wake) before reading the
// streams, then waits for a wake-up, the timeout or the client going away.
// A wake-up only means "look again": the streams are read anew. Changes
// made by other processes arrive through PostgreSQL LISTEN/NOTIFY or the
// SQLite wake-up log, so a waiting /sync answers within a poll interval
// (100 ms on SQLite, a few ms on PostgreSQL) of a change anywhere.
package syncstream

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/todevice"
	"github.com/myelin-hs/myelin/impl/wake"
)

// Device is the syncing device.
type Device struct {
	UserID   string
	DeviceID string
}

// Source is one stream of /sync. A stream is added by implementing it and
// listing it in Service.Sources.
type Source interface {
	// Key names the stream's position in tokens: one or more lowercase
	// letters, unique among the sources.
	Key() string
	// Collect adds to r what changed for dev after position from (with
	// initial, the sync has no since token and from is 0) and returns the
	// position r now reflects and whether it added anything that should
	// end a long poll.
	Collect(ctx context.Context, dev Device, from int64, initial bool, r *Response) (next int64, changed bool, err error)
}

// Acker is a Source whose items are deleted once acknowledged: a /sync
// with a since token acknowledges everything up to its position.
type Acker interface {
	Ack(ctx context.Context, dev Device, upTo int64) error
}

// UserChanges is a Source that can tell whose device lists changed
// between two of its positions (for /keys/changes).
type UserChanges interface {
	ChangedUsers(ctx context.Context, userID string, from, to int64) ([]string, error)
}

// KeyCounts gives the key counts /sync reports for a device.
type KeyCounts interface {
	// KeyCounts returns the device's unclaimed one-time keys per algorithm
	// and the algorithms of its unused fallback keys.
	KeyCounts(ctx context.Context, userID, deviceID string) (oneTime map[string]int, unusedFallback []string, err error)
}

// Response is the body of a /sync answer, shaped as the spec's schema.
type Response struct {
	NextBatch   string      `json:"next_batch"`
	Rooms       Rooms       `json:"rooms"`
	Presence    EventBatch  `json:"presence"`
	AccountData EventBatch  `json:"account_data"`
	ToDevice    ToDevice    `json:"to_device"`
	DeviceLists *DeviceList `json:"device_lists,omitempty"`
	// DeviceOneTimeKeysCount is always present (possibly empty).
	DeviceOneTimeKeysCount map[string]int `json:"device_one_time_keys_count"`
	// DeviceUnusedFallbackKeyTypes is required by the spec (possibly empty).
	DeviceUnusedFallbackKeyTypes []string `json:"device_unused_fallback_key_types"`
}

// Rooms is always empty: Myelin has no rooms.
type Rooms struct {
	Join   map[string]json.RawMessage `json:"join"`
	Invite map[string]json.RawMessage `json:"invite"`
	Leave  map[string]json.RawMessage `json:"leave"`
	Knock  map[string]json.RawMessage `json:"knock"`
}

// EventBatch is a list of events ({type, content, ...}).
type EventBatch struct {
	Events []json.RawMessage `json:"events"`
}

// ToDevice holds the send-to-device events of a response.
type ToDevice struct {
	Events []todevice.Event `json:"events"`
}

// DeviceList is device_lists of an incremental sync.
type DeviceList struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

func newResponse() *Response {
	return &Response{
		Rooms: Rooms{Join: map[string]json.RawMessage{}, Invite: map[string]json.RawMessage{},
			Leave: map[string]json.RawMessage{}, Knock: map[string]json.RawMessage{}},
		Presence:                     EventBatch{Events: []json.RawMessage{}},
		AccountData:                  EventBatch{Events: []json.RawMessage{}},
		ToDevice:                     ToDevice{Events: []todevice.Event{}},
		DeviceOneTimeKeysCount:       map[string]int{},
		DeviceUnusedFallbackKeyTypes: []string{},
	}
}

// merge adds what a source collected into o (see collect) to r.
func (r *Response) merge(o *Response) {
	r.Presence.Events = append(r.Presence.Events, o.Presence.Events...)
	r.AccountData.Events = append(r.AccountData.Events, o.AccountData.Events...)
	r.ToDevice.Events = append(r.ToDevice.Events, o.ToDevice.Events...)
	if o.DeviceLists != nil {
		if r.DeviceLists == nil {
			r.DeviceLists = &DeviceList{Changed: []string{}, Left: []string{}}
		}
		for _, u := range o.DeviceLists.Changed {
			r.changedUser(u)
		}
		for _, u := range o.DeviceLists.Left {
			if !slices.Contains(r.DeviceLists.Left, u) {
				r.DeviceLists.Left = append(r.DeviceLists.Left, u)
			}
		}
	}
	maps.Copy(r.DeviceOneTimeKeysCount, o.DeviceOneTimeKeysCount)
	for _, t := range o.DeviceUnusedFallbackKeyTypes {
		if !slices.Contains(r.DeviceUnusedFallbackKeyTypes, t) {
			r.DeviceUnusedFallbackKeyTypes = append(r.DeviceUnusedFallbackKeyTypes, t)
		}
	}
}

// changedUser adds userID to device_lists.changed.
func (r *Response) changedUser(userID string) {
	if r.DeviceLists == nil {
		r.DeviceLists = &DeviceList{Changed: []string{}, Left: []string{}}
	}
	if !slices.Contains(r.DeviceLists.Changed, userID) {
		r.DeviceLists.Changed = append(r.DeviceLists.Changed, userID)
	}
}

// Token is a parsed next_batch token.
type Token struct {
	UserTag, DeviceTag string
	Pos                map[string]int64
}

func tag(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:3])
}

// String encodes the token (positions in key order).
func (t Token) String() string {
	var b strings.Builder
	b.WriteString("s")
	b.WriteString(t.UserTag)
	b.WriteString(t.DeviceTag)
	keys := make([]string, 0, len(t.Pos))
	for k := range t.Pos {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString("_")
		b.WriteString(k)
		b.WriteString(strconv.FormatInt(t.Pos[k], 10))
	}
	return b.String()
}

func badToken(what string) error {
	return matrixerr.InvalidParam(fmt.Sprintf("Invalid %s token", what))
}

// ParseToken parses a token of this server; what names the parameter in
// errors.
func ParseToken(s, what string) (Token, error) {
	parts := strings.Split(s, "_")
	head := parts[0]
	if len(s) > 512 || len(head) != 13 || head[0] != 's' {
		return Token{}, badToken(what)
	}
	if _, err := hex.DecodeString(head[1:]); err != nil {
		return Token{}, badToken(what)
	}
	t := Token{UserTag: head[1:7], DeviceTag: head[7:13], Pos: map[string]int64{}}
	for _, p := range parts[1:] {
		i := strings.IndexFunc(p, func(r rune) bool { return r < 'a' || r > 'z' })
		if i <= 0 {
			return Token{}, badToken(what)
		}
		n, err := strconv.ParseInt(p[i:], 10, 64)
		if err != nil || n < 0 {
			return Token{}, badToken(what)
		}
		t.Pos[p[:i]] = n
	}
	return t, nil
}

// Service answers /sync and /keys/changes.
type Service struct {
	Store   *storage.Store
	Sources []Source
	Keys    KeyCounts
	Hub     *wake.Hub
	// MaxTimeout caps a long poll (default 50 s, under the HTTP server's
	// 60 s write timeout).
	MaxTimeout time.Duration

	stopOnce sync.Once
	stopping chan struct{}
	initOnce sync.Once
	// readers bounds the long polls reading the database at once (see
	// onFreshStack).
	readers chan struct{}
}

func (s *Service) init() {
	s.initOnce.Do(func() {
		s.stopping = make(chan struct{})
		n := 8
		if s.Store != nil {
			n = max(n, 2*s.Store.R.Stats().MaxOpenConnections)
		}
		s.readers = make(chan struct{}, n)
	})
}

// Stop makes waiting long polls answer at once (with whatever they have;
// their clients continue from it elsewhere) and later ones not wait: the
// server is shutting down and drains its requests.
func (s *Service) Stop() {
	s.init()
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Request is one /sync call.
type Request struct {
	Device
	// TokenHash is the hex SHA-256 of the caller's access token: a long
	// poll that ends after its token was revoked answers 401.
	TokenHash string
	Since     string
	Timeout   time.Duration
	FullState bool
	Filter    string
}

// CheckFilter accepts a filter parameter: a filter ID or a JSON object.
// Filters change nothing here (there are no rooms).
func CheckFilter(f string) error {
	if strings.HasPrefix(f, "{") {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(f), &obj); err != nil {
			return matrixerr.New(400, "M_INVALID_PARAM", "filter is not a valid JSON object: "+err.Error())
		}
	}
	return nil
}

// Sync answers GET /sync for req's device.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	r, err := s.sync(ctx, req)
	if err != nil && ctx.Err() != nil {
		if _, isMatrix := matrixerr.As(err); !isMatrix {
			// The client went away while a query ran: nobody reads the
			// answer, and it is no server error.
			r, err = newResponse(), nil
			r.NextBatch = req.Since
		}
	}
	return r, err
}

func (s *Service) sync(ctx context.Context, req Request) (*Response, error) {
	if err := CheckFilter(req.Filter); err != nil {
		return nil, err
	}
	initial := req.Since == ""
	since := Token{Pos: map[string]int64{}}
	if !initial {
		var err error
		if since, err = ParseToken(req.Since, "since"); err != nil {
			// Not a token of this server (another server's, from before a
			// migration, or garbage): start over as an initial sync, which
			// acknowledges nothing and so loses nothing.
			initial, since = true, Token{Pos: map[string]int64{}}
		} else if since.UserTag != tag(req.UserID) || since.DeviceTag != tag(req.DeviceID) {
			return nil, matrixerr.InvalidParam("The since token belongs to another device")
		}
	}
	s.init()
	timeout := min(max(req.Timeout, 0), s.maxTimeout())
	if initial || req.FullState {
		timeout = 0
	}
	select {
	case <-s.stopping:
		timeout = 0
	default:
	}
	// A long poll's goroutine keeps its stack while it waits: the database
	// work before the wait runs on a fresh one (see onFreshStack).
	run := func(f func()) { f() }
	if timeout > 0 {
		run = s.onFreshStack
	}
	if !initial {
		var err error
		run(func() { err = s.ack(ctx, req.Device, since) })
		if err != nil {
			return nil, err
		}
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	waited := false
	for {
		var woken <-chan struct{}
		cancel := func() {}
		if timeout > 0 && s.Hub != nil {
			woken, cancel = s.Hub.Subscribe(req.UserID)
		}
		var r *Response
		var changed bool
		var fin *finals
		var err error
		// After a wake-up, or when the answer goes out whatever the
		// streams hold, the answer's last reads (finals) run together with
		// the streams': a woken poll answers after one database round
		// trip. A first look that may well find nothing reads the streams
		// alone.
		if waited || timeout == 0 {
			run(func() {
				g, gctx := errgroup.WithContext(ctx)
				g.Go(func() (err error) {
					r, changed, err = s.collect(gctx, req.Device, since, initial)
					return err
				})
				g.Go(func() (err error) {
					fin, err = s.finals(gctx, req, waited || timeout > 0)
					return err
				})
				err = g.Wait()
			})
		} else {
			run(func() { r, changed, err = s.collect(ctx, req.Device, since, initial) })
		}
		if err != nil {
			cancel()
			return nil, err
		}
		if !changed && timeout > 0 {
			fin = nil // read after the wait, not before it
			select {
			case <-woken:
				cancel()
				waited = true
				continue
			case <-deadline:
			case <-s.stopping:
			case <-ctx.Done():
				// The client went away: nobody reads the answer, and it is
				// no server error either.
				cancel()
				return r, nil
			}
			waited = true
		}
		cancel()
		if fin == nil {
			run(func() { fin, err = s.finals(ctx, req, true) })
			if err != nil {
				return nil, err
			}
		}
		if !fin.alive {
			return nil, matrixerr.UnknownToken()
		}
		if fin.otk != nil {
			r.DeviceOneTimeKeysCount = fin.otk
		}
		if fin.fb != nil {
			r.DeviceUnusedFallbackKeyTypes = fin.fb
		}
		return r, nil
	}
}

// finals are the last reads of an answer: whether its token still lives
// and the device's key counts.
type finals struct {
	alive bool
	otk   map[string]int
	fb    []string
}

// finals reads them at once. With checkToken, it checks that the token
// still exists: it may have been revoked since the request was
// authenticated, while the poll waited (a logout or device deletion
// wakes it) or just before its first read (which then finds the logout's
// own device-list change). The poll then says so at once, rather than
// answer that change to a dead token.
func (s *Service) finals(ctx context.Context, req Request, checkToken bool) (*finals, error) {
	f := &finals{alive: true}
	g, gctx := errgroup.WithContext(ctx)
	if checkToken && req.TokenHash != "" {
		g.Go(func() error {
			var found []int
			if err := s.Store.ScanRead(gctx, tokenAlive, &found, req.TokenHash); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			f.alive = len(found) > 0
			return nil
		})
	}
	if s.Keys != nil {
		g.Go(func() (err error) {
			f.otk, f.fb, err = s.Keys.KeyCounts(gctx, req.UserID, req.DeviceID)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return f, nil
}

// ack acknowledges (deletes) what the since token says the device has
// seen.
func (s *Service) ack(ctx context.Context, dev Device, since Token) error {
	for _, src := range s.Sources {
		if a, ok := src.(Acker); ok {
			if err := a.Ack(ctx, dev, since.Pos[src.Key()]); err != nil {
				return err
			}
		}
	}
	return nil
}

// onFreshStack runs f on a goroutine of its own and waits for it. A long
// poll's goroutine keeps the stack it has grown for as long as it waits
// (up to 50 s), and reading the streams (bun, database/sql, the driver)
// grows a stack well past what the request path needs: run on the
// waiting goroutine, the reads would leave every idle poll holding that
// stack (1,000 idle polls: about 8 MB more). A short-lived goroutine
// hands its stack back as soon as the reads are done.
//
// At most cap(s.readers) of them run at once. The database pool serves no
// more than its size anyway, and each reader parked in the pool's queue
// holds its grown stack: 1,000 polls arriving together (clients
// reconnecting, or all woken at once) would hold 1,000 such stacks, and
// the runtime keeps freed stack memory until a later collection, so the
// burst stayed in RSS (PostgreSQL, 1,000 idle polls: about +8 MB). The
// waiting here happens on the request's shallow stack.
func (s *Service) onFreshStack(f func()) {
	s.readers <- struct{}{}
	defer func() { <-s.readers }()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func (s *Service) maxTimeout() time.Duration {
	if s.MaxTimeout > 0 {
		return s.MaxTimeout
	}
	return 50 * time.Second
}

// collect reads every source once. The sources are independent reads, so
// they run at once: a woken long poll learns what changed after one
// database round trip, not one per stream. Each writes into a response of
// its own, merged in the order of s.Sources.
func (s *Service) collect(ctx context.Context, dev Device, since Token, initial bool) (*Response, bool, error) {
	parts := make([]*Response, len(s.Sources))
	pos := make([]int64, len(s.Sources))
	changed := make([]bool, len(s.Sources))
	g, gctx := errgroup.WithContext(ctx)
	for i, src := range s.Sources {
		parts[i] = newResponse()
		g.Go(func() error {
			var err error
			pos[i], changed[i], err = src.Collect(gctx, dev, since.Pos[src.Key()], initial, parts[i])
			if err != nil {
				return fmt.Errorf("sync %s: %w", src.Key(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	r := newResponse()
	next := Token{UserTag: tag(dev.UserID), DeviceTag: tag(dev.DeviceID), Pos: map[string]int64{}}
	anyChanged := false
	for i, src := range s.Sources {
		r.merge(parts[i])
		next.Pos[src.Key()] = pos[i]
		anyChanged = anyChanged || changed[i]
	}
	r.NextBatch = next.String()
	return r, anyChanged, nil
}

// KeyChanges answers GET /keys/changes: the users whose device lists
// changed after token from and up to token to (both next_batch tokens of
// any of userID's devices). With no rooms, that is at most the user.
func (s *Service) KeyChanges(ctx context.Context, userID, from, to string) (changed, left []string, err error) {
	// A token this server cannot read counts as the beginning (from) or
	// now (to): the answer may then list a user who did not change, which
	// only costs the client a /keys/query, never a missed change.
	f, err := ParseToken(from, "from")
	if err != nil {
		f = Token{UserTag: tag(userID), Pos: map[string]int64{}}
	}
	t, err := ParseToken(to, "to")
	if err != nil {
		t = Token{UserTag: tag(userID), Pos: map[string]int64{}}
		for _, src := range s.Sources {
			t.Pos[src.Key()] = math.MaxInt64
		}
	}
	if f.UserTag != tag(userID) || t.UserTag != tag(userID) {
		return nil, nil, matrixerr.InvalidParam("The tokens belong to another user")
	}
	changed, left = []string{}, []string{}
	for _, src := range s.Sources {
		uc, ok := src.(UserChanges)
		if !ok {
			continue
		}
		users, err := uc.ChangedUsers(ctx, userID, f.Pos[src.Key()], t.Pos[src.Key()])
		if err != nil {
			return nil, nil, err
		}
		for _, u := range users {
			if !slices.Contains(changed, u) {
				changed = append(changed, u)
			}
		}
	}
	return changed, left, nil
}

// ToDeviceSource is the send-to-device stream: its position is the last
// inbox position handed out, and a since token acknowledges (deletes)
// everything up to its position. At most todevice.MaxBatch messages go
// out per response; the rest follow at once on the next sync.
type ToDeviceSource struct {
	ToDevice *todevice.Service
}

// Key implements Source.
func (ToDeviceSource) Key() string { return "t" }

// Collect implements Source.
func (s ToDeviceSource) Collect(ctx context.Context, dev Device, from int64, _ bool, r *Response) (int64, bool, error) {
	b, err := s.ToDevice.Pending(ctx, dev.UserID, dev.DeviceID, from, todevice.MaxBatch)
	if err != nil {
		return 0, false, err
	}
	r.ToDevice.Events = append(r.ToDevice.Events, b.Events...)
	return b.Next, len(b.Events) > 0, nil
}

// Ack implements Acker.
func (s ToDeviceSource) Ack(ctx context.Context, dev Device, upTo int64) error {
	return s.ToDevice.Ack(ctx, dev.UserID, dev.DeviceID, upTo)
}

// DeviceListSource is the device-list stream of the syncing user (its own
// devices added, renamed or deleted, their keys changed, and whatever else
// is recorded in that stream, such as cross-signing key changes). Its
// position is the user's device-list stream_id. Myelin has no rooms, so
// no other user shares an encrypted room with the caller: changed lists
// at most the user, and left is always empty.
type DeviceListSource struct {
	Store *storage.Store
}

// Key implements Source.
func (DeviceListSource) Key() string { return "d" }

func (s DeviceListSource) current(ctx context.Context, userID string) (int64, error) {
	var ids []int64
	if err := s.Store.ScanRead(ctx, deviceListPosition, &ids, userID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	return ids[0], nil
}

// deviceListPosition reads a user's device-list stream_id (every /sync),
// prepared.
var deviceListPosition = storage.NewRead("device-list position", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.UserStream)(nil)).Column("stream_id").Where("user_id = ?", p.Next())
})

// tokenAlive finds an access token by its hash (a long poll's answer
// checks its token still lives), prepared.
var tokenAlive = storage.NewRead("access token alive", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.AccessToken)(nil)).ColumnExpr("1").Where("token_hash = ?", p.Next()).Limit(1)
})

// Collect implements Source. Only an incremental sync reports changes.
func (s DeviceListSource) Collect(ctx context.Context, dev Device, from int64, initial bool, r *Response) (int64, bool, error) {
	cur, err := s.current(ctx, dev.UserID)
	if err != nil {
		return 0, false, err
	}
	if initial {
		return cur, false, nil
	}
	if cur != from {
		// A position past the current one comes from a token of an earlier
		// database: report a change, so the client re-reads.
		r.changedUser(dev.UserID)
		return cur, true, nil
	}
	if r.DeviceLists == nil {
		r.DeviceLists = &DeviceList{Changed: []string{}, Left: []string{}}
	}
	return cur, false, nil
}

// ChangedUsers implements UserChanges.
func (s DeviceListSource) ChangedUsers(ctx context.Context, userID string, from, to int64) ([]string, error) {
	cur, err := s.current(ctx, userID)
	if err != nil {
		return nil, err
	}
	if min(to, cur) > from {
		return []string{userID}, nil
	}
	return nil, nil
}

// DeviceListHook wakes the user's waiting syncs when their device list
// changes (a devices.ChangeHook: list it in every devices.Core's Hooks).
func DeviceListHook(ctx context.Context, tx bun.IDB, changes []devices.Change) error {
	if len(changes) == 0 {
		return nil
	}
	return wake.Publish(ctx, tx, changes[0].UserID)
}

var _ devices.ChangeHook = DeviceListHook

// AccountDataSource adapts a global account data store to /sync: Since
// returns the user's account data events ({type, content}) changed after
// position after, and the position they reflect. Changes must call
// wake.Publish for the user in their transaction.
type AccountDataSource struct {
	Since func(ctx context.Context, userID string, after int64) (events []json.RawMessage, latest int64, err error)
}

// Key implements Source.
func (AccountDataSource) Key() string { return "a" }

// Collect implements Source.
func (s AccountDataSource) Collect(ctx context.Context, dev Device, from int64, _ bool, r *Response) (int64, bool, error) {
	evs, latest, err := s.Since(ctx, dev.UserID, from)
	if err != nil {
		return 0, false, err
	}
	r.AccountData.Events = append(r.AccountData.Events, evs...)
	return latest, len(evs) > 0, nil
}

// KeyStore is what E2EKeyCounts reads (e2ekeys.Service implements it).
type KeyStore interface {
	OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error)
	UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error)
}

// E2EKeyCounts gives /sync the key counts of the end-to-end key store.
type E2EKeyCounts struct {
	Keys KeyStore
}

// KeyCounts implements KeyCounts (its two reads at once).
func (k E2EKeyCounts) KeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	var otk map[string]int
	var fb []string
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		otk, err = k.Keys.OneTimeKeyCounts(gctx, userID, deviceID)
		return err
	})
	g.Go(func() (err error) {
		fb, err = k.Keys.UnusedFallbackKeyTypes(gctx, userID, deviceID)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	if otk == nil {
		otk = map[string]int{}
	}
	if fb == nil {
		fb = []string{}
	}
	return otk, fb, nil
}
