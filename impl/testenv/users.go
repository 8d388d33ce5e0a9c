package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/storage"
)

// CreateUser makes the account @localpart:<server name> with password
// directly in s's database and logs it in once, returning the access token
// and the generated device ID. It goes around /register and /login so
// tests of other areas do not depend on them.
func CreateUser(t testing.TB, s *Server, localpart, password string) (token, deviceID string) {
	t.Helper()
	p := passwords.DefaultParams()
	p.MemoryKiB, p.Iterations, p.Parallelism = s.Config.Argon2.MemoryKiB, s.Config.Argon2.Iterations, s.Config.Argon2.Parallelism
	hash, err := passwords.New(p, []byte(s.Config.Pepper)).Hash(password)
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
