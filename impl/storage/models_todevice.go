package storage

// Send-to-device and /sync tables (migration 20261205000201_todevice).

import "github.com/uptrace/bun"

// ToDeviceStream holds the last position allocated in one device's inbox.
// Allocation is an upsert-increment inside the transaction that queues the
// message, so a device's positions commit in order across processes (the
// row lock, or SQLite's single writer): a reader never sees position n+1
// before n. The row outlives the device on purpose (no foreign key): a
// device created again under the same ID continues the numbering.
type ToDeviceStream struct {
	bun.BaseModel `bun:"table:to_device_streams"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	Pos           int64  `bun:"pos,notnull"`
}

// ToDeviceMessage is one message waiting for a device until the device
// acknowledges it (a /sync whose since is at or past Pos). Deleting the
// device deletes its messages (ON DELETE CASCADE).
type ToDeviceMessage struct {
	bun.BaseModel `bun:"table:to_device_messages"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	Pos           int64  `bun:"pos,pk"`
	Sender        string `bun:"sender,notnull"`
	Type          string `bun:"type,notnull"`
	Content       string `bun:"content,notnull"` // JSON object
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// ToDeviceTxn records a PUT /sendToDevice/{eventType}/{txnId} that was
// applied, so a retransmission is not applied again (the scope of a
// transaction ID is one device and one endpoint).
type ToDeviceTxn struct {
	bun.BaseModel `bun:"table:to_device_txns"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	EventType     string `bun:"event_type,pk"`
	TxnID         string `bun:"txn_id,pk"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// ToDeviceReceived records the message_id of an m.direct_to_device EDU
// already applied from origin.
type ToDeviceReceived struct {
	bun.BaseModel `bun:"table:to_device_received"`
	Origin        string `bun:"origin,pk"`
	MessageID     string `bun:"message_id,pk"`
	ReceivedTS    int64  `bun:"received_ts,notnull"`
}

// SyncWakeup is one entry of the sync wake-up log that processes on SQLite
// poll (PostgreSQL uses LISTEN/NOTIFY; see impl/wake).
type SyncWakeup struct {
	bun.BaseModel `bun:"table:sync_wakeups"`
	Seq           int64  `bun:"seq,pk,autoincrement"`
	UserID        string `bun:"user_id,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}
