package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// Frozen table definitions of the core schema (accounts, devices, tokens,
// UIA, device-list stream, device keys).
type m1User struct {
	bun.BaseModel `bun:"table:users"`
	UserID        string `bun:"user_id,pk"`
	PasswordHash  string `bun:"password_hash,nullzero"`
	IsGuest       bool   `bun:"is_guest,notnull,default:false"`
	Deactivated   bool   `bun:"deactivated,notnull,default:false"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m1Device struct {
	bun.BaseModel `bun:"table:devices"`
	UserID        string  `bun:"user_id,pk"`
	DeviceID      string  `bun:"device_id,pk"`
	DisplayName   *string `bun:"display_name"`
	LastSeenIP    *string `bun:"last_seen_ip"`
	LastSeenTS    *int64  `bun:"last_seen_ts"`
	CreatedTS     int64   `bun:"created_ts,notnull"`
}

type m1AccessToken struct {
	bun.BaseModel `bun:"table:access_tokens"`
	TokenHash     string `bun:"token_hash,pk"`
	UserID        string `bun:"user_id,notnull"`
	DeviceID      string `bun:"device_id,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m1UIASession struct {
	bun.BaseModel `bun:"table:uia_sessions"`
	SessionID     string `bun:"session_id,pk"`
	Operation     string `bun:"operation,notnull"`
	UserID        string `bun:"user_id,notnull"`
	Completed     string `bun:"completed,notnull"`
	Params        string `bun:"params,notnull"`
	Result        string `bun:"result,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
	ExpiresTS     int64  `bun:"expires_ts,notnull"`
}

type m1RegistrationToken struct {
	bun.BaseModel `bun:"table:registration_tokens"`
	Token         string `bun:"token,pk"`
	UsesAllowed   *int64 `bun:"uses_allowed"`
	Pending       int64  `bun:"pending,notnull"`
	Completed     int64  `bun:"completed,notnull"`
	ExpiryTS      *int64 `bun:"expiry_ts"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m1LoginToken struct {
	bun.BaseModel `bun:"table:login_tokens"`
	TokenHash     string `bun:"token_hash,pk"`
	UserID        string `bun:"user_id,notnull"`
	ExpiresTS     int64  `bun:"expires_ts,notnull"`
}

type m1ThreePID struct {
	bun.BaseModel `bun:"table:threepids"`
	Medium        string `bun:"medium,pk"`
	Address       string `bun:"address,pk"`
	UserID        string `bun:"user_id,notnull"`
	AddedTS       int64  `bun:"added_ts,notnull"`
}

type m1UserStream struct {
	bun.BaseModel `bun:"table:user_streams"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,notnull"`
}

type m1DeviceListChange struct {
	bun.BaseModel `bun:"table:device_list_stream"`
	UserID        string `bun:"user_id,pk"`
	StreamID      int64  `bun:"stream_id,pk"`
	DeviceID      string `bun:"device_id,notnull"`
	Deleted       bool   `bun:"deleted,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m1DeviceKeys struct {
	bun.BaseModel `bun:"table:device_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	KeyJSON       string `bun:"key_json,notnull"`
}

type m1OneTimeKey struct {
	bun.BaseModel `bun:"table:one_time_keys"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	KeyID         string `bun:"key_id,pk"`
	Algorithm     string `bun:"algorithm,notnull"`
	KeyJSON       string `bun:"key_json,notnull"`
}

const deviceFK = "(user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE"

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			err := createTables(ctx, tx,
				table{(*m1User)(nil), nil},
				table{(*m1Device)(nil), []string{"(user_id) REFERENCES users (user_id)"}},
				table{(*m1AccessToken)(nil), []string{deviceFK}},
				table{(*m1UIASession)(nil), nil},
				table{(*m1RegistrationToken)(nil), nil},
				table{(*m1LoginToken)(nil), []string{"(user_id) REFERENCES users (user_id)"}},
				table{(*m1ThreePID)(nil), []string{"(user_id) REFERENCES users (user_id)"}},
				table{(*m1UserStream)(nil), nil},
				table{(*m1DeviceListChange)(nil), nil},
				table{(*m1DeviceKeys)(nil), []string{deviceFK}},
				table{(*m1OneTimeKey)(nil), []string{deviceFK}},
			)
			if err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m1AccessToken)(nil), "access_tokens_device_uq", true, []string{"user_id", "device_id"}},
				index{(*m1UIASession)(nil), "uia_sessions_expires_idx", false, []string{"expires_ts"}},
				index{(*m1LoginToken)(nil), "login_tokens_expires_idx", false, []string{"expires_ts"}},
				index{(*m1ThreePID)(nil), "threepids_user_idx", false, []string{"user_id"}},
				index{(*m1Device)(nil), "devices_last_seen_idx", false, []string{"user_id", "last_seen_ts"}},
			)
		})
	}, irreversible("core"))
}
