// Package todevice is send-to-device messaging: messages from a user's
// device to other devices, local or on other servers, delivered exactly
// once each.
//
// A message to a local device waits in the database (to_device_messages)
// until the device acknowledges it: /sync hands out the messages after the
// position of its since token and deletes those at or before it. Each
// device's inbox has its own positions, allocated by an upsert-increment
// of its to_device_streams row in the transaction that queues the message,
// so positions commit in order across processes and a reader never sees
// position n+1 before n (an acknowledgement up to n+1 can never delete an
// unseen n). Messages go with their device (ON DELETE CASCADE); the
// position row stays, so a device created again under the same ID
// continues the numbering.
//
// Messages to users of other servers go out as m.direct_to_device EDUs,
// one per destination server and request, through the durable federation
// outbox (Remote), written in the same transaction. Incoming EDUs are
// applied once per (origin, message_id) and dropped when their sender is
// not a user of the origin server.
//
// Every queued message wakes the recipient's waiting /sync (impl/wake).
package todevice

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/mxid"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
	"github.com/myelin-hs/myelin/impl/wake"
)

// EDUType is the federation EDU that carries send-to-device messages.
const EDUType = "m.direct_to_device"

// Default limits.
const (
	// DefaultMaxMessageBytes bounds one message's content (compact JSON).
	DefaultMaxMessageBytes = 64 << 10
	// DefaultMaxQueue bounds the messages waiting for one device: a device
	// that never syncs cannot fill the database.
	DefaultMaxQueue = 10000
	// DefaultMaxRecipients bounds the (user, device) entries of one
	// request ("*" counts once).
	DefaultMaxRecipients = 10000
	// MaxBatch is how many messages one /sync hands out (the spec's
	// recommendation).
	MaxBatch = 100
	// maxTypeBytes bounds an event type (the spec's 255 bytes).
	maxTypeBytes = 255
	// maxTxnIDBytes bounds a transaction ID.
	maxTxnIDBytes = 255
	// maxMessageIDBytes bounds an incoming message_id (the spec says 32
	// codepoints; other servers are held to that only loosely).
	maxMessageIDBytes = 255
)

// How long idempotency records are kept.
const (
	txnKeep      = 24 * time.Hour
	receivedKeep = 7 * 24 * time.Hour
)

// Remote queues EDUs for other servers inside the caller's transaction
// (federation.Outbox.QueueEDU implements it).
type Remote interface {
	QueueEDU(ctx context.Context, tx bun.IDB, destination, eduType string, content []byte) error
}

