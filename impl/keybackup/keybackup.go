// Package keybackup is the domain of server-side key backups
// (/room_keys/version and /room_keys/keys): per user, numbered backup
// versions with opaque auth_data, each holding opaque encrypted megolm
// session keys by room and session. Room IDs are only keys here; nothing
// is checked against rooms (Myelin has none).
//
// Versions are numbered per user from 1; the current version is the
// highest one not deleted. Deleted versions stay as tombstones, so a
// number is never handed out twice and deleting again succeeds. Keys may
// only be written to the current version (403 M_WRONG_ROOM_KEYS_VERSION
// with current_version otherwise); they may be read and deleted in any
// version that exists.
//
// Each write locks its version's row first (an UPDATE), so writers of one
// backup are serialised across processes and its key count and etag are
// exact: the etag changes exactly when the stored keys change.
package keybackup

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Limits bound what one user may store. Zero values take the defaults.
type Limits struct {
	// MaxAuthDataBytes bounds a version's auth_data (compact JSON).
	MaxAuthDataBytes int
	// MaxSessionDataBytes bounds one key's session_data (compact JSON).
	MaxSessionDataBytes int
	// MaxKeys bounds the keys of one backup version.
	MaxKeys int64
}

const (
	DefaultMaxAuthDataBytes    = 64 << 10
	DefaultMaxSessionDataBytes = 64 << 10
	// DefaultMaxKeys is far above the largest real backups (years of
	// Element use reach a few hundred thousand keys).
	DefaultMaxKeys int64 = 2_000_000
	// MaxIDBytes bounds room IDs, session IDs and algorithm names.
	MaxIDBytes = 255
)

// Service implements the key backup operations.
type Service struct {
	Store  *storage.Store
	Limits Limits
	// Rate limits version creation per account (each version stays as a
	// row for good); nil limits nothing.
	Rate *ratelimit.Limiter
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// VersionInfo describes one backup version (GET /room_keys/version).
type VersionInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// KeyData is one backed-up session key (KeyBackupData).
type KeyData struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// Keys are session keys by room ID and session ID.
type Keys map[string]map[string]KeyData

// Update answers every key write and delete: the backup's new etag and
// its number of keys.
type Update struct {
	Etag  string `json:"etag"`
	Count int64  `json:"count"`
}

func (s *Service) limits() Limits {
	l := s.Limits
	if l.MaxAuthDataBytes <= 0 {
		l.MaxAuthDataBytes = DefaultMaxAuthDataBytes
	}
	if l.MaxSessionDataBytes <= 0 {
		l.MaxSessionDataBytes = DefaultMaxSessionDataBytes
	}
	if l.MaxKeys <= 0 {
		l.MaxKeys = DefaultMaxKeys
	}
	return l
}

func (s *Service) now() int64 {
	if s.Now != nil {
		return s.Now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

func errUnknownVersion(v string) error {
	return matrixerr.NotFound(fmt.Sprintf("Unknown backup version %q", v))
}

func errWrongVersion(current int64) error {
	return &matrixerr.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION",
		Message: "Wrong backup version.", Extra: map[string]any{"current_version": strconv.FormatInt(current, 10)}}
}

// parseVersion reads a version string as the server wrote it: a positive
// decimal without leading zeros. Anything else names no version.
func parseVersion(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != v {
		return 0, false
	}
	return n, true
}

// compactObject checks that raw is one JSON object of at most limit bytes
// once compacted, and returns it compacted; what names the field.
func compactObject(raw []byte, limit int, what string) ([]byte, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, matrixerr.BadJSON(what + " must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, matrixerr.BadJSON(what + " must be a JSON object")
	}
	if buf.Len() > limit {
		return nil, matrixerr.TooLarge(fmt.Sprintf("%s may not be larger than %d bytes", what, limit))
	}
	return buf.Bytes(), nil
}

func checkID(v, what string) error {
	if v == "" || len(v) > MaxIDBytes || !utf8.ValidString(v) {
		return matrixerr.InvalidParam(fmt.Sprintf("%s must be 1 to %d bytes of UTF-8", what, MaxIDBytes))
	}
	return nil
}

// current returns userID's current version (0 for none).
func current(ctx context.Context, db bun.IDB, userID string) (int64, error) {
	var v int64
	err := db.NewSelect().Model((*storage.KeyBackupVersion)(nil)).ColumnExpr("COALESCE(MAX(version), 0)").
		Where("user_id = ? AND deleted = ?", userID, false).Scan(ctx, &v)
	return v, err
}

// CreateVersion creates a new backup version, which becomes the current
// one, and returns its version string.
func (s *Service) CreateVersion(ctx context.Context, userID, algorithm string, authData []byte) (string, error) {
	if err := checkID(algorithm, "algorithm"); err != nil {
		return "", err
	}
	ad, err := compactObject(authData, s.limits().MaxAuthDataBytes, "auth_data")
	if err != nil {
		return "", err
	}
	if err := s.Rate.Allow("", userID); err != nil {
		return "", err
	}
	// Two processes creating at once may pick the same number; the loser
	// hits the primary key and tries the next one.
	for attempt := 0; ; attempt++ {
		var version int64
		err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			if err := tx.NewSelect().Model((*storage.KeyBackupVersion)(nil)).ColumnExpr("COALESCE(MAX(version), 0) + 1").
				Where("user_id = ?", userID).Scan(ctx, &version); err != nil {
				return err
			}
			row := storage.KeyBackupVersion{UserID: userID, Version: version, Algorithm: algorithm,
				AuthData: string(ad), CreatedTS: s.now()}
			_, err := tx.NewInsert().Model(&row).Exec(ctx)
			return err
		})
		if storage.IsUniqueViolation(err) && attempt < 10 {
			continue
		}
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(version, 10), nil
	}
}

