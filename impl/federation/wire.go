package federation

import (
	"encoding/json"

	"github.com/myelin-hs/myelin/impl/signing"
)

// EDU types handled.
const (
	eduDeviceListUpdate = "m.device_list_update"
	eduSigningKeyUpdate = "m.signing_key_update"
)

// DeviceListUpdate is the content of an m.device_list_update EDU.
type DeviceListUpdate struct {
	UserID            string          `json:"user_id"`
	DeviceID          string          `json:"device_id"`
	DeviceDisplayName *string         `json:"device_display_name,omitempty"`
	StreamID          int64           `json:"stream_id"`
	PrevID            []int64         `json:"prev_id"`
	Deleted           bool            `json:"deleted,omitempty"`
	Keys              json.RawMessage `json:"keys,omitempty"`
}

// UserDevices is the answer of GET /_matrix/federation/v1/user/devices/{userId}.
type UserDevices struct {
	UserID   string       `json:"user_id"`
	StreamID int64        `json:"stream_id"`
	Devices  []UserDevice `json:"devices"`
	// The user's cross-signing keys, when set up.
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// SigningKeyUpdate is the content of an m.signing_key_update EDU.
type SigningKeyUpdate struct {
	UserID         string          `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// UserDevice is one device in UserDevices. Keys is absent for a device
// that has uploaded none (as Synapse does; the spec's schema marks it
// required, but there is nothing to put there).
type UserDevice struct {
	DeviceID    string          `json:"device_id"`
	Keys        json.RawMessage `json:"keys,omitempty"`
	DisplayName *string         `json:"device_display_name,omitempty"`
}

// transaction is the body of PUT /send/{txnId}.
type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []edu             `json:"edus,omitempty"`
}

type edu struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// remoteDeviceKeys checks that keys (from another server) is a device_keys
// object for userID's deviceID and returns its canonical JSON, or nil when
// it is absent or does not fit (such keys are not passed on to clients).
func remoteDeviceKeys(keys json.RawMessage, userID, deviceID string) []byte {
	if len(keys) == 0 || string(keys) == "null" {
		return nil
	}
	var dk struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	if json.Unmarshal(keys, &dk) != nil || dk.UserID != userID || dk.DeviceID != deviceID {
		return nil
	}
	canon, err := signing.Canonical(keys)
	if err != nil {
		return nil
	}
	return canon
}
