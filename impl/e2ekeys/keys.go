package e2ekeys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/mxid"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Remote answers key requests about users of other servers.
type Remote interface {
	// QueryDevices returns the device keys of remote users (device ID →
	// signed keys with unsigned.device_display_name), for the listed
	// devices or all of a user's devices when the list is empty. Servers
	// that could not be reached are returned as failures.
	QueryDevices(ctx context.Context, users map[string][]string) (map[string]map[string]json.RawMessage, map[string]error)
	// CrossSigningKeys returns the cached master and self-signing keys of
	// remote users (user → key type → signed key); users without are
	// absent.
	CrossSigningKeys(ctx context.Context, userIDs []string) (map[string]map[string]json.RawMessage, error)
	// ClaimKeys claims one-time keys on server (user → device → algorithm).
	ClaimKeys(ctx context.Context, server string, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error)
}

// Service implements the key operations.
type Service struct {
	Store      *storage.Store
	Devices    *devices.Core
	ServerName string
	// Remote serves other servers' users; nil answers them as unreachable.
	Remote Remote
}

// Failures maps an unreachable server name to a description, as the
// "failures" member of /keys/query and /keys/claim.
type Failures map[string]map[string]any

func (f Failures) add(server string, err error) {
	f[server] = map[string]any{"status": 503, "message": err.Error()}
}

func (s *Service) isLocal(userID string) (bool, error) {
	server, ok := mxid.ServerName(userID)
	if !ok {
		return false, matrixerr.InvalidParam(fmt.Sprintf("Invalid user ID %q", userID))
	}
	return server == s.ServerName, nil
}

// uploadRequest is the body of POST /keys/upload, with the signed parts raw.
type uploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

type deviceKeys struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// checkDeviceKeys validates a device_keys object uploaded by userID's
// deviceID: it names that device and carries the device's own signature
// (by its key "ed25519:<device_id>"). It returns the canonical JSON.
func checkDeviceKeys(raw json.RawMessage, userID, deviceID string) ([]byte, error) {
	var dk deviceKeys
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, matrixerr.BadJSON("device_keys: " + err.Error())
	}
	if dk.UserID != userID || dk.DeviceID != deviceID {
		return nil, matrixerr.InvalidParam("device_keys: user_id and device_id must be those of the uploading device")
	}
	if len(dk.Algorithms) == 0 || len(dk.Keys) == 0 {
		return nil, matrixerr.BadJSON("device_keys: algorithms and keys are required")
	}
	keyID := "ed25519:" + deviceID
	pub, err := signing.DecodeBase64(dk.Keys[keyID])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, matrixerr.InvalidParam("device_keys: keys must hold the device's ed25519 key " + keyID)
	}
	if err := signing.VerifyJSON(userID, signing.KeyID(keyID), pub, raw); err != nil {
		return nil, matrixerr.InvalidParam("device_keys: not signed by the device's key " + keyID)
	}
	canon, err := signing.Canonical(raw)
	if err != nil {
		return nil, matrixerr.BadJSON("device_keys: " + err.Error())
	}
	return canon, nil
}