// GetVersion describes version ("" for the current one).
func (s *Service) GetVersion(ctx context.Context, userID, version string) (VersionInfo, error) {
	var row storage.KeyBackupVersion
	q := s.Store.R.NewSelect().Model(&row).Where("user_id = ? AND deleted = ?", userID, false)
	if version == "" {
		q = q.Order("version DESC").Limit(1)
	} else {
		n, ok := parseVersion(version)
		if !ok {
			return VersionInfo{}, errUnknownVersion(version)
		}
		q = q.Where("version = ?", n)
	}
	err := q.Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		if version == "" {
			return VersionInfo{}, matrixerr.NotFound("No current backup version")
		}
		return VersionInfo{}, errUnknownVersion(version)
	}
	if err != nil {
		return VersionInfo{}, err
	}
	return VersionInfo{Algorithm: row.Algorithm, AuthData: json.RawMessage(row.AuthData), Count: row.KeyCount,
		Etag: strconv.FormatInt(row.Etag, 10), Version: strconv.FormatInt(row.Version, 10)}, nil
}

// UpdateVersion replaces the auth_data of an existing version. The
// algorithm must stay the same, and bodyVersion, when given, must be the
// version in the path (400 M_INVALID_PARAM otherwise).
func (s *Service) UpdateVersion(ctx context.Context, userID, version, algorithm string, authData []byte, bodyVersion *string) error {
	if bodyVersion != nil && *bodyVersion != version {
		return matrixerr.InvalidParam("The version in the body does not match the version in the path")
	}
	ad, err := compactObject(authData, s.limits().MaxAuthDataBytes, "auth_data")
	if err != nil {
		return err
	}
	n, ok := parseVersion(version)
	if !ok {
		return errUnknownVersion(version)
	}
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var row storage.KeyBackupVersion
		err := tx.NewSelect().Model(&row).Column("algorithm").
			Where("user_id = ? AND version = ? AND deleted = ?", userID, n, false).Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return errUnknownVersion(version)
		}
		if err != nil {
			return err
		}
		if row.Algorithm != algorithm {
			return matrixerr.InvalidParam("Algorithm does not match")
		}
		res, err := tx.NewUpdate().Model((*storage.KeyBackupVersion)(nil)).Set("auth_data = ?", string(ad)).
			Where("user_id = ? AND version = ? AND deleted = ?", userID, n, false).Exec(ctx)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k != 1 { // deleted meanwhile
			return errUnknownVersion(version)
		}
		return nil
	})
}

// DeleteVersion deletes version and all its keys. Deleting a version
// deleted before succeeds; one that never existed is 404 M_NOT_FOUND.
func (s *Service) DeleteVersion(ctx context.Context, userID, version string) error {
	n, ok := parseVersion(version)
	if !ok {
		return errUnknownVersion(version)
	}
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		// The update takes the row lock first, so a concurrent key write
		// to this version either commits before or finds it deleted.
		res, err := tx.NewUpdate().Model((*storage.KeyBackupVersion)(nil)).
			Set("deleted = ?", true).Set("key_count = 0").Set("etag = etag + 1").
			Where("user_id = ? AND version = ?", userID, n).Exec(ctx)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return errUnknownVersion(version)
		}
		_, err = tx.NewDelete().Model((*storage.KeyBackupSession)(nil)).
			Where("user_id = ? AND version = ?", userID, n).Exec(ctx)
		return err
	})
}