// Service sends and delivers send-to-device messages.
type Service struct {
	Store      *storage.Store
	ServerName string
	// Remote carries messages to users of other servers; nil drops them
	// (with a log line).
	Remote Remote
	Log    *slog.Logger
	Now    func() time.Time

	// Limits; zero means the default.
	MaxMessageBytes int
	MaxQueue        int
	MaxRecipients   int
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// Event is a to-device event as /sync delivers it.
type Event struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// Messages maps user ID → device ID (or "*") → message content.
type Messages map[string]map[string]json.RawMessage

// target is one local recipient device.
type target struct {
	userID, deviceID string
	content          string
}

func validType(t string) error {
	if t == "" || len(t) > maxTypeBytes || !utf8.ValidString(t) || strings.ContainsFunc(t, isControl) {
		return matrixerr.InvalidParam(fmt.Sprintf("The event type must be 1 to %d bytes of UTF-8 without control characters", maxTypeBytes))
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// compactObject checks that raw is a JSON object and returns it compact.
func compactObject(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return "", false
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", false
	}
	return b.String(), true
}

// Send answers PUT /sendToDevice/{eventType}/{txnId} for the device
// (userID, deviceID). It is idempotent per device, event type and txnID:
// a retransmission succeeds without sending again. Local recipients get
// the message in their inbox in the same transaction; unknown users and
// devices are ignored (as "*" of a user without devices); users of other
// servers get it through Remote. A message larger than the limit answers
// 413 M_TOO_LARGE; a recipient device whose inbox is full answers 429
// M_LIMIT_EXCEEDED and nothing is sent.
func (s *Service) Send(ctx context.Context, userID, deviceID, eventType, txnID string, msgs Messages) error {
	if err := validType(eventType); err != nil {
		return err
	}
	if txnID == "" || len(txnID) > maxTxnIDBytes || strings.ContainsFunc(txnID, isControl) {
		return matrixerr.InvalidParam(fmt.Sprintf("The transaction ID must be 1 to %d bytes without control characters", maxTxnIDBytes))
	}
	maxBytes := orDefault(s.MaxMessageBytes, DefaultMaxMessageBytes)
	local := map[string]map[string]string{}
	remote := map[string]map[string]map[string]json.RawMessage{} // server → user → device → content
	n := 0
	for u, devs := range msgs {
		server, ok := mxid.ServerName(u)
		if !ok || !utf8.ValidString(u) || strings.ContainsFunc(u, isControl) {
			return matrixerr.InvalidParam(fmt.Sprintf("Invalid user ID %q", u))
		}
		for d, content := range devs {
			if n++; n > orDefault(s.MaxRecipients, DefaultMaxRecipients) {
				return matrixerr.TooLarge(fmt.Sprintf("At most %d recipient devices per request", orDefault(s.MaxRecipients, DefaultMaxRecipients)))
			}
			if d != "*" && devices.ValidateDeviceID(d) != nil {
				return matrixerr.InvalidParam(fmt.Sprintf("Invalid device ID %q for %s", d, u))
			}
			c, ok := compactObject(content)
			if !ok {
				return matrixerr.BadJSON(fmt.Sprintf("The message for %s %s must be a JSON object", u, d))
			}
			if len(c) > maxBytes {
				return matrixerr.TooLarge(fmt.Sprintf("The message for %s %s is larger than %d bytes", u, d, maxBytes))
			}
			if server == s.ServerName {
				if local[u] == nil {
					local[u] = map[string]string{}
				}
				local[u][d] = c
				continue
			}
			if !mxid.ValidServerName(server) {
				return matrixerr.InvalidParam(fmt.Sprintf("Invalid user ID %q", u))
			}
			if remote[server] == nil {
				remote[server] = map[string]map[string]json.RawMessage{}
			}
			if remote[server][u] == nil {
				remote[server][u] = map[string]json.RawMessage{}
			}
			remote[server][u][d] = json.RawMessage(c)
		}
	}
	if len(remote) > 0 && s.Remote == nil {
		s.log().Warn("send-to-device: federation is not available; dropping messages to other servers", "servers", len(remote))
		remote = nil
	}
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(&storage.ToDeviceTxn{
			UserID: userID, DeviceID: deviceID, EventType: eventType, TxnID: txnID, CreatedTS: s.now().UnixMilli(),
		}).On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("record transaction: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // a retransmission
		}
		if err := s.enqueue(ctx, tx, userID, eventType, local, true); err != nil {
			return err
		}
		servers := make([]string, 0, len(remote))
		for srv := range remote {
			servers = append(servers, srv)
		}
		slices.Sort(servers)
		for _, srv := range servers {
			content, err := json.Marshal(DirectToDevice{
				Sender: userID, Type: eventType, MessageID: tokens.NewSessionID(), Messages: remote[srv],
			})
			if err != nil {
				return err
			}
			if err := s.Remote.QueueEDU(ctx, tx, srv, EDUType, content); err != nil {
				return err
			}
		}
		return nil
	})
}

// DirectToDevice is the content of an m.direct_to_device EDU.
type DirectToDevice struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// queueFull is the answer to a message for a device whose inbox is full.
func queueFull(userID, deviceID string, max int) error {
	return &matrixerr.Error{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED",
		Message:    fmt.Sprintf("Device %s of %s has %d undelivered messages; try again once it has synced", deviceID, userID, max),
		RetryAfter: 30 * time.Second}
}