// Upload stores the identity keys, one-time keys and fallback keys
// uploaded by a device (raw is the request body) and returns the device's
// unclaimed one-time key counts per algorithm. New or changed identity keys
// are a device-list change (a stream row and, through the change hooks,
// federation EDUs); signatures uploaded for the old keys are dropped.
func (s *Service) Upload(ctx context.Context, userID, deviceID string, raw []byte) (map[string]int, error) {
	var req uploadRequest
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, matrixerr.BadJSON("Invalid keys upload: " + err.Error())
		}
	}
	var devKeys []byte
	if len(req.DeviceKeys) > 0 && string(req.DeviceKeys) != "null" {
		var err error
		if devKeys, err = checkDeviceKeys(req.DeviceKeys, userID, deviceID); err != nil {
			return nil, err
		}
	}
	otks, err := checkOneTimeKeys(req.OneTimeKeys, userID, deviceID)
	if err != nil {
		return nil, err
	}
	fallbacks, err := checkFallbackKeys(req.FallbackKeys, userID, deviceID)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	err = s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if devKeys != nil {
			if err := s.storeDeviceKeys(ctx, tx, userID, deviceID, devKeys); err != nil {
				return err
			}
		}
		if err := storeOneTimeKeys(ctx, tx, otks); err != nil {
			return err
		}
		if err := storeFallbackKeys(ctx, tx, fallbacks); err != nil {
			return err
		}
		counts, err = oneTimeKeyCounts(ctx, tx, userID, deviceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

func (s *Service) storeDeviceKeys(ctx context.Context, tx bun.Tx, userID, deviceID string, canon []byte) error {
	var old string
	err := tx.NewSelect().Model((*storage.DeviceKeys)(nil)).Column("key_json").
		Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(ctx, &old)
	if err == nil && old == string(canon) {
		return nil // unchanged: no device-list change
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	row := storage.DeviceKeys{UserID: userID, DeviceID: deviceID, KeyJSON: string(canon)}
	if _, err := tx.NewInsert().Model(&row).On("CONFLICT (user_id, device_id) DO UPDATE").
		Set("key_json = EXCLUDED.key_json").Exec(ctx); err != nil {
		return fmt.Errorf("store device keys: %w", err)
	}
	// Signatures of other keys (a deleted device's ID reused) do not hold.
	if _, err := tx.NewDelete().Model((*storage.KeySignature)(nil)).
		Where("target_user_id = ? AND target_key_id = ?", userID, deviceID).Exec(ctx); err != nil {
		return err
	}
	_, err = s.Devices.AppendChanges(ctx, tx, userID, []string{deviceID}, false)
	return err
}

// checkOneTimeKeys validates uploaded one-time keys ("algorithm:id" → a
// key string or a signed key object) and returns them as rows.
func checkOneTimeKeys(in map[string]json.RawMessage, userID, deviceID string) ([]storage.OneTimeKey, error) {
	rows := make([]storage.OneTimeKey, 0, len(in))
	for id, v := range in {
		alg, _, ok := strings.Cut(id, ":")
		if !ok || alg == "" || len(id) > 255 {
			return nil, matrixerr.BadJSON(fmt.Sprintf("one_time_keys: %q is not algorithm:key_id", id))
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || (v[0] != '"' && v[0] != '{') {
			return nil, matrixerr.BadJSON(fmt.Sprintf("one_time_keys: %q must be a string or an object", id))
		}
		canon, err := signing.Canonical(v)
		if err != nil {
			return nil, matrixerr.BadJSON(fmt.Sprintf("one_time_keys: %q: %v", id, err))
		}
		rows = append(rows, storage.OneTimeKey{UserID: userID, DeviceID: deviceID, KeyID: id, Algorithm: alg, KeyJSON: string(canon)})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].KeyID < rows[j].KeyID })
	return rows, nil
}

// storeOneTimeKeys inserts new one-time keys. Re-uploading a key with the
// same content is a no-op (clients retry); different content under an
// existing ID is refused, as a changed key would be a client bug.
func storeOneTimeKeys(ctx context.Context, tx bun.Tx, rows []storage.OneTimeKey) error {
	if len(rows) == 0 {
		return nil
	}
	// This upload's place in the device's upload order: keys are claimed
	// oldest upload first. (Two concurrent uploads of one device may share
	// a place; the spec leaves the order within an upload open.)
	var seq int64
	if err := tx.NewSelect().Model((*storage.OneTimeKey)(nil)).ColumnExpr("COALESCE(MAX(upload_seq), 0) + 1").
		Where("user_id = ? AND device_id = ?", rows[0].UserID, rows[0].DeviceID).Scan(ctx, &seq); err != nil {
		return err
	}
	for i := range rows {
		rows[i].UploadSeq = seq
	}
	for start := 0; start < len(rows); start += 500 {
		chunk := rows[start:min(start+500, len(rows))]
		ids := make([]string, len(chunk))
		for i, r := range chunk {
			ids[i] = r.KeyID
		}
		var existing []storage.OneTimeKey
		if err := tx.NewSelect().Model(&existing).
			Where("user_id = ? AND device_id = ?", chunk[0].UserID, chunk[0].DeviceID).
			Where("key_id IN (?)", bun.In(ids)).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		have := make(map[string]string, len(existing))
		for _, e := range existing {
			have[e.KeyID] = e.KeyJSON
		}
		fresh := chunk[:0:0]
		for _, r := range chunk {
			old, ok := have[r.KeyID]
			switch {
			case !ok:
				fresh = append(fresh, r)
			case old != r.KeyJSON:
				return matrixerr.InvalidParam(fmt.Sprintf("One time key %s already exists with different content", r.KeyID))
			}
		}
		if len(fresh) > 0 {
			if _, err := tx.NewInsert().Model(&fresh).Exec(ctx); err != nil {
				return fmt.Errorf("store one-time keys: %w", err)
			}
		}
	}
	return nil
}

// QueryLocal returns the device keys of local users (user → device → keys
// with unsigned.device_display_name when withNames), for the listed devices
// or all devices with keys when a list is empty, with the signatures
// uploaded for them by their owners. Non-local and unknown users are left
// out. Other servers are answered with it.
func (s *Service) QueryLocal(ctx context.Context, users map[string][]string, withNames bool) (map[string]map[string]json.RawMessage, error) {
	return s.queryLocal(ctx, users, withNames, "")
}

// queryLocal is QueryLocal with the signatures viewer may see (its own
// besides the owners').
func (s *Service) queryLocal(ctx context.Context, users map[string][]string, withNames bool, viewer string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	ids := s.localUsers(users)
	devs, err := LoadDevices(ctx, s.Store.R, ids, nil)
	if err != nil {
		return nil, err
	}
	sigs, err := loadSignatures(ctx, s.Store.R, ids, viewer)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		if d.Keys == nil || !Wanted(users[d.UserID], d.DeviceID) {
			continue
		}
		name := d.DisplayName
		if !withNames {
			name = nil
		}
		k, err := withSignatures(d.Keys, sigs[d.UserID][d.DeviceID])
		if err != nil {
			return nil, err
		}
		if k, err = WithDisplayName(k, name); err != nil {
			return nil, err
		}
		if out[d.UserID] == nil {
			out[d.UserID] = map[string]json.RawMessage{}
		}
		out[d.UserID][d.DeviceID] = k
	}
	return out, nil
}

