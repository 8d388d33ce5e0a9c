// Package e2ekeys owns end-to-end encryption keys: devices' signed identity
// keys and one-time keys of local users (upload, query, claim), and answers
// for remote users through a Remote (federation) implementation.
//
// Signed objects are kept and returned as the JSON the device uploaded
// (canonicalised): a re-encoding through typed models would drop members
// the signature covers.
package e2ekeys

import (
	"context"
	"encoding/json"

	"github.com/uptrace/bun"
)

// Device is what other users and servers may learn about a device.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName *string
	// Keys is the signed device_keys object, nil if none was uploaded.
	Keys json.RawMessage
}

// LoadDevices returns the devices of the given users with their keys, in
// (user, device) order; only those in deviceIDs unless it is nil. db may be
// a transaction.
func LoadDevices(ctx context.Context, db bun.IDB, userIDs, deviceIDs []string) ([]Device, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	var rows []struct {
		UserID      string  `bun:"user_id"`
		DeviceID    string  `bun:"device_id"`
		DisplayName *string `bun:"display_name"`
		KeyJSON     *string `bun:"key_json"`
	}
	q := db.NewSelect().TableExpr("devices AS d").
		ColumnExpr("d.user_id, d.device_id, d.display_name, k.key_json").
		Join("LEFT JOIN device_keys AS k ON k.user_id = d.user_id AND k.device_id = d.device_id").
		Where("d.user_id IN (?)", bun.In(userIDs))
	if deviceIDs != nil {
		q = q.Where("d.device_id IN (?)", bun.In(deviceIDs))
	}
	err := q.OrderExpr("d.user_id, d.device_id").Scan(ctx, &rows)
	if err != nil {
		return nil, err
	}
	out := make([]Device, len(rows))
	for i, r := range rows {
		out[i] = Device{UserID: r.UserID, DeviceID: r.DeviceID, DisplayName: r.DisplayName}
		if r.KeyJSON != nil {
			out[i].Keys = json.RawMessage(*r.KeyJSON)
		}
	}
	return out, nil
}

// WithDisplayName returns the device_keys object keys with
// unsigned.device_display_name set to name (or keys unchanged if name is
// nil), as /keys/query answers. unsigned is not covered by signatures.
func WithDisplayName(keys json.RawMessage, name *string) (json.RawMessage, error) {
	if name == nil {
		return keys, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(keys, &obj); err != nil {
		return nil, err
	}
	unsigned := map[string]json.RawMessage{}
	if u, ok := obj["unsigned"]; ok {
		_ = json.Unmarshal(u, &unsigned) // a malformed unsigned is replaced
	}
	n, err := json.Marshal(*name)
	if err != nil {
		return nil, err
	}
	unsigned["device_display_name"] = n
	if obj["unsigned"], err = json.Marshal(unsigned); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}