// enqueue puts the messages of local (user → device or "*" → compact JSON
// content) into the inboxes of the devices that exist, inside tx. A
// device named and covered by "*" gets the named message. With strict, a
// full inbox fails the whole call (queueFull); otherwise the message for
// that device is dropped with a log line (an EDU cannot be answered with
// an error).
func (s *Service) enqueue(ctx context.Context, tx bun.Tx, sender, eventType string, local map[string]map[string]string, strict bool) error {
	if len(local) == 0 {
		return nil
	}
	users := make([]string, 0, len(local))
	for u := range local {
		users = append(users, u)
	}
	slices.Sort(users)
	// The recipients with the length of their inbox, in one round trip:
	// counted up to the limit only, so a full inbox costs no more than
	// maxQ index entries to recognise.
	maxQ := orDefault(s.MaxQueue, DefaultMaxQueue)
	queued := tx.NewSelect().Model((*storage.ToDeviceMessage)(nil)).ColumnExpr("1").
		Where("?TableAlias.user_id = device.user_id AND ?TableAlias.device_id = device.device_id").Limit(int64(maxQ))
	var rows []struct {
		UserID   string `bun:"user_id"`
		DeviceID string `bun:"device_id"`
		Queued   int    `bun:"queued"`
	}
	q := tx.NewSelect().Model((*storage.Device)(nil)).Column("user_id", "device_id").
		ColumnExpr("(SELECT COUNT(*) FROM (?) AS q) AS queued", queued).
		Where("user_id IN (?)", bun.In(users)).Order("user_id", "device_id")
	if s.Store.Dialect == storage.Postgres {
		// The devices may not be deleted before this commits (their
		// messages' foreign key); a deletion waits, then takes them along.
		q = q.For("KEY SHARE OF device")
	}
	if err := q.Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("find recipient devices: %w", err)
	}
	var targets []target
	for _, r := range rows {
		m := local[r.UserID]
		c, ok := m[r.DeviceID]
		if !ok {
			c, ok = m["*"]
		}
		if !ok {
			continue
		}
		if r.Queued >= maxQ {
			if strict {
				return queueFull(r.UserID, r.DeviceID, maxQ)
			}
			s.log().Warn("send-to-device: inbox full; dropping a message from another server", "user_id", r.UserID, "device_id", r.DeviceID)
			continue
		}
		targets = append(targets, target{r.UserID, r.DeviceID, c})
	}
	if len(targets) == 0 {
		return nil
	}
	now := s.now().UnixMilli()
	for start := 0; start < len(targets); start += 500 {
		chunk := targets[start:min(start+500, len(targets))]
		// Positions: one upsert-increment per device, in (user, device)
		// order so concurrent senders lock rows in one order.
		streams := make([]storage.ToDeviceStream, len(chunk))
		for i, t := range chunk {
			streams[i] = storage.ToDeviceStream{UserID: t.userID, DeviceID: t.deviceID, Pos: 1}
		}
		var got []storage.ToDeviceStream
		if _, err := tx.NewInsert().Model(&streams).On("CONFLICT (user_id, device_id) DO UPDATE").
			Set("pos = ?TableAlias.pos + 1").Returning("user_id, device_id, pos").Exec(ctx, &got); err != nil {
			return fmt.Errorf("allocate inbox positions: %w", err)
		}
		pos := make(map[[2]string]int64, len(got))
		for _, g := range got {
			pos[[2]string{g.UserID, g.DeviceID}] = g.Pos
		}
		msgs := make([]storage.ToDeviceMessage, len(chunk))
		for i, t := range chunk {
			p, ok := pos[[2]string{t.userID, t.deviceID}]
			if !ok {
				return fmt.Errorf("no inbox position allocated for %s %s", t.userID, t.deviceID)
			}
			msgs[i] = storage.ToDeviceMessage{UserID: t.userID, DeviceID: t.deviceID, Pos: p,
				Sender: sender, Type: eventType, Content: t.content, CreatedTS: now}
		}
		if _, err := tx.NewInsert().Model(&msgs).Exec(ctx); err != nil {
			return fmt.Errorf("queue to-device messages: %w", err)
		}
	}
	recipients := make([]string, 0, len(users))
	for i, t := range targets {
		if i == 0 || t.userID != targets[i-1].userID {
			recipients = append(recipients, t.userID)
		}
	}
	return wake.Publish(ctx, tx, recipients...)
}