func (s *Service) localUsers(users map[string][]string) []string {
	var ids []string
	for u := range users {
		if local, err := s.isLocal(u); err == nil && local {
			ids = append(ids, u)
		}
	}
	sort.Strings(ids)
	return ids
}

// LocalKeys are local users' keys as other servers are told them
// (POST /user/keys/query).
type LocalKeys struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
}

// QueryLocalKeys answers another server: QueryLocal's device keys, and the
// users' master and self-signing keys with their owners' signatures.
func (s *Service) QueryLocalKeys(ctx context.Context, users map[string][]string, withNames bool) (LocalKeys, error) {
	dk, err := s.QueryLocal(ctx, users, withNames)
	if err != nil {
		return LocalKeys{}, err
	}
	cs, err := LocalCrossSigningKeys(ctx, s.Store.R, s.localUsers(users), "")
	if err != nil {
		return LocalKeys{}, err
	}
	return LocalKeys{DeviceKeys: dk, MasterKeys: cs.Master, SelfSigningKeys: cs.SelfSigning}, nil
}

// Wanted reports whether deviceID is asked for by list (a /keys/query
// device list; empty means all devices).
func Wanted(list []string, deviceID string) bool {
	if len(list) == 0 {
		return true
	}
	for _, d := range list {
		if d == deviceID {
			return true
		}
	}
	return false
}

// QueryResult is the answer of POST /keys/query.
type QueryResult struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        Failures                              `json:"failures"`
}

// Query answers POST /keys/query by viewer: local users from the database,
// remote users through Remote (its cache, kept fresh by device-list
// updates). Device and cross-signing keys carry the uploaded signatures
// viewer may see; the user-signing key is viewer's own only.
func (s *Service) Query(ctx context.Context, viewer string, users map[string][]string) (QueryResult, error) {
	local := map[string][]string{}
	remote := map[string][]string{}
	for u, devs := range users {
		isLocal, err := s.isLocal(u)
		if err != nil {
			return QueryResult{}, err
		}
		if isLocal {
			local[u] = devs
		} else {
			remote[u] = devs
		}
	}
	out, err := s.queryLocal(ctx, local, true, viewer)
	if err != nil {
		return QueryResult{}, err
	}
	cs, err := LocalCrossSigningKeys(ctx, s.Store.R, s.localUsers(local), viewer)
	if err != nil {
		return QueryResult{}, err
	}
	res := QueryResult{DeviceKeys: out, MasterKeys: cs.Master, SelfSigningKeys: cs.SelfSigning, UserSigningKeys: cs.UserSigning, Failures: Failures{}}
	if len(remote) == 0 {
		return res, nil
	}
	if s.Remote == nil {
		for u := range remote {
			server, _ := mxid.ServerName(u)
			res.Failures.add(server, errors.New("federation is not available"))
		}
		return res, nil
	}
	got, failed := s.Remote.QueryDevices(ctx, remote)
	for u, devs := range got {
		out[u] = devs
	}
	for server, err := range failed {
		res.Failures.add(server, err)
	}
	var answered []string
	for u := range remote {
		if server, _ := mxid.ServerName(u); res.Failures[server] == nil {
			answered = append(answered, u)
		}
	}
	sort.Strings(answered)
	rcs, err := s.Remote.CrossSigningKeys(ctx, answered)
	if err != nil {
		return QueryResult{}, err
	}
	// viewer's own signatures of remote master keys (by its user-signing
	// key) are kept here, not by the remote server.
	sigs, err := loadSignatures(ctx, s.Store.R, answered, viewer)
	if err != nil {
		return QueryResult{}, err
	}
	for u, keys := range rcs {
		if m, ok := keys[storage.KeyTypeMaster]; ok {
			mine := []storage.KeySignature{}
			for _, sg := range sigs[u][masterKeyID(m)] {
				if sg.SignerUserID == viewer {
					mine = append(mine, sg)
				}
			}
			if m, err = withSignatures(m, mine); err != nil {
				return QueryResult{}, err
			}
			res.MasterKeys[u] = m
		}
		if k, ok := keys[storage.KeyTypeSelfSigning]; ok {
			res.SelfSigningKeys[u] = k
		}
	}
	return res, nil
}

