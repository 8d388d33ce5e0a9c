package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Remote users' cross-signing keys: cached from m.signing_key_update EDUs
// and from /user/devices answers (resyncs), served to local clients by
// e2ekeys through DeviceLists.CrossSigningKeys.

// storeRemoteCrossSigning caches the master and self-signing keys of a
// remote user. A key that is not one of userID's for its usage is dropped
// (a server speaks for its own users only, and the caller checked that
// userID is one of origin's). With replace, a type absent from keys is
// removed (a resync's snapshot is the whole truth); otherwise it is kept.
func storeRemoteCrossSigning(ctx context.Context, tx bun.IDB, userID string, keys map[string]json.RawMessage, replace bool) error {
	now := time.Now().UnixMilli()
	for _, typ := range []string{storage.KeyTypeMaster, storage.KeyTypeSelfSigning} {
		raw := keys[typ]
		var canon []byte
		if len(raw) > 0 && string(raw) != "null" {
			var err error
			if canon, err = e2ekeys.CheckCrossSigningKey(raw, userID, typ); err != nil {
				canon = nil // not a key of this user: dropped
			}
		}
		if canon == nil {
			if replace {
				if _, err := tx.NewDelete().Model((*storage.RemoteCrossSigningKey)(nil)).
					Where("user_id = ? AND key_type = ?", userID, typ).Exec(ctx); err != nil {
					return err
				}
			}
			continue
		}
		row := storage.RemoteCrossSigningKey{UserID: userID, KeyType: typ, KeyJSON: string(canon), UpdatedTS: now}
		if _, err := tx.NewInsert().Model(&row).On("CONFLICT (user_id, key_type) DO UPDATE").
			Set("key_json = EXCLUDED.key_json, updated_ts = EXCLUDED.updated_ts").Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// applySigningKeyUpdate applies an m.signing_key_update about a user of
// origin (checked by the caller) inside tx. Updates about users whose
// device list is not cached are dropped: their keys are fetched with the
// list when first asked for.
func applySigningKeyUpdate(ctx context.Context, tx bun.IDB, u SigningKeyUpdate) error {
	exists, err := tx.NewSelect().Model((*storage.RemoteDeviceList)(nil)).Where("user_id = ?", u.UserID).Exists(ctx)
	if err != nil || !exists {
		return err
	}
	return storeRemoteCrossSigning(ctx, tx, u.UserID, map[string]json.RawMessage{
		storage.KeyTypeMaster: u.MasterKey, storage.KeyTypeSelfSigning: u.SelfSigningKey}, false)
}

// CrossSigningKeys implements e2ekeys.Remote from the cache.
func (d *DeviceLists) CrossSigningKeys(ctx context.Context, userIDs []string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	if len(userIDs) == 0 {
		return out, nil
	}
	var rows []storage.RemoteCrossSigningKey
	if err := d.Store.R.NewSelect().Model(&rows).Where("user_id IN (?)", bun.In(userIDs)).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	for _, r := range rows {
		if out[r.UserID] == nil {
			out[r.UserID] = map[string]json.RawMessage{}
		}
		out[r.UserID][r.KeyType] = json.RawMessage(r.KeyJSON)
	}
	return out, nil
}

// signingKeyUpdate returns the m.signing_key_update content announcing the
// user's cross-signing changes among changes (master and self-signing keys
// only: the user-signing key is private), or nil if none of them is one
// of those (e.g. only the user-signing key changed).
func signingKeyUpdate(ctx context.Context, tx bun.IDB, userID string, changes []string) (*SigningKeyUpdate, error) {
	cs, err := e2ekeys.LocalCrossSigningKeys(ctx, tx, []string{userID}, "")
	if err != nil {
		return nil, err
	}
	u := SigningKeyUpdate{UserID: userID}
	for _, id := range changes {
		if m, ok := cs.Master[userID]; ok && e2ekeys.CrossSigningKeyID(m) == id {
			u.MasterKey = m
		}
		if k, ok := cs.SelfSigning[userID]; ok && e2ekeys.CrossSigningKeyID(k) == id {
			u.SelfSigningKey = k
		}
	}
	if u.MasterKey == nil && u.SelfSigningKey == nil {
		return nil, nil
	}
	return &u, nil
}

// previousDeviceUpdate returns the stream id of the user's last device
// change (not a cross-signing change) before streamID, or 0: the prev_id
// of the m.device_list_update for streamID.
func previousDeviceUpdate(ctx context.Context, tx bun.IDB, userID string, streamID int64) (int64, error) {
	var prev sql.NullInt64
	err := tx.NewSelect().Model((*storage.DeviceListChange)(nil)).ColumnExpr("MAX(stream_id)").
		Where("user_id = ? AND stream_id < ? AND cross_signing = ?", userID, streamID, false).Scan(ctx, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return prev.Int64, nil
}
