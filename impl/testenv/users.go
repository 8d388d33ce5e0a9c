package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// CreateUser makes the account @localpart:<server name> with password
// directly in s's database and logs it in once, returning the access token
// and the generated device ID. It goes around /register and /login so
// tests of other areas do not depend on them.
func CreateUser(t testing.TB, s *Server, localpart, password string) (token, deviceID string) {
	t.Helper()
	hash, err := app.PasswordHasher(s.Config).Hash(password)
	if err != nil {
		t.Fatal(err)
	}
	userID := "@" + localpart + ":" + s.Config.ServerName
	ctx := context.Background()
	err = s.App.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		u := storage.User{UserID: userID, PasswordHash: hash, CreatedTS: time.Now().UnixMilli()}
		if _, err := tx.NewInsert().Model(&u).Exec(ctx); err != nil {
			return err
		}
		l, err := s.App.Devices.IssueToken(ctx, tx, userID, "", nil, "127.0.0.1")
		token, deviceID = l.AccessToken, l.DeviceID
		return err
	})
	if err != nil {
		t.Fatalf("create user %s: %v", userID, err)
	}
	return token, deviceID
}

// Login binds a new token to deviceID of an existing user (creating the
// device if needed), as a login with that device_id would.
func Login(t testing.TB, s *Server, userID, deviceID string) (token string) {
	t.Helper()
	err := s.App.Store.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		l, err := s.App.Devices.IssueToken(ctx, tx, userID, deviceID, nil, "127.0.0.1")
		token = l.AccessToken
		return err
	})
	if err != nil {
		t.Fatalf("login %s %s: %v", userID, deviceID, err)
	}
	return token
}

// InsertDevices bulk-inserts devices of userID, each with an access token
// and device keys, straight into st (for tests and benchmarks that need
// many devices; IssueToken one by one would dominate their set-up).
func InsertDevices(t testing.TB, st *storage.Store, userID string, ids []string) {
	t.Helper()
	const chunk = 1000
	err := st.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		for start := 0; start < len(ids); start += chunk {
			part := ids[start:min(start+chunk, len(ids))]
			devs := make([]storage.Device, len(part))
			toks := make([]storage.AccessToken, len(part))
			keys := make([]storage.DeviceKeys, len(part))
			for i, id := range part {
				devs[i] = storage.Device{UserID: userID, DeviceID: id, CreatedTS: 1}
				toks[i] = storage.AccessToken{TokenHash: tokens.HashToken(tokens.NewAccessToken()).String(), UserID: userID, DeviceID: id, CreatedTS: 1}
				keys[i] = storage.DeviceKeys{UserID: userID, DeviceID: id, KeyJSON: "{}"}
			}
			for _, m := range []any{&devs, &toks, &keys} {
				if _, err := tx.NewInsert().Model(m).Exec(ctx); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert devices: %v", err)
	}
}
