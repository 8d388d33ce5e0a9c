package e2ekeys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
)

// ErrUIARequired is returned by UploadCrossSigningKeys when the upload
// replaces keys and the caller has not completed user-interactive auth.
var ErrUIARequired = errors.New("e2ekeys: user-interactive auth is required to replace cross-signing keys")

// crossSigningUpload is the body of POST /keys/device_signing/upload, with
// the signed parts raw.
type crossSigningUpload struct {
	MasterKey      json.RawMessage `json:"master_key"`
	SelfSigningKey json.RawMessage `json:"self_signing_key"`
	UserSigningKey json.RawMessage `json:"user_signing_key"`
}

func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// csKey is a checked cross-signing key.
type csKey struct {
	Type  string
	KeyID string // unpadded base64 public key
	Pub   ed25519.PublicKey
	Canon []byte // canonical JSON as uploaded
}

// parseCrossSigningKey checks that raw is a cross-signing key of userID
// for usage (user_id, usage, exactly one ed25519 key named after itself).
func parseCrossSigningKey(raw json.RawMessage, userID, usage string) (csKey, error) {
	var k struct {
		UserID string            `json:"user_id"`
		Usage  []string          `json:"usage"`
		Keys   map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return csKey{}, matrixerr.BadJSON(usage + " key: " + err.Error())
	}
	if k.UserID != userID {
		return csKey{}, matrixerr.InvalidParam(usage + " key: user_id must be " + userID)
	}
	if !slices.Contains(k.Usage, usage) {
		return csKey{}, matrixerr.InvalidParam(fmt.Sprintf("%s key: usage must contain %q", usage, usage))
	}
	if len(k.Keys) != 1 {
		return csKey{}, matrixerr.InvalidParam(usage + " key: keys must hold exactly one key")
	}
	var out csKey
	for id, v := range k.Keys {
		alg, name, _ := strings.Cut(id, ":")
		pub, err := signing.DecodeBase64(v)
		if alg != "ed25519" || name != v || err != nil || len(pub) != ed25519.PublicKeySize {
			return csKey{}, matrixerr.InvalidParam(usage + " key: keys must hold one ed25519 key named \"ed25519:<its unpadded base64>\"")
		}
		out = csKey{Type: usage, KeyID: v, Pub: pub}
	}
	canon, err := signing.Canonical(raw)
	if err != nil {
		return csKey{}, matrixerr.BadJSON(usage + " key: " + err.Error())
	}
	out.Canon = canon
	return out, nil
}

// csUploadReq is a parsed device_signing upload: the keys present, in the
// order master, self-signing, user-signing.
type csUploadReq struct {
	keys []csKey
}

func (r csUploadReq) get(typ string) *csKey {
	for i := range r.keys {
		if r.keys[i].Type == typ {
			return &r.keys[i]
		}
	}
	return nil
}

func parseCrossSigningUpload(raw []byte, userID string) (csUploadReq, error) {
	var body crossSigningUpload
	if err := json.Unmarshal(raw, &body); err != nil {
		return csUploadReq{}, matrixerr.BadJSON("Invalid cross-signing keys upload: " + err.Error())
	}
	var req csUploadReq
	for _, p := range []struct {
		raw json.RawMessage
		typ string
	}{{body.MasterKey, storage.KeyTypeMaster}, {body.SelfSigningKey, storage.KeyTypeSelfSigning}, {body.UserSigningKey, storage.KeyTypeUserSigning}} {
		if !present(p.raw) {
			continue
		}
		k, err := parseCrossSigningKey(p.raw, userID, p.typ)
		if err != nil {
			return csUploadReq{}, err
		}
		req.keys = append(req.keys, k)
	}
	return req, nil
}

func loadOwnCrossSigning(ctx context.Context, db bun.IDB, userID string) (map[string]storage.CrossSigningKey, error) {
	var rows []storage.CrossSigningKey
	if err := db.NewSelect().Model(&rows).Where("user_id = ?", userID).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	out := make(map[string]storage.CrossSigningKey, len(rows))
	for _, r := range rows {
		out[r.KeyType] = r
	}
	return out, nil
}

// needsUIA is the rule of v1.11 (MSC3967): no auth for the first upload
// (no master key on record) nor for a re-upload of exactly the keys on
// record (the master key included); any other upload replaces keys.
func needsUIA(stored map[string]storage.CrossSigningKey, req csUploadReq) bool {
	if _, ok := stored[storage.KeyTypeMaster]; !ok {
		return false
	}
	if req.get(storage.KeyTypeMaster) == nil {
		return true
	}
	for _, k := range req.keys {
		old, ok := stored[k.Type]
		if !ok || old.KeyJSON != string(k.Canon) {
			return true
		}
	}
	return false
}

