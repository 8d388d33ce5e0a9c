package testenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
)

// IssueToken creates userID (if absent) and logs in deviceID (creating
// the device), straight in the database through core (with its change
// hooks), and returns the access token. Federation tests use it on the
// database of a myelin process they started (SQLite WAL allows it while
// the server runs).
func IssueToken(t testing.TB, store *storage.Store, core *devices.Core, userID, deviceID string) string {
	t.Helper()
	var tok string
	err := store.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&storage.User{UserID: userID, CreatedTS: 1}).
			On("CONFLICT (user_id) DO NOTHING").Exec(ctx); err != nil {
			return err
		}
		l, err := core.IssueToken(ctx, tx, userID, deviceID, nil, "")
		tok = l.AccessToken
		return err
	})
	if err != nil {
		t.Fatalf("issue token for %s/%s: %v", userID, deviceID, err)
	}
	return tok
}

// SignedDeviceKeys returns a device_keys object for /keys/upload, signed
// by a fresh ed25519 key of the device as clients do, and that key.
func SignedDeviceKeys(t testing.TB, userID, deviceID string) (json.RawMessage, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{
		"user_id":    userID,
		"device_id":  deviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"ed25519:" + deviceID:    signing.EncodeBase64(pub),
			"curve25519:" + deviceID: signing.EncodeBase64(pub), // any 32 bytes do for the server
		},
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signing.SignJSON(userID, signing.KeyID("ed25519:"+deviceID), priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	return signed, priv
}