// lockVersion takes the row lock of a live version and returns its row,
// or 404 M_NOT_FOUND.
func lockVersion(ctx context.Context, tx bun.IDB, userID, version string) (storage.KeyBackupVersion, error) {
	var row storage.KeyBackupVersion
	n, ok := parseVersion(version)
	if !ok {
		return row, errUnknownVersion(version)
	}
	res, err := tx.NewUpdate().Model((*storage.KeyBackupVersion)(nil)).Set("etag = etag").
		Where("user_id = ? AND version = ? AND deleted = ?", userID, n, false).Exec(ctx)
	if err != nil {
		return row, err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return row, errUnknownVersion(version)
	}
	err = tx.NewSelect().Model(&row).Where("user_id = ? AND version = ?", userID, n).Scan(ctx)
	return row, err
}

// PutKeys stores keys in version, which must be the current version. A key
// for a session already stored replaces it only if it is better by the
// spec's rule (see Better).
func (s *Service) PutKeys(ctx context.Context, userID, version string, keys Keys) (Update, error) {
	lim := s.limits()
	type entry struct {
		room, session string
		data          KeyData
		compact       string
	}
	var entries []entry
	for room, sessions := range keys {
		if err := checkID(room, "room ID"); err != nil {
			return Update{}, err
		}
		for session, d := range sessions {
			if err := checkID(session, "session ID"); err != nil {
				return Update{}, err
			}
			if d.FirstMessageIndex < 0 || d.ForwardedCount < 0 {
				return Update{}, matrixerr.BadJSON("first_message_index and forwarded_count must not be negative")
			}
			sd, err := compactObject(d.SessionData, lim.MaxSessionDataBytes, "session_data")
			if err != nil {
				return Update{}, err
			}
			entries = append(entries, entry{room, session, d, string(sd)})
		}
	}
	var out Update
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		row, err := lockVersion(ctx, tx, userID, version)
		if err != nil {
			return err
		}
		cur, err := current(ctx, tx, userID)
		if err != nil {
			return err
		}
		if row.Version != cur {
			return errWrongVersion(cur)
		}
		// What is stored already, for the rooms written.
		existing := map[[2]string]storage.KeyBackupSession{}
		byRoom := map[string][]string{}
		for _, e := range entries {
			byRoom[e.room] = append(byRoom[e.room], e.session)
		}
		for room, sessions := range byRoom {
			for start := 0; start < len(sessions); start += 500 {
				var rows []storage.KeyBackupSession
				if err := tx.NewSelect().Model(&rows).
					Column("room_id", "session_id", "first_message_index", "forwarded_count", "is_verified").
					Where("user_id = ? AND version = ? AND room_id = ?", userID, row.Version, room).
					Where("session_id IN (?)", bun.In(sessions[start:min(start+500, len(sessions))])).
					Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				for _, r := range rows {
					existing[[2]string{r.RoomID, r.SessionID}] = r
				}
			}
		}
		var write []storage.KeyBackupSession
		added := int64(0)
		for _, e := range entries {
			if old, ok := existing[[2]string{e.room, e.session}]; ok {
				if !Better(e.data, KeyData{FirstMessageIndex: old.FirstMessageIndex, ForwardedCount: old.ForwardedCount, IsVerified: old.IsVerified}) {
					continue
				}
			} else {
				added++
			}
			write = append(write, storage.KeyBackupSession{UserID: userID, Version: row.Version, RoomID: e.room,
				SessionID: e.session, FirstMessageIndex: e.data.FirstMessageIndex, ForwardedCount: e.data.ForwardedCount,
				IsVerified: e.data.IsVerified, SessionData: e.compact})
		}
		out = Update{Etag: strconv.FormatInt(row.Etag, 10), Count: row.KeyCount}
		if len(write) == 0 {
			return nil
		}
		if row.KeyCount+added > lim.MaxKeys {
			return matrixerr.TooLarge(fmt.Sprintf("A backup may hold at most %d keys", lim.MaxKeys))
		}
		for start := 0; start < len(write); start += 500 {
			chunk := write[start:min(start+500, len(write))]
			if _, err := tx.NewInsert().Model(&chunk).
				On("CONFLICT (user_id, version, room_id, session_id) DO UPDATE").
				Set("first_message_index = EXCLUDED.first_message_index, forwarded_count = EXCLUDED.forwarded_count, " +
					"is_verified = EXCLUDED.is_verified, session_data = EXCLUDED.session_data").
				Exec(ctx); err != nil {
				return fmt.Errorf("store backed-up keys: %w", err)
			}
		}
		out, err = bump(ctx, tx, userID, row.Version, added)
		return err
	})
	return out, err
}

// bump records a change of the stored keys of a version: a new etag and
// delta more keys.
func bump(ctx context.Context, tx bun.IDB, userID string, version, delta int64) (Update, error) {
	var row storage.KeyBackupVersion
	if err := tx.NewUpdate().Model(&row).Set("etag = etag + 1").Set("key_count = key_count + ?", delta).
		Where("user_id = ? AND version = ?", userID, version).Returning("etag, key_count").Scan(ctx); err != nil {
		return Update{}, err
	}
	return Update{Etag: strconv.FormatInt(row.Etag, 10), Count: row.KeyCount}, nil
}

