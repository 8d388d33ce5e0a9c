package e2ekeys

import (
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

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
)

// SignatureFailures is the "failures" member of /keys/signatures/upload:
// user ID → key ID → Matrix error body.
type SignatureFailures map[string]map[string]map[string]any

func (f SignatureFailures) add(userID, keyID string, e *matrixerr.Error) {
	if f[userID] == nil {
		f[userID] = map[string]map[string]any{}
	}
	f[userID][keyID] = map[string]any{"errcode": e.Code, "error": e.Message}
}

// signedObject is one entry of a signatures upload.
type signedObject struct {
	UserID     string                       `json:"user_id"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// UploadSignatures stores the signatures of POST /keys/signatures/upload
// (raw is the body) made by userID: of its own devices by its
// self-signing key, of its own master key by its devices, and of other
// users' master keys by its user-signing key. Each is verified against the
// key on record, and the signed object must be that key (apart from
// signatures); keys that fail are reported in the returned failures with
// M_INVALID_SIGNATURE (bad or missing signature, or not the key on record)
// or M_NOT_FOUND (no such key), and the others are stored. New signatures
// of the user's own keys are device-list changes (the devices' or, for the
// master key, a cross-signing change); signatures of other users' keys are
// seen by userID alone and announced to nobody.
func (s *Service) UploadSignatures(ctx context.Context, userID string, raw []byte) (SignatureFailures, error) {
	var body map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, matrixerr.BadJSON("Invalid signatures upload: " + err.Error())
	}
	failures := SignatureFailures{}
	now := time.Now().UnixMilli()
	targets := make([]string, 0, len(body))
	for u := range body {
		targets = append(targets, u)
	}
	sort.Strings(targets)
	err := s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		own, err := loadOwnCrossSigning(ctx, tx, userID)
		if err != nil {
			return err
		}
		var devChanged []string
		masterChanged := false
		for _, target := range targets {
			keyIDs := make([]string, 0, len(body[target]))
			for k := range body[target] {
				keyIDs = append(keyIDs, k)
			}
			sort.Strings(keyIDs)
			for _, keyID := range keyIDs {
				obj := body[target][keyID]
				sigs, kind, ferr, err := s.checkSignature(ctx, tx, userID, own, target, keyID, obj)
				if err != nil {
					return err
				}
				if ferr != nil {
					failures.add(target, keyID, ferr)
					continue
				}
				added := false
				for _, sg := range sigs {
					sg.CreatedTS = now
					res, err := tx.NewInsert().Model(&sg).On("CONFLICT DO NOTHING").Exec(ctx)
					if err != nil {
						return fmt.Errorf("store signature: %w", err)
					}
					if n, _ := res.RowsAffected(); n > 0 {
						added = true
					}
				}
				switch {
				case !added:
				case kind == "device":
					devChanged = append(devChanged, keyID)
				case kind == "own_master":
					masterChanged = true
				}
			}
		}
		if len(devChanged) > 0 {
			if _, err := s.Devices.AppendChanges(ctx, tx, userID, devChanged, false); err != nil {
				return err
			}
		}
		if masterChanged {
			if _, err := s.Devices.AppendCrossSigningChanges(ctx, tx, userID, []string{own[storage.KeyTypeMaster].KeyID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return failures, nil
}

// checkSignature checks one signed object of a signatures upload by
// userID and returns the signatures to store and what was signed
// ("device", "own_master" or "other_master"), or the Matrix error to
// report for it; err is a database failure.
func (s *Service) checkSignature(ctx context.Context, tx bun.IDB, userID string, own map[string]storage.CrossSigningKey,
	target, keyID string, obj json.RawMessage) ([]storage.KeySignature, string, *matrixerr.Error, error) {
	var so signedObject
	if err := json.Unmarshal(obj, &so); err != nil {
		return nil, "", matrixerr.BadJSON("Not a signed JSON object: " + err.Error()), nil
	}
	if so.UserID != target {
		return nil, "", matrixerr.InvalidParam("user_id of the signed object must be " + target), nil
	}
	mine := so.Signatures[userID]
	if len(mine) == 0 {
		return nil, "", invalidSignature("No signature by " + userID), nil
	}
	sig := func(signerKey string) storage.KeySignature {
		return storage.KeySignature{TargetUserID: target, TargetKeyID: keyID, SignerUserID: userID, SignerKeyID: signerKey, Signature: mine[signerKey]}
	}
	verify := func(signerKey string, pub []byte) *matrixerr.Error {
		if _, ok := mine[signerKey]; !ok {
			return invalidSignature("No signature by " + signerKey)
		}
		if err := signing.VerifyJSON(userID, signing.KeyID(signerKey), ed25519.PublicKey(pub), obj); err != nil {
			return invalidSignature("Invalid signature by " + signerKey)
		}
		return nil
	}
	if target != userID {
		usk, ok := own[storage.KeyTypeUserSigning]
		if !ok {
			return nil, "", matrixerr.NotFound("No user-signing key on record to sign other users' keys with"), nil
		}
		master, err := s.masterKeyOf(ctx, tx, target)
		if err != nil {
			return nil, "", nil, err
		}
		if master == nil || masterKeyID(master) != keyID {
			return nil, "", matrixerr.NotFound("No master key " + keyID + " of " + target + " on record"), nil
		}
		if !sameSignedContent(obj, master) {
			return nil, "", invalidSignature("The signed object is not the master key on record"), nil
		}
		signer := "ed25519:" + usk.KeyID
		pub, _ := signing.DecodeBase64(usk.KeyID)
		if e := verify(signer, pub); e != nil {
			return nil, "", e, nil
		}
		return []storage.KeySignature{sig(signer)}, "other_master", nil, nil
	}
	if m, ok := own[storage.KeyTypeMaster]; ok && m.KeyID == keyID {
		// The master key, signed by the user's devices.
		if !sameSignedContent(obj, []byte(m.KeyJSON)) {
			return nil, "", invalidSignature("The signed object is not the master key on record"), nil
		}
		var out []storage.KeySignature
		for signer := range mine {
			dev, ok := strings.CutPrefix(signer, "ed25519:")
			if !ok || dev == m.KeyID {
				continue // the master key's own signature is not one to add
			}
			pub, err := deviceSigningKey(ctx, tx, userID, dev)
			if err != nil {
				return nil, "", nil, err
			}
			if pub == nil {
				return nil, "", matrixerr.NotFound("No device " + dev + " with keys to check the signature " + signer + " against"), nil
			}
			if e := verify(signer, pub); e != nil {
				return nil, "", e, nil
			}
			out = append(out, sig(signer))
		}
		if len(out) == 0 {
			return nil, "", invalidSignature("No signature of the master key by one of your devices"), nil
		}
		sort.Slice(out, func(i, j int) bool { return out[i].SignerKeyID < out[j].SignerKeyID })
		return out, "own_master", nil, nil
	}
	// One of the user's devices, signed by the self-signing key.
	var keys string
	err := tx.NewSelect().Model((*storage.DeviceKeys)(nil)).Column("key_json").
		Where("user_id = ? AND device_id = ?", userID, keyID).Scan(ctx, &keys)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", matrixerr.NotFound("No device " + keyID + " with keys, nor a master key of that ID"), nil
	}
	if err != nil {
		return nil, "", nil, err
	}
	if !sameSignedContent(obj, []byte(keys)) {
		return nil, "", invalidSignature("The signed object is not the device's keys on record"), nil
	}
	ssk, ok := own[storage.KeyTypeSelfSigning]
	if !ok {
		return nil, "", matrixerr.NotFound("No self-signing key on record to sign devices with"), nil
	}
	signer := "ed25519:" + ssk.KeyID
	pub, _ := signing.DecodeBase64(ssk.KeyID)
	if e := verify(signer, pub); e != nil {
		return nil, "", e, nil
	}
	return []storage.KeySignature{sig(signer)}, "device", nil, nil
}

// deviceSigningKey returns the ed25519 key of a device's uploaded keys, or
// nil if it has none.
func deviceSigningKey(ctx context.Context, db bun.IDB, userID, deviceID string) ([]byte, error) {
	var keys string
	err := db.NewSelect().Model((*storage.DeviceKeys)(nil)).Column("key_json").
		Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(ctx, &keys)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var dk deviceKeys
	if err := json.Unmarshal([]byte(keys), &dk); err != nil {
		return nil, nil
	}
	pub, err := signing.DecodeBase64(dk.Keys["ed25519:"+deviceID])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, nil
	}
	return pub, nil
}

// masterKeyOf returns the master key on record for a local user, or the
// cached one of a remote user; nil if none.
func (s *Service) masterKeyOf(ctx context.Context, db bun.IDB, userID string) (json.RawMessage, error) {
	local, err := s.isLocal(userID)
	if err != nil {
		return nil, nil
	}
	var key string
	if local {
		err = db.NewSelect().Model((*storage.CrossSigningKey)(nil)).Column("key_json").
			Where("user_id = ? AND key_type = ?", userID, storage.KeyTypeMaster).Scan(ctx, &key)
	} else {
		err = db.NewSelect().Model((*storage.RemoteCrossSigningKey)(nil)).Column("key_json").
			Where("user_id = ? AND key_type = ?", userID, storage.KeyTypeMaster).Scan(ctx, &key)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(key), nil
}

// masterKeyID returns the public key of a master key object ("" if it has
// no single ed25519 key).
func masterKeyID(obj json.RawMessage) string {
	var k struct {
		Keys map[string]string `json:"keys"`
	}
	if json.Unmarshal(obj, &k) != nil || len(k.Keys) != 1 {
		return ""
	}
	for id := range k.Keys {
		if v, ok := strings.CutPrefix(id, "ed25519:"); ok {
			return v
		}
	}
	return ""
}
