// Package accountdata is the domain of a user's global account data
// (GET/PUT /user/{userId}/account_data/{type}): opaque JSON objects per
// event type, visible only to their owner. Secret storage (m.secret_storage.*,
// m.cross_signing.*, m.megolm_backup.v1) lives here, encrypted by the
// clients; the server never interprets the contents.
//
// Every change advances the user's account-data stream position, stored in
// the database in the transaction of the change (an upsert-increment of the
// user's row in account_data_streams, as devices does for device lists), so
// positions are strictly increasing across processes and a position becomes
// visible only after every earlier one has committed. /sync asks Since for
// what changed after the position it last served; Waker, when set, is told
// of each change inside its transaction so long polls can be woken (e.g. by
// PostgreSQL NOTIFY, delivered at commit).
//
// Myelin has no rooms: room account data is answered with the spec's errors
// (see Room).
package accountdata

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Waker is told, inside the transaction that makes it, that userID's
// account data changed to stream position pos. An implementation that
// wakes other processes must only let the wake-up out after commit (a
// PostgreSQL NOTIFY issued in tx is; in-process wake-ups can use
// storage.AfterCommit).
type Waker interface {
	AccountDataChanged(ctx context.Context, tx bun.IDB, userID string, pos int64) error
}

// WakerFunc adapts a function to Waker, e.g. the sync wake-up publisher:
//
//	accountdata.WakerFunc(func(ctx context.Context, tx bun.IDB, userID string, _ int64) error {
//		return wake.Publish(ctx, tx, userID)
//	})
type WakerFunc func(ctx context.Context, tx bun.IDB, userID string, pos int64) error

// AccountDataChanged implements Waker.
func (f WakerFunc) AccountDataChanged(ctx context.Context, tx bun.IDB, userID string, pos int64) error {
	return f(ctx, tx, userID, pos)
}

// Limits bound what one user may store. Zero values take the defaults.
type Limits struct {
	// MaxContentBytes bounds one type's content (compact JSON); larger is
	// 413 M_TOO_LARGE.
	MaxContentBytes int
	// MaxTypes bounds the number of types a user has; a new type beyond
	// it is 413 M_TOO_LARGE.
	MaxTypes int
	// MaxTotalBytes bounds the sum of a user's contents (413 M_TOO_LARGE).
	MaxTotalBytes int64
}

// Defaults: generous for real clients (Element's largest, m.direct of a
// heavy user, is some tens of KiB), small enough that one account cannot
// fill the database.
const (
	DefaultMaxContentBytes       = 256 << 10
	DefaultMaxTypes              = 1000
	DefaultMaxTotalBytes   int64 = 8 << 20
	// MaxTypeBytes bounds an event type name.
	MaxTypeBytes = 255
)