// CrossSigningUploadNeedsUIA tells whether the device_signing upload raw
// by userID needs user-interactive auth. A malformed body needs none (the
// upload answers its error). UploadCrossSigningKeys checks again under
// the write lock, so a concurrent upload cannot slip through.
func (s *Service) CrossSigningUploadNeedsUIA(ctx context.Context, userID string, raw []byte) (bool, error) {
	req, err := parseCrossSigningUpload(raw, userID)
	if err != nil {
		return false, nil
	}
	stored, err := loadOwnCrossSigning(ctx, s.Store.R, userID)
	if err != nil {
		return false, err
	}
	return needsUIA(stored, req), nil
}

func invalidSignature(msg string) *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_INVALID_SIGNATURE", msg)
}

// UploadCrossSigningKeys stores the cross-signing keys of POST
// /keys/device_signing/upload (raw is the body) for userID. authenticated
// is nil unless user-interactive auth was completed; then it runs in the
// upload's transaction (to finish the UIA session with the upload). An
// upload that replaces keys without it fails with ErrUIARequired. The self-signing and
// user-signing keys must be signed by the master key uploaded with them or
// on record. Changed keys are recorded in the user's device-list stream
// (and so announced to other servers by the change hooks).
func (s *Service) UploadCrossSigningKeys(ctx context.Context, userID string, raw []byte, authenticated func(ctx context.Context, tx bun.Tx) error) error {
	req, err := parseCrossSigningUpload(raw, userID)
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		stored, err := loadOwnCrossSigning(ctx, tx, userID)
		if err != nil {
			return err
		}
		if authenticated == nil && needsUIA(stored, req) {
			return ErrUIARequired
		}
		if authenticated != nil {
			if err := authenticated(ctx, tx); err != nil {
				return err
			}
		}
		var masterPub ed25519.PublicKey
		var masterID string
		if m := req.get(storage.KeyTypeMaster); m != nil {
			masterPub, masterID = m.Pub, m.KeyID
		} else if m, ok := stored[storage.KeyTypeMaster]; ok {
			masterID = m.KeyID
			masterPub, _ = signing.DecodeBase64(m.KeyID)
		}
		for _, k := range req.keys {
			if k.Type == storage.KeyTypeMaster {
				continue
			}
			if masterPub == nil {
				return matrixerr.MissingParam("No master signing key is available to check the " + k.Type + " key against")
			}
			if err := signing.VerifyJSON(userID, signing.KeyID("ed25519:"+masterID), masterPub, k.Canon); err != nil {
				return invalidSignature("The " + k.Type + " key is not signed by the master signing key")
			}
		}
		// Cross-signing public keys are treated as device IDs by
		// verification: they must not collide with the user's devices.
		ids := make([]string, len(req.keys))
		for i, k := range req.keys {
			ids[i] = k.KeyID
		}
		if len(ids) > 0 {
			n, err := tx.NewSelect().Model((*storage.Device)(nil)).
				Where("user_id = ? AND device_id IN (?)", userID, bun.In(ids)).Count(ctx)
			if err != nil {
				return err
			}
			if n > 0 {
				return matrixerr.Forbidden("Key ID in use: a cross-signing public key is one of your device IDs")
			}
		}
		var changed []string
		for _, k := range req.keys {
			if old, ok := stored[k.Type]; ok && old.KeyJSON == string(k.Canon) {
				continue
			}
			row := storage.CrossSigningKey{UserID: userID, KeyType: k.Type, KeyID: k.KeyID, KeyJSON: string(k.Canon), UpdatedTS: now}
			if _, err := tx.NewInsert().Model(&row).On("CONFLICT (user_id, key_type) DO UPDATE").
				Set("key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, updated_ts = EXCLUDED.updated_ts").Exec(ctx); err != nil {
				return fmt.Errorf("store cross-signing key: %w", err)
			}
			changed = append(changed, k.KeyID)
		}
		if len(changed) == 0 {
			return nil
		}
		_, err = s.Devices.AppendCrossSigningChanges(ctx, tx, userID, changed)
		return err
	})
}

// CrossSigningKeys are cross-signing keys as /keys/query serves them:
// user ID → signed key object.
type CrossSigningKeys struct {
	Master      map[string]json.RawMessage
	SelfSigning map[string]json.RawMessage
	UserSigning map[string]json.RawMessage
}

func newCrossSigningKeys() CrossSigningKeys {
	return CrossSigningKeys{Master: map[string]json.RawMessage{}, SelfSigning: map[string]json.RawMessage{}, UserSigning: map[string]json.RawMessage{}}
}

