package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Cross-signing and fallback keys: users' cross-signing keys, signatures
// uploaded through /keys/signatures/upload, devices' fallback keys, the
// cache of remote users' cross-signing keys, the upload order of one-time
// keys (claimed oldest first), and a flag on device-list stream rows that
// record a cross-signing key change rather than a device change.

type m101CrossSigningKey struct {
	bun.BaseModel `bun:"table:cross_signing_keys"`
	UserID        string `bun:"user_id,pk"`
	KeyType       string `bun:"key_type,pk"`
	KeyID         string `bun:"key_id,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}

type m101KeySignature struct {
	bun.BaseModel `bun:"table:key_signatures"`
	TargetUserID  string `bun:"target_user_id,pk"`
	TargetKeyID   string `bun:"target_key_id,pk"`
	SignerUserID  string `bun:"signer_user_id,pk"`
	SignerKeyID   string `bun:"signer_key_id,pk"`
	Signature     string `bun:"signature,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m101FallbackKey struct {
	bun.BaseModel `bun:"table:fallback_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	Algorithm     string `bun:"algorithm,pk"`
	KeyID         string `bun:"key_id,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
	Used          bool   `bun:"used,notnull,default:false"`
}

type m101RemoteCrossSigningKey struct {
	bun.BaseModel `bun:"table:remote_cross_signing_keys"`
	UserID        string `bun:"user_id,pk"`
	KeyType       string `bun:"key_type,pk"`
	KeyJSON       string `bun:"key_json,notnull"`
	UpdatedTS     int64  `bun:"updated_ts,notnull"`
}

// m101OneTimeKey is the one_time_keys table with the column added here.
type m101OneTimeKey struct {
	bun.BaseModel `bun:"table:one_time_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	KeyID         string `bun:"key_id,pk"`
	Algorithm     string `bun:"algorithm,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
	UploadSeq     int64  `bun:"upload_seq,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			err := createTables(ctx, tx,
				table{model: (*m101CrossSigningKey)(nil)},
				table{model: (*m101KeySignature)(nil)},
				table{(*m101FallbackKey)(nil), []string{deviceFK}},
				table{model: (*m101RemoteCrossSigningKey)(nil)},
			)
			if err != nil {
				return err
			}
			// Keys uploaded before this migration count as the oldest.
			if _, err := tx.NewAddColumn().Model((*m1OneTimeKey)(nil)).
				ColumnExpr("upload_seq BIGINT NOT NULL DEFAULT 0").Exec(ctx); err != nil {
				return fmt.Errorf("add one_time_keys.upload_seq: %w", err)
			}
			if _, err := tx.NewAddColumn().Model((*m1DeviceListChange)(nil)).
				ColumnExpr("cross_signing BOOLEAN NOT NULL DEFAULT FALSE").Exec(ctx); err != nil {
				return fmt.Errorf("add device_list_stream.cross_signing: %w", err)
			}
			return createIndexes(ctx, tx,
				index{(*m101OneTimeKey)(nil), "one_time_keys_claim_idx", false, []string{"user_id", "device_id", "algorithm", "upload_seq"}},
				index{(*m101KeySignature)(nil), "key_signatures_signer_idx", false, []string{"signer_user_id"}},
			)
		})
	}, irreversible("cross-signing"))
}