// Service implements account data.
type Service struct {
	Store  *storage.Store
	Limits Limits
	// Waker may be nil: /sync then learns of changes at its next poll.
	Waker Waker
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Event is one type of account data as /sync serves it: its current
// content and the stream position of its last change.
type Event struct {
	Type     string          `json:"type"`
	Content  json.RawMessage `json:"content"`
	StreamID int64           `json:"-"`
}

// serverManaged are the types clients may not set through this API: the
// server maintains them through their own endpoints (m.push_rules since
// v1.10, MSC4010; m.fully_read is set through /read_markers). The spec's
// answer is 405 M_BAD_JSON.
var serverManaged = map[string]string{
	"m.push_rules": "Cannot set m.push_rules through this API: push rules are managed through /pushrules",
	"m.fully_read": "Cannot set m.fully_read through this API: it is set through /read_markers",
}

func (s *Service) limits() Limits {
	l := s.Limits
	if l.MaxContentBytes <= 0 {
		l.MaxContentBytes = DefaultMaxContentBytes
	}
	if l.MaxTypes <= 0 {
		l.MaxTypes = DefaultMaxTypes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	return l
}

func (s *Service) now() int64 {
	if s.Now != nil {
		return s.Now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// checkAccess refuses a caller acting on another user's account data.
func checkAccess(caller, userID, verb string) error {
	if caller != userID {
		return matrixerr.Forbidden("Cannot " + verb + " account data for other users.")
	}
	return nil
}

// checkType refuses an empty, overlong or non-UTF-8 event type.
func checkType(eventType string) error {
	switch {
	case eventType == "":
		return matrixerr.InvalidParam("The account data type must not be empty")
	case len(eventType) > MaxTypeBytes:
		return matrixerr.InvalidParam(fmt.Sprintf("The account data type may not be longer than %d bytes", MaxTypeBytes))
	case !utf8.ValidString(eventType) || strings.ContainsRune(eventType, 0):
		return matrixerr.InvalidParam("The account data type must be valid UTF-8 without NUL")
	}
	return nil
}

// compactObject checks that content is one JSON object and returns it
// compacted.
func compactObject(content []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(content)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		if json.Valid(trimmed) {
			return nil, matrixerr.BadJSON("Content must be a JSON object.")
		}
		return nil, matrixerr.NotJSON("Content must be a JSON object.")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, matrixerr.NotJSON("Content must be a JSON object.")
	}
	return buf.Bytes(), nil
}

// Put sets caller's account data of eventType (userID must be caller) to
// content, a JSON object. Setting identical content again is no change and
// does not advance the stream.
func (s *Service) Put(ctx context.Context, caller, userID, eventType string, content []byte) error {
	if err := checkAccess(caller, userID, "add"); err != nil {
		return err
	}
	if err := checkType(eventType); err != nil {
		return err
	}
	if msg, ok := serverManaged[eventType]; ok {
		return matrixerr.New(http.StatusMethodNotAllowed, "M_BAD_JSON", msg)
	}
	body, err := compactObject(content)
	if err != nil {
		return err
	}
	lim := s.limits()
	if len(body) > lim.MaxContentBytes {
		return matrixerr.TooLarge(fmt.Sprintf("Account data content may not be larger than %d bytes", lim.MaxContentBytes))
	}
	err = s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		// The position is taken first: its row lock serialises this user's
		// writers, so the limits below see every committed change.
		pos, err := allocate(ctx, tx, userID)
		if err != nil {
			return err
		}
		var old []storage.AccountData
		if err := tx.NewSelect().Model(&old).Column("event_type", "content").
			Where("user_id = ?", userID).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		total, exists := int64(len(body)), false
		for _, o := range old {
			if o.EventType == eventType {
				if o.Content == string(body) {
					return errNoChange // rolls the allocation back
				}
				exists = true
				continue
			}
			total += int64(len(o.Content))
		}
		if !exists && len(old) >= lim.MaxTypes {
			return matrixerr.TooLarge(fmt.Sprintf("A user may store at most %d account data types", lim.MaxTypes))
		}
		if total > lim.MaxTotalBytes {
			return matrixerr.TooLarge(fmt.Sprintf("A user's account data may not exceed %d bytes in all", lim.MaxTotalBytes))
		}
		row := storage.AccountData{UserID: userID, EventType: eventType, Content: string(body), StreamID: pos, UpdatedTS: s.now()}
		if _, err := tx.NewInsert().Model(&row).
			On("CONFLICT (user_id, event_type) DO UPDATE").
			Set("content = EXCLUDED.content, stream_id = EXCLUDED.stream_id, updated_ts = EXCLUDED.updated_ts").
			Exec(ctx); err != nil {
			return fmt.Errorf("store account data: %w", err)
		}
		if s.Waker != nil {
			return s.Waker.AccountDataChanged(ctx, tx, userID, pos)
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	return err
}

// errNoChange rolls back a write that would store what is already stored.
var errNoChange = errors.New("account data unchanged")

// allocate takes the user's next account-data stream position. The row
// lock (PostgreSQL) or the single writer (SQLite) serialises the changes of
// one user, so position N+1 is allocated only after N has committed.
func allocate(ctx context.Context, tx bun.IDB, userID string) (int64, error) {
	var pos int64
	err := tx.NewRaw(
		"INSERT INTO account_data_streams (user_id, stream_id) VALUES (?, 1) "+
			"ON CONFLICT (user_id) DO UPDATE SET stream_id = account_data_streams.stream_id + 1 RETURNING stream_id",
		userID).Scan(ctx, &pos)
	if err != nil {
		return 0, fmt.Errorf("allocate account data stream position: %w", err)
	}
	return pos, nil
}

// Get returns caller's account data of eventType (userID must be caller);
// a type never set is 404 M_NOT_FOUND.
func (s *Service) Get(ctx context.Context, caller, userID, eventType string) (json.RawMessage, error) {
	if err := checkAccess(caller, userID, "get"); err != nil {
		return nil, err
	}
	if err := checkType(eventType); err != nil {
		return nil, err
	}
	var content string
	err := s.Store.R.NewSelect().Model((*storage.AccountData)(nil)).Column("content").
		Where("user_id = ? AND event_type = ?", userID, eventType).Scan(ctx, &content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, matrixerr.NotFound("Account data not found.")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(content), nil
}

// changedSince is Since's read (every /sync asks it), prepared.
var changedSince = storage.NewRead("account data changed since", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.AccountData)(nil)).Column("event_type", "content", "stream_id").
		Where("user_id = ? AND stream_id > ?", p.Next(), p.Next()).Order("stream_id")
})

// Since returns userID's account data types changed after stream position
// after (all of them for 0), in stream order, and the position to ask from
// next time: the last one returned, or after when nothing changed.
func (s *Service) Since(ctx context.Context, userID string, after int64) ([]Event, int64, error) {
	var rows []storage.AccountData
	if err := s.Store.ScanRead(ctx, changedSince, &rows, userID, after); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, after, err
	}
	events := make([]Event, len(rows))
	latest := after
	for i, r := range rows {
		events[i] = Event{Type: r.EventType, Content: json.RawMessage(r.Content), StreamID: r.StreamID}
		latest = max(latest, r.StreamID)
	}
	return events, latest, nil
}

// SyncEvents is Since with each event as /sync's account_data.events
// carries it ({"type": …, "content": …}); it fits
// syncstream.AccountDataSource's Since.
func (s *Service) SyncEvents(ctx context.Context, userID string, after int64) ([]json.RawMessage, int64, error) {
	evs, latest, err := s.Since(ctx, userID, after)
	if err != nil {
		return nil, after, err
	}
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, after, err
		}
		out[i] = b
	}
	return out, latest, nil
}

// Latest returns userID's current account-data stream position (0 before
// the first change).
func (s *Service) Latest(ctx context.Context, userID string) (int64, error) {
	var pos int64
	err := s.Store.R.NewSelect().Model((*storage.AccountDataStream)(nil)).Column("stream_id").
		Where("user_id = ?", userID).Scan(ctx, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return pos, err
}

// DeleteUser removes all of userID's account data inside tx (account
// deactivation).
func DeleteUser(ctx context.Context, tx bun.IDB, userID string) error {
	for _, m := range []any{(*storage.AccountData)(nil), (*storage.AccountDataStream)(nil)} {
		if _, err := tx.NewDelete().Model(m).Where("user_id = ?", userID).Exec(ctx); err != nil {
			return fmt.Errorf("delete account data: %w", err)
		}
	}
	return nil
}