// Better reports whether a new key should replace a stored one for the
// same session, by the spec's rule: a verified key beats an unverified
// one; then the lower first_message_index wins; then the lower
// forwarded_count. A key equal on all three keeps the stored one.
func Better(newKey, stored KeyData) bool {
	if newKey.IsVerified != stored.IsVerified {
		return newKey.IsVerified
	}
	if newKey.FirstMessageIndex != stored.FirstMessageIndex {
		return newKey.FirstMessageIndex < stored.FirstMessageIndex
	}
	return newKey.ForwardedCount < stored.ForwardedCount
}

// readableVersion returns the number of a live version, or 404.
func readableVersion(ctx context.Context, db bun.IDB, userID, version string) (int64, error) {
	n, ok := parseVersion(version)
	if !ok {
		return 0, errUnknownVersion(version)
	}
	exists, err := db.NewSelect().Model((*storage.KeyBackupVersion)(nil)).
		Where("user_id = ? AND version = ? AND deleted = ?", userID, n, false).Exists(ctx)
	if err == nil && !exists {
		err = errUnknownVersion(version)
	}
	return n, err
}

// GetKeys returns the keys of version: all of them (roomID ""), or one
// room's (possibly none).
func (s *Service) GetKeys(ctx context.Context, userID, version, roomID string) (Keys, error) {
	out := Keys{}
	err := func() error {
		db := s.Store.R
		n, err := readableVersion(ctx, db, userID, version)
		if err != nil {
			return err
		}
		var rows []storage.KeyBackupSession
		q := db.NewSelect().Model(&rows).Where("user_id = ? AND version = ?", userID, n)
		if roomID != "" {
			q = q.Where("room_id = ?", roomID)
		}
		if err := q.Order("room_id", "session_id").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, r := range rows {
			if out[r.RoomID] == nil {
				out[r.RoomID] = map[string]KeyData{}
			}
			out[r.RoomID][r.SessionID] = KeyData{FirstMessageIndex: r.FirstMessageIndex, ForwardedCount: r.ForwardedCount,
				IsVerified: r.IsVerified, SessionData: json.RawMessage(r.SessionData)}
		}
		return nil
	}()
	return out, err
}

// GetKey returns one session's key from version; 404 M_NOT_FOUND if the
// version or the key is not there.
func (s *Service) GetKey(ctx context.Context, userID, version, roomID, sessionID string) (KeyData, error) {
	var kd KeyData
	err := func() error {
		db := s.Store.R
		n, err := readableVersion(ctx, db, userID, version)
		if err != nil {
			return err
		}
		var r storage.KeyBackupSession
		err = db.NewSelect().Model(&r).
			Where("user_id = ? AND version = ? AND room_id = ? AND session_id = ?", userID, n, roomID, sessionID).Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return matrixerr.NotFound("Key not found.")
		}
		kd = KeyData{FirstMessageIndex: r.FirstMessageIndex, ForwardedCount: r.ForwardedCount,
			IsVerified: r.IsVerified, SessionData: json.RawMessage(r.SessionData)}
		return err
	}()
	return kd, err
}

// DeleteKeys deletes keys from version: all of them (roomID ""), one
// room's (sessionID ""), or one session's. Deleting nothing is no change.
func (s *Service) DeleteKeys(ctx context.Context, userID, version, roomID, sessionID string) (Update, error) {
	var out Update
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		row, err := lockVersion(ctx, tx, userID, version)
		if err != nil {
			return err
		}
		q := tx.NewDelete().Model((*storage.KeyBackupSession)(nil)).Where("user_id = ? AND version = ?", userID, row.Version)
		if roomID != "" {
			q = q.Where("room_id = ?", roomID)
			if sessionID != "" {
				q = q.Where("session_id = ?", sessionID)
			}
		}
		res, err := q.Exec(ctx)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if n == 0 {
			out = Update{Etag: strconv.FormatInt(row.Etag, 10), Count: row.KeyCount}
			return nil
		}
		out, err = bump(ctx, tx, userID, row.Version, -n)
		return err
	})
	return out, err
}

// DeleteUser removes every backup of userID inside tx (account
// deactivation).
func DeleteUser(ctx context.Context, tx bun.IDB, userID string) error {
	for _, m := range []any{(*storage.KeyBackupSession)(nil), (*storage.KeyBackupVersion)(nil)} {
		if _, err := tx.NewDelete().Model(m).Where("user_id = ?", userID).Exec(ctx); err != nil {
			return fmt.Errorf("delete key backups: %w", err)
		}
	}
	return nil
}