// LocalCrossSigningKeys returns the master and self-signing keys of the
// local users, and viewer's own user-signing key if viewer is among them,
// with the signatures uploaded for them that viewer may see (the key
// owner's, and viewer's own; viewer "" sees the owners' only, as other
// servers do). db may be a transaction.
func LocalCrossSigningKeys(ctx context.Context, db bun.IDB, userIDs []string, viewer string) (CrossSigningKeys, error) {
	out := newCrossSigningKeys()
	if len(userIDs) == 0 {
		return out, nil
	}
	var rows []storage.CrossSigningKey
	if err := db.NewSelect().Model(&rows).Where("user_id IN (?)", bun.In(userIDs)).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return out, err
	}
	sigs, err := loadSignatures(ctx, db, userIDs, viewer)
	if err != nil {
		return out, err
	}
	for _, r := range rows {
		k, err := withSignatures(json.RawMessage(r.KeyJSON), sigs[r.UserID][r.KeyID])
		if err != nil {
			return out, err
		}
		switch r.KeyType {
		case storage.KeyTypeMaster:
			out.Master[r.UserID] = k
		case storage.KeyTypeSelfSigning:
			out.SelfSigning[r.UserID] = k
		case storage.KeyTypeUserSigning:
			if r.UserID == viewer {
				out.UserSigning[r.UserID] = k
			}
		}
	}
	return out, nil
}

// loadSignatures returns the uploaded signatures of the targets' keys that
// viewer may see: target user → target key ID → signatures.
func loadSignatures(ctx context.Context, db bun.IDB, targets []string, viewer string) (map[string]map[string][]storage.KeySignature, error) {
	out := map[string]map[string][]storage.KeySignature{}
	if len(targets) == 0 {
		return out, nil
	}
	var rows []storage.KeySignature
	err := db.NewSelect().Model(&rows).Where("target_user_id IN (?)", bun.In(targets)).
		Where("(signer_user_id = target_user_id OR signer_user_id = ?)", viewer).
		Order("target_user_id", "target_key_id", "signer_user_id", "signer_key_id").Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	for _, r := range rows {
		if out[r.TargetUserID] == nil {
			out[r.TargetUserID] = map[string][]storage.KeySignature{}
		}
		out[r.TargetUserID][r.TargetKeyID] = append(out[r.TargetUserID][r.TargetKeyID], r)
	}
	return out, nil
}

// withSignatures adds sigs to the signatures of the signed object obj.
func withSignatures(obj json.RawMessage, sigs []storage.KeySignature) (json.RawMessage, error) {
	if len(sigs) == 0 {
		return obj, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	all := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		_ = json.Unmarshal(raw, &all) // a malformed member is replaced
	}
	for _, s := range sigs {
		if all[s.SignerUserID] == nil {
			all[s.SignerUserID] = map[string]string{}
		}
		all[s.SignerUserID][s.SignerKeyID] = s.Signature
	}
	var err error
	if m["signatures"], err = json.Marshal(all); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// unsignedPart is the canonical JSON of a signed object without its
// signatures and unsigned members: what its signatures cover.
func unsignedPart(obj []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return signing.Canonical(b)
}

// sameSignedContent reports whether a and b are the same object apart from
// their signatures and unsigned members.
func sameSignedContent(a, b []byte) bool {
	ua, err1 := unsignedPart(a)
	ub, err2 := unsignedPart(b)
	return err1 == nil && err2 == nil && bytes.Equal(ua, ub)
}

// CheckCrossSigningKey checks that raw (from another server) is a
// cross-signing key of userID for usage (storage.KeyTypeMaster or
// storage.KeyTypeSelfSigning) and returns its canonical JSON.
func CheckCrossSigningKey(raw json.RawMessage, userID, usage string) ([]byte, error) {
	k, err := parseCrossSigningKey(raw, userID, usage)
	if err != nil {
		return nil, err
	}
	return k.Canon, nil
}

// CrossSigningKeyID returns the public key of a cross-signing key object (its
// single "ed25519:<public key>" entry), or "".
func CrossSigningKeyID(obj json.RawMessage) string { return masterKeyID(obj) }

// Signatures are uploaded signatures of one user's keys: key ID →
// signatures.
type Signatures map[string][]storage.KeySignature

// OwnerSignatures returns the signatures userID uploaded of its own keys
// (what other servers are told). db may be a transaction.
func OwnerSignatures(ctx context.Context, db bun.IDB, userID string) (Signatures, error) {
	all, err := loadSignatures(ctx, db, []string{userID}, "")
	if err != nil {
		return nil, err
	}
	return Signatures(all[userID]), nil
}

// WithOwnerSignatures returns the signed object obj (of key keyID) with
// sigs' signatures of it added.
func WithOwnerSignatures(obj json.RawMessage, sigs Signatures, keyID string) (json.RawMessage, error) {
	if obj == nil {
		return nil, nil
	}
	return withSignatures(obj, sigs[keyID])
}
