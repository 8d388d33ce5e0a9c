package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// Frozen table definitions of the federation schema: signing keys, other
// servers' keys, device-list subscribers, the EDU outbox and destination
// state, received transactions, and the remote device-list cache.
type m30SigningKey struct {
	bun.BaseModel `bun:"table:signing_keys"`
	KeyID         string `bun:"key_id,pk"`
	Seed          string `bun:"seed,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
	ExpiredTS     *int64 `bun:"expired_ts"`
	Current       *int   `bun:"is_current"`
}

type m30ServerKey struct {
	bun.BaseModel `bun:"table:server_keys"`
	ServerName    string `bun:"server_name,pk"`
	KeyID         string `bun:"key_id,pk"`
	PublicKey     string `bun:"public_key,notnull"`
	ValidUntilTS  int64  `bun:"valid_until_ts,notnull"`
	FetchedTS     int64  `bun:"fetched_ts,notnull"`
}

type m30DeviceListSubscriber struct {
	bun.BaseModel `bun:"table:device_list_subscribers"`
	UserID        string `bun:"user_id,pk"`
	ServerName    string `bun:"server_name,pk"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m30OutboxEDU struct {
	bun.BaseModel `bun:"table:federation_outbox"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Destination   string `bun:"destination,notnull"`
	EDUType       string `bun:"edu_type,notnull"`
	Content       string `bun:"content,notnull"`
	TxnID         string `bun:"txn_id,notnull,default:''"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m30Destination struct {
	bun.BaseModel `bun:"table:federation_destinations"`
	Destination   string `bun:"destination,pk"`
	Failures      int    `bun:"failures,notnull,default:0"`
	NextAttemptTS int64  `bun:"next_attempt_ts,notnull,default:0"`
	LeaseUntilTS  int64  `bun:"lease_until_ts,notnull,default:0"`
	LeaseOwner    string `bun:"lease_owner,notnull,default:''"`
}

type m30ReceivedTxn struct {
	bun.BaseModel `bun:"table:federation_received_txns"`
	Origin        string `bun:"origin,pk"`
	TxnID         string `bun:"txn_id,pk"`
	ReceivedTS    int64  `bun:"received_ts,notnull"`
}

type m30RemoteDeviceList struct {
	bun.BaseModel `bun:"table:remote_device_lists"`
	UserID        string `bun:"user_id,pk"`
	ServerName    string `bun:"server_name,notnull"`
	KnownThrough  int64  `bun:"known_through,notnull,default:0"`
	StaleGen      int64  `bun:"stale_gen,notnull,default:0"`
	ResyncedGen   int64  `bun:"resynced_gen,notnull,default:0"`
	Failures      int    `bun:"failures,notnull,default:0"`
	NextAttemptTS int64  `bun:"next_attempt_ts,notnull,default:0"`
	ClaimedUntil  int64  `bun:"claimed_until_ts,notnull,default:0"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}

type m30RemoteDevice struct {
	bun.BaseModel `bun:"table:remote_devices"`
	UserID        string  `bun:"user_id,pk"`
	DeviceID      string  `bun:"device_id,pk"`
	DisplayName   *string `bun:"display_name"`
	KeyJSON       *string `bun:"key_json"`
}

type m30RemoteDeviceSeen struct {
	bun.BaseModel `bun:"table:remote_device_seen"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,pk"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			err := createTables(ctx, tx,
				table{model: (*m30SigningKey)(nil)}, table{model: (*m30ServerKey)(nil)},
				table{model: (*m30DeviceListSubscriber)(nil)}, table{model: (*m30OutboxEDU)(nil)},
				table{model: (*m30Destination)(nil)}, table{model: (*m30ReceivedTxn)(nil)},
				table{model: (*m30RemoteDeviceList)(nil)}, table{model: (*m30RemoteDevice)(nil)},
				table{model: (*m30RemoteDeviceSeen)(nil)},
			)
			if err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				// At most one current signing key (NULLs are distinct).
				index{(*m30SigningKey)(nil), "signing_keys_current_uq", true, []string{"is_current"}},
				index{(*m30OutboxEDU)(nil), "federation_outbox_dest_idx", false, []string{"destination", "id"}},
				index{(*m30ReceivedTxn)(nil), "federation_received_txns_ts_idx", false, []string{"received_ts"}},
				index{(*m30RemoteDeviceList)(nil), "remote_device_lists_stale_idx", false, []string{"next_attempt_ts"}},
			)
		})
	}, irreversible("federation"))
}
