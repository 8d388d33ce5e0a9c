package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// The OAuth 2.0 authorisation server (issue 17): registered clients,
// authorisation codes, device grants, the OAuth sessions of devices and
// the ID-token signing key.

type m701OAuthClient struct {
	bun.BaseModel `bun:"table:oauth_clients"`
	ClientID      string `bun:"client_id,pk"`
	Metadata      string `bun:"metadata,notnull"`
	MetadataHash  string `bun:"metadata_hash,notnull,unique"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m701OAuthCode struct {
	bun.BaseModel `bun:"table:oauth_codes"`
	CodeHash      string  `bun:"code_hash,pk"`
	ClientID      string  `bun:"client_id,notnull"`
	UserID        string  `bun:"user_id,notnull"`
	DeviceID      string  `bun:"device_id,notnull"`
	Scope         string  `bun:"scope,notnull"`
	RedirectURI   string  `bun:"redirect_uri,notnull"`
	CodeChallenge string  `bun:"code_challenge,notnull"`
	Nonce         *string `bun:"nonce"`
	CreatedTS     int64   `bun:"created_ts,notnull"`
	ExpiresTS     int64   `bun:"expires_ts,notnull"`
	UsedTS        *int64  `bun:"used_ts"`
}

type m701OAuthDeviceGrant struct {
	bun.BaseModel  `bun:"table:oauth_device_grants"`
	DeviceCodeHash string  `bun:"device_code_hash,pk"`
	UserCode       string  `bun:"user_code,notnull,unique"`
	ClientID       string  `bun:"client_id,notnull"`
	Scope          string  `bun:"scope,notnull"`
	DeviceID       string  `bun:"device_id,notnull"`
	State          string  `bun:"state,notnull"`
	UserID         *string `bun:"user_id"`
	IntervalS      int64   `bun:"interval_s,notnull"`
	LastPollTS     int64   `bun:"last_poll_ts,notnull"`
	CreatedTS      int64   `bun:"created_ts,notnull"`
	ExpiresTS      int64   `bun:"expires_ts,notnull"`
}

type m701OAuthSession struct {
	bun.BaseModel `bun:"table:oauth_sessions"`
	UserID        string `bun:"user_id,pk"`
	DeviceID      string `bun:"device_id,pk"`
	ClientID      string `bun:"client_id,notnull"`
	Scope         string `bun:"scope,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

type m701OAuthKey struct {
	bun.BaseModel `bun:"table:oauth_keys"`
	KID           string `bun:"kid,pk"`
	Alg           string `bun:"alg,notnull"`
	PrivateKey    string `bun:"private_key,notnull"`
	CreatedTS     int64  `bun:"created_ts,notnull"`
}

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := createTables(ctx, tx,
				table{model: (*m701OAuthClient)(nil)},
				table{model: (*m701OAuthCode)(nil)},
				table{model: (*m701OAuthDeviceGrant)(nil)},
				table{(*m701OAuthSession)(nil), []string{deviceFK}},
				table{model: (*m701OAuthKey)(nil)}); err != nil {
				return err
			}
			return createIndexes(ctx, tx,
				index{(*m701OAuthCode)(nil), "oauth_codes_expires_idx", false, []string{"expires_ts"}},
				index{(*m701OAuthDeviceGrant)(nil), "oauth_device_grants_expires_idx", false, []string{"expires_ts"}})
		})
	}, irreversible("oauth"))
}
