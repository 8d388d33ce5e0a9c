package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Identity is this server's signing identity: the current ed25519 key
// (kept in the database, shared by every process on it) and the retired
// ones. The current key is cached for a short while so that `myelin keys
// rotate`, run beside live servers, takes effect without a restart.
type Identity struct {
	Store      *storage.Store
	ServerName string
	// KeyValidity is how far ahead valid_until_ts of the key document lies.
	KeyValidity time.Duration
	Now         func() time.Time

	mu       sync.Mutex
	cur      SigningKey
	loadedAt time.Time
}

// SigningKey is a private signing key and its ID.
type SigningKey struct {
	ID   signing.KeyID
	Priv ed25519.PrivateKey
}

// identityCacheTTL bounds how long a process keeps signing with a key after
// another process rotated it.
const identityCacheTTL = 10 * time.Second

func (id *Identity) now() time.Time {
	if id.Now != nil {
		return id.Now()
	}
	return time.Now()
}

// keyIDAlphabet is what the spec allows in a key version: [a-zA-Z0-9_].
const keyIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func newKeyRow(now int64) storage.SigningKey {
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	ver := make([]byte, 8)
	_, _ = rand.Read(ver)
	for i, b := range ver {
		ver[i] = keyIDAlphabet[int(b)%len(keyIDAlphabet)]
	}
	one := 1
	return storage.SigningKey{KeyID: "ed25519:" + string(ver), Seed: signing.EncodeBase64(seed), CreatedTS: now, Current: &one}
}

// Ensure makes sure a current signing key exists, generating one on first
// start. Several processes starting at once are safe: each inserts its
// candidate only if no current key exists (the unique index on is_current
// decides), then all read the one that won.
func (id *Identity) Ensure(ctx context.Context) error {
	row := newKeyRow(id.now().UnixMilli())
	if _, err := id.Store.DB.NewInsert().Model(&row).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("federation: create signing key: %w", err)
	}
	_, err := id.reload(ctx)
	return err
}

func (id *Identity) reload(ctx context.Context) (SigningKey, error) {
	var row storage.SigningKey
	err := id.Store.R.NewSelect().Model(&row).Where("is_current = 1").Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return SigningKey{}, errors.New("federation: no current signing key (Ensure not called)")
	}
	if err != nil {
		return SigningKey{}, err
	}
	k, err := decodeSigningKey(row)
	if err != nil {
		return SigningKey{}, err
	}
	id.mu.Lock()
	id.cur, id.loadedAt = k, time.Now()
	id.mu.Unlock()
	return k, nil
}

func decodeSigningKey(row storage.SigningKey) (SigningKey, error) {
	seed, err := signing.DecodeBase64(row.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("federation: signing key %s in the database is corrupt", row.KeyID)
	}
	return SigningKey{ID: signing.KeyID(row.KeyID), Priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Current returns the key to sign with now.
func (id *Identity) Current(ctx context.Context) (SigningKey, error) {
	id.mu.Lock()
	k, at := id.cur, id.loadedAt
	id.mu.Unlock()
	if k.Priv != nil && time.Since(at) < identityCacheTTL {
		return k, nil
	}
	return id.reload(ctx)
}

type verifyKey struct {
	Key string `json:"key"`
}

type oldVerifyKey struct {
	Key       string `json:"key"`
	ExpiredTS int64  `json:"expired_ts"`
}

type keyDocument struct {
	ServerName    string                  `json:"server_name"`
	ValidUntilTS  int64                   `json:"valid_until_ts"`
	VerifyKeys    map[string]verifyKey    `json:"verify_keys"`
	OldVerifyKeys map[string]oldVerifyKey `json:"old_verify_keys"`
}

// KeyDocument returns the signed key document served at
// /_matrix/key/v2/server: the current key in verify_keys, retired keys in
// old_verify_keys with their expired_ts, valid until now + KeyValidity.
func (id *Identity) KeyDocument(ctx context.Context) ([]byte, error) {
	var rows []storage.SigningKey
	if err := id.Store.R.NewSelect().Model(&rows).Order("created_ts").Scan(ctx); err != nil {
		return nil, err
	}
	doc := keyDocument{
		ServerName:    id.ServerName,
		ValidUntilTS:  id.now().Add(id.KeyValidity).UnixMilli(),
		VerifyKeys:    map[string]verifyKey{},
		OldVerifyKeys: map[string]oldVerifyKey{},
	}
	var cur SigningKey
	for _, r := range rows {
		k, err := decodeSigningKey(r)
		if err != nil {
			return nil, err
		}
		pub := signing.EncodeBase64(k.Priv.Public().(ed25519.PublicKey))
		if r.Current != nil {
			cur = k
			doc.VerifyKeys[r.KeyID] = verifyKey{Key: pub}
			continue
		}
		exp := r.CreatedTS
		if r.ExpiredTS != nil {
			exp = *r.ExpiredTS
		}
		doc.OldVerifyKeys[r.KeyID] = oldVerifyKey{Key: pub, ExpiredTS: exp}
	}
	if cur.Priv == nil {
		return nil, errors.New("federation: no current signing key")
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return signing.SignJSON(id.ServerName, cur.ID, cur.Priv, raw)
}

// RotateKey retires the current signing key (it moves to old_verify_keys
// with expired_ts = now) and makes a new one current, in one transaction.
// Running servers switch to the new key within identityCacheTTL.
func RotateKey(ctx context.Context, store *storage.Store, now time.Time) (old, cur signing.KeyID, err error) {
	row := newKeyRow(now.UnixMilli())
	err = store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var prev []string
		err := tx.NewUpdate().Model((*storage.SigningKey)(nil)).
			Set("is_current = NULL").Set("expired_ts = ?", now.UnixMilli()).
			Where("is_current = 1").Returning("key_id").Scan(ctx, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if len(prev) > 0 {
			old = signing.KeyID(prev[0])
		}
		_, err = tx.NewInsert().Model(&row).Exec(ctx)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("federation: rotate signing key: %w", err)
	}
	return old, signing.KeyID(row.KeyID), nil
}