// ClaimLocal claims one one-time key per requested local device (user →
// device → algorithm); devices without a key of that algorithm are left
// out. Each key is handed out once, also with concurrent claims.
func (s *Service) ClaimLocal(ctx context.Context, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]map[string]json.RawMessage{}
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		for u, devs := range req {
			if local, err := s.isLocal(u); err != nil || !local {
				continue
			}
			for d, alg := range devs {
				key, err := claimOne(ctx, tx, u, d, alg, s.Store.Dialect == storage.Postgres)
				if err != nil {
					return err
				}
				if key == nil {
					continue
				}
				if out[u] == nil {
					out[u] = map[string]map[string]json.RawMessage{}
				}
				out[u][d] = map[string]json.RawMessage{key.KeyID: json.RawMessage(key.KeyJSON)}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// claimOne removes and returns one key of the device with the algorithm,
// the oldest upload first; when none is left, the device's fallback key of
// the algorithm (kept, and marked used).
// On PostgreSQL concurrent claims lock different rows (SKIP LOCKED; SQLite
// has a single writer); should two still pick the same key, the one whose
// DELETE finds it gone picks again.
func claimOne(ctx context.Context, tx bun.Tx, userID, deviceID, alg string, skipLocked bool) (*storage.OneTimeKey, error) {
	for range 5 {
		var k storage.OneTimeKey
		q := tx.NewSelect().Model(&k).
			Where("user_id = ? AND device_id = ? AND algorithm = ?", userID, deviceID, alg).
			Order("upload_seq", "key_id").Limit(1)
		if skipLocked {
			q = q.For("UPDATE SKIP LOCKED")
		}
		err := q.Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return claimFallback(ctx, tx, userID, deviceID, alg)
		}
		if err != nil {
			return nil, err
		}
		res, err := tx.NewDelete().Model((*storage.OneTimeKey)(nil)).
			Where("user_id = ? AND device_id = ? AND key_id = ?", userID, deviceID, k.KeyID).Exec(ctx)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return &k, nil
		}
	}
	return nil, matrixerr.LimitExceeded(100 * time.Millisecond)
}

// Claim answers POST /keys/claim: local devices here, remote ones on their
// servers.
func (s *Service) Claim(ctx context.Context, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, Failures, error) {
	local := map[string]map[string]string{}
	remote := map[string]map[string]map[string]string{}
	for u, devs := range req {
		isLocal, err := s.isLocal(u)
		if err != nil {
			return nil, nil, err
		}
		if isLocal {
			local[u] = devs
			continue
		}
		server, _ := mxid.ServerName(u)
		if remote[server] == nil {
			remote[server] = map[string]map[string]string{}
		}
		remote[server][u] = devs
	}
	out, err := s.ClaimLocal(ctx, local)
	if err != nil {
		return nil, nil, err
	}
	failures := Failures{}
	for server, r := range remote {
		if s.Remote == nil {
			failures.add(server, errors.New("federation is not available"))
			continue
		}
		got, err := s.Remote.ClaimKeys(ctx, server, r)
		if err != nil {
			failures.add(server, err)
			continue
		}
		for u, devs := range got {
			if srv, _ := mxid.ServerName(u); srv == server { // a server answers for its own users only
				out[u] = devs
			}
		}
	}
	return out, failures, nil
}

// DeviceLists reads the device_keys map of a key query, where a user's list
// may be null (Dendrite sends that for "all devices", as [] means): a null
// list becomes an empty one.
func DeviceLists(in map[string]*[]string) map[string][]string {
	out := make(map[string][]string, len(in))
	for user, devices := range in {
		if devices == nil {
			out[user] = nil
			continue
		}
		out[user] = *devices
	}
	return out
}