// Receive applies an incoming m.direct_to_device EDU from origin inside
// tx (the transaction of the federation /send that carried it). It is
// applied once per (origin, message_id); a sender that is not a user of
// origin, or a malformed EDU, is dropped with a log line. Only recipients
// that are users of this server are considered.
func (s *Service) Receive(ctx context.Context, tx bun.Tx, origin string, raw json.RawMessage) error {
	var m DirectToDevice
	if err := json.Unmarshal(raw, &m); err != nil {
		s.log().Info("dropping malformed m.direct_to_device", "origin", origin, "err", err)
		return nil
	}
	if server, ok := mxid.ServerName(m.Sender); !ok || server != origin {
		s.log().Info("dropping m.direct_to_device from a sender of another server", "origin", origin, "sender", m.Sender)
		return nil
	}
	if m.MessageID == "" || len(m.MessageID) > maxMessageIDBytes || validType(m.Type) != nil {
		s.log().Info("dropping m.direct_to_device without a valid message_id or type", "origin", origin)
		return nil
	}
	maxBytes := orDefault(s.MaxMessageBytes, DefaultMaxMessageBytes)
	local := map[string]map[string]string{}
	for u, devs := range m.Messages {
		if server, ok := mxid.ServerName(u); !ok || server != s.ServerName {
			continue
		}
		for d, content := range devs {
			if d != "*" && devices.ValidateDeviceID(d) != nil {
				continue
			}
			c, ok := compactObject(content)
			if !ok || len(c) > maxBytes {
				s.log().Info("dropping an invalid or oversized message of m.direct_to_device", "origin", origin, "user_id", u)
				continue
			}
			if local[u] == nil {
				local[u] = map[string]string{}
			}
			local[u][d] = c
		}
	}
	res, err := tx.NewInsert().Model(&storage.ToDeviceReceived{Origin: origin, MessageID: m.MessageID, ReceivedTS: s.now().UnixMilli()}).
		On("CONFLICT DO NOTHING").Exec(ctx)
	if err != nil {
		return fmt.Errorf("record message_id: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // seen before
	}
	return s.enqueue(ctx, tx, m.Sender, m.Type, local, false)
}

// Batch is what a device's inbox holds after a position.
type Batch struct {
	Events []Event
	// Next is the position of the last event (or the position asked
	// about, if none): acknowledging it acknowledges these events.
	Next int64
	// More is true when more events wait after these.
	More bool
}

// Pending returns up to limit (at most MaxBatch) messages waiting for the
// device after position after, in order of arrival.
func (s *Service) Pending(ctx context.Context, userID, deviceID string, after int64, limit int) (Batch, error) {
	if limit <= 0 || limit > MaxBatch {
		limit = MaxBatch
	}
	var rows []storage.ToDeviceMessage
	if err := s.Store.ScanRead(ctx, pendingBatch, &rows, userID, deviceID, after); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Batch{}, err
	}
	b := Batch{Next: after, Events: []Event{}}
	if len(rows) > limit {
		rows, b.More = rows[:limit], true
	}
	for _, r := range rows {
		b.Events = append(b.Events, Event{Sender: r.Sender, Type: r.Type, Content: json.RawMessage(r.Content)})
		b.Next = r.Pos
	}
	return b, nil
}

// pendingBatch is Pending's read (every /sync asks it), prepared: a full
// batch and one more row, which tells whether more wait.
var pendingBatch = storage.NewRead("pending to-device messages", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.ToDeviceMessage)(nil)).Column("pos", "sender", "type", "content").
		Where("user_id = ? AND device_id = ? AND pos > ?", p.Next(), p.Next(), p.Next()).
		Order("pos").Limit(MaxBatch + 1)
})

// HasPending reports whether messages wait for the device after position
// after.
func (s *Service) HasPending(ctx context.Context, userID, deviceID string, after int64) (bool, error) {
	return s.Store.R.NewSelect().Model((*storage.ToDeviceMessage)(nil)).
		Where("user_id = ? AND device_id = ? AND pos > ?", userID, deviceID, after).Exists(ctx)
}

// Ack deletes the device's messages at or before position upTo: the
// device has received them. It writes only when there is something to
// delete.
func (s *Service) Ack(ctx context.Context, userID, deviceID string, upTo int64) error {
	if upTo <= 0 {
		return nil
	}
	found, err := s.Store.R.NewSelect().Model((*storage.ToDeviceMessage)(nil)).
		Where("user_id = ? AND device_id = ? AND pos <= ?", userID, deviceID, upTo).Exists(ctx)
	if err != nil || !found {
		return err
	}
	_, err = s.Store.DB.NewDelete().Model((*storage.ToDeviceMessage)(nil)).
		Where("user_id = ? AND device_id = ? AND pos <= ?", userID, deviceID, upTo).Exec(ctx)
	return err
}

// Position returns the last position allocated in the device's inbox (0
// if none): no message can be acknowledged past it.
func (s *Service) Position(ctx context.Context, userID, deviceID string) (int64, error) {
	var pos int64
	err := s.Store.R.NewSelect().Model((*storage.ToDeviceStream)(nil)).Column("pos").
		Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(ctx, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return pos, err
}

// Prune forgets old idempotency records: transaction IDs after a day,
// received message IDs after a week.
func (s *Service) Prune(ctx context.Context) error {
	now := s.now()
	if _, err := s.Store.DB.NewDelete().Model((*storage.ToDeviceTxn)(nil)).
		Where("created_ts < ?", now.Add(-txnKeep).UnixMilli()).Exec(ctx); err != nil {
		return err
	}
	_, err := s.Store.DB.NewDelete().Model((*storage.ToDeviceReceived)(nil)).
		Where("received_ts < ?", now.Add(-receivedKeep).UnixMilli()).Exec(ctx)
	return err
}

// Run prunes every hour until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := s.Prune(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("send-to-device: prune", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
