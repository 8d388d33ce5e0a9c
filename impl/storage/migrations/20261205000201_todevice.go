package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// Frozen definitions of the send-to-device and /sync tables (see the live
// models in storage/models_todevice.go).

// m201ToDeviceStream is the last position allocated in one device's inbox.
// It has no foreign key: it outlives its device, so a device deleted and
// created again under the same ID continues its numbering and a sync token
// of the old incarnation can never acknowledge a new message.
type m201ToDeviceStream struct {
	bun.BaseModel `bun:"table:to_device_streams"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	Pos           int64  `bun:"pos,notnull"`
}

// m201ToDeviceMessage is one message waiting in a device's inbox.
type m201ToDeviceMessage struct {
	bun.BaseModel `bun:"table:to_device_messages"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	Pos           int64  `bun:"pos,pk"`
	Sender        string `bun:"sender,notnull"`
	Type          string `bun:"type,notnull"`
	Content       string `bun:"content,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// m201ToDeviceTxn makes PUT /sendToDevice idempotent per device, event
// type and transaction ID.
type m201ToDeviceTxn struct {
	bun.BaseModel `bun:"table:to_device_txns"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	EventType     string `bun:"event_type,pk"`
	TxnID         string `bun:"txn_id,pk"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

// m201ToDeviceReceived deduplicates incoming m.direct_to_device EDUs.
type m201ToDeviceReceived struct {
	bun.BaseModel `bun:"table:to_device_received"`
	Origin        string `bun:"origin,pk"`
	MessageID     string `bun:"message_id,pk"`
	ReceivedTS    int64  `bun:"received_ts,notnull"`
}

// m201SyncWakeup is the log of sync wake-ups that processes on SQLite poll.
type m201SyncWakeup struct {
	bun.BaseModel `bun:"table:sync_wakeups"`
	Seq           int64  `bun:"seq,pk,autoincrement"`
	UserID        string `bun:"user_id,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := createTables(ctx, tx,
				table{model: (*m201ToDeviceStream)(nil)},
				table{(*m201ToDeviceMessage)(nil), []string{deviceFK}},
				table{(*m201ToDeviceTxn)(nil), []string{deviceFK}},
				table{model: (*m201ToDeviceReceived)(nil)},
				table{model: (*m201SyncWakeup)(nil)},
			); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m201ToDeviceTxn)(nil), "to_device_txns_created_idx", false, []string{"created_ts"}},
				index{(*m201ToDeviceReceived)(nil), "to_device_received_ts_idx", false, []string{"received_ts"}},
				index{(*m201SyncWakeup)(nil), "sync_wakeups_created_idx", false, []string{"created_ts"}})
		})
	}, irreversible("send-to-device"))
}
