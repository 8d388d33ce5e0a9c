package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/mxid"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Receiver processes inbound transactions (PUT /send/{txnId}).
type Receiver struct {
	Store *storage.Store
	Lists *DeviceLists
	Log   *slog.Logger
}

// Spec limits per transaction.
const (
	maxPDUs = 50
	maxEDUs = 100
)

// PDUResult is the per-PDU answer of /send: empty means accepted.
type PDUResult struct {
	Error string `json:"error,omitempty"`
}

// Receive processes transaction txnID from origin (authenticated). It is
// idempotent per (origin, txnID): a repeated transaction gets the same
// answer without being applied again. PDUs are not processed (this server
// has no rooms) and are answered with an empty result each; EDUs other than
// m.device_list_update and m.signing_key_update are ignored, as are updates
// about users who do not belong to origin.
func (r *Receiver) Receive(ctx context.Context, origin, txnID string, raw []byte) (map[string]PDUResult, error) {
	var txn transaction
	if err := json.Unmarshal(raw, &txn); err != nil {
		return nil, matrixerr.BadJSON("Invalid transaction: " + err.Error())
	}
	if txn.Origin != origin {
		return nil, matrixerr.Forbidden("Transaction origin does not match the authenticated server")
	}
	if len(txn.PDUs) > maxPDUs || len(txn.EDUs) > maxEDUs {
		return nil, matrixerr.BadJSON(fmt.Sprintf("A transaction holds at most %d PDUs and %d EDUs", maxPDUs, maxEDUs))
	}
	result := map[string]PDUResult{}
	for _, p := range txn.PDUs {
		var ev struct {
			EventID string `json:"event_id"`
		}
		// Room versions 3+ carry no event_id (it is a hash of the event,
		// which needs the room version's redaction rules); those PDUs are
		// not listed.
		if json.Unmarshal(p, &ev) == nil && ev.EventID != "" {
			result[ev.EventID] = PDUResult{}
		}
	}
	var updates []DeviceListUpdate
	var keyUpdates []SigningKeyUpdate
	for _, e := range txn.EDUs {
		if e.Type == eduSigningKeyUpdate {
			var u SigningKeyUpdate
			if err := json.Unmarshal(e.Content, &u); err != nil {
				r.Log.Info("dropping malformed signing key update", "origin", origin, "err", err)
				continue
			}
			if server, ok := mxid.ServerName(u.UserID); !ok || server != origin {
				r.Log.Info("dropping signing key update about a user of another server", "origin", origin, "user_id", u.UserID)
				continue
			}
			keyUpdates = append(keyUpdates, u)
			continue
		}
		if e.Type != eduDeviceListUpdate {
			continue
		}
		var u DeviceListUpdate
		if err := json.Unmarshal(e.Content, &u); err != nil || u.DeviceID == "" {
			r.Log.Info("dropping malformed device list update", "origin", origin, "err", err)
			continue
		}
		if server, ok := mxid.ServerName(u.UserID); !ok || server != origin {
			r.Log.Info("dropping device list update about a user of another server", "origin", origin, "user_id", u.UserID)
			continue
		}
		updates = append(updates, u)
	}
	stale := false
	err := r.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(&storage.ReceivedTxn{Origin: origin, TxnID: txnID, ReceivedTS: time.Now().UnixMilli()}).
			On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // seen before
		}
		for _, u := range updates {
			s, err := r.Lists.Apply(ctx, tx, origin, u)
			if err != nil {
				return err
			}
			stale = stale || s
		}
		for _, u := range keyUpdates {
			if err := applySigningKeyUpdate(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if stale {
		r.Lists.Wake()
	}
	return result, nil
}

// receivedTxnTTL is how long transaction IDs are remembered; senders retry
// a transaction for minutes, not days.
const receivedTxnTTL = 24 * time.Hour

// Prune forgets transaction IDs older than receivedTxnTTL.
func (r *Receiver) Prune(ctx context.Context) error {
	_, err := r.Store.DB.NewDelete().Model((*storage.ReceivedTxn)(nil)).
		Where("received_ts < ?", time.Now().Add(-receivedTxnTTL).UnixMilli()).Exec(ctx)
	return err
}
