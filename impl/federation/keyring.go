package federation

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Keyring finds other servers' verify keys: from memory, then the
// server_keys table, then the server's own /_matrix/key/v2/server, whose
// self-signature and validity are checked. Keys are kept until their
// valid_until_ts, capped at 7 days after the fetch as the spec requires.
type Keyring struct {
	Store    *storage.Store
	Resolver *Resolver
	HTTP     *http.Client

	mu        sync.Mutex
	mem       map[keyRef]cachedKey
	lastFetch map[string]time.Time
	flight    singleflight.Group
}

type keyRef struct {
	server string
	id     signing.KeyID
}

type cachedKey struct {
	pub        ed25519.PublicKey
	validUntil int64 // ms
}

const (
	// maxKeyValidity caps valid_until_ts (spec: the lesser of it and 7 days).
	maxKeyValidity = 7 * 24 * time.Hour
	// minRefetch keeps a server that presents unknown keys (or cannot be
	// reached) from making us fetch its key document on every request.
	minRefetch  = 3 * time.Second
	maxKeyCache = 10000
)

// ErrNoKey reports that no valid key with the requested ID could be found.
var ErrNoKey = errors.New("no valid key")

// VerifyKey returns the public key keyID of server, valid now.
func (k *Keyring) VerifyKey(ctx context.Context, server string, keyID signing.KeyID) (ed25519.PublicKey, error) {
	now := time.Now().UnixMilli()
	ref := keyRef{server, keyID}
	k.mu.Lock()
	c, ok := k.mem[ref]
	k.mu.Unlock()
	if ok && c.validUntil > now {
		return c.pub, nil
	}
	var row storage.ServerKey
	err := k.Store.R.NewSelect().Model(&row).
		Where("server_name = ? AND key_id = ? AND valid_until_ts > ?", server, string(keyID), now).Scan(ctx)
	if err == nil {
		if pub, derr := signing.DecodeBase64(row.PublicKey); derr == nil && len(pub) == ed25519.PublicKeySize {
			k.remember(ref, cachedKey{pub, row.ValidUntilTS})
			return pub, nil
		}
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	k.mu.Lock()
	last := k.lastFetch[server]
	k.mu.Unlock()
	if time.Since(last) < minRefetch {
		return nil, fmt.Errorf("%w: %s has no key %s (fetched recently)", ErrNoKey, server, keyID)
	}
	if _, err, _ := k.flight.Do(server, func() (any, error) { return nil, k.fetch(ctx, server) }); err != nil {
		return nil, fmt.Errorf("%w: fetch keys of %s: %v", ErrNoKey, server, err)
	}
	k.mu.Lock()
	c, ok = k.mem[ref]
	k.mu.Unlock()
	if ok && c.validUntil > time.Now().UnixMilli() {
		return c.pub, nil
	}
	return nil, fmt.Errorf("%w: %s does not publish key %s", ErrNoKey, server, keyID)
}

func (k *Keyring) remember(ref keyRef, c cachedKey) {
	k.mu.Lock()
	if k.mem == nil || len(k.mem) >= maxKeyCache {
		k.mem = map[keyRef]cachedKey{}
	}
	k.mem[ref] = c
	k.mu.Unlock()
}

// fetch downloads, checks and stores server's key document.
func (k *Keyring) fetch(ctx context.Context, server string) error {
	k.mu.Lock()
	if k.lastFetch == nil || len(k.lastFetch) >= maxKeyCache {
		k.lastFetch = map[string]time.Time{}
	}
	k.lastFetch[server] = time.Now()
	k.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	t, err := k.Resolver.Resolve(ctx, server)
	if err != nil {
		return err
	}
	req, err := t.NewRequest(ctx, http.MethodGet, "/_matrix/key/v2/server", nil)
	if err != nil {
		return err
	}
	resp, err := k.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("key document: HTTP %d", resp.StatusCode)
	}
	keys, validUntil, err := CheckKeyDocument(raw, server, time.Now())
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	rows := make([]storage.ServerKey, 0, len(keys))
	for id, pub := range keys {
		rows = append(rows, storage.ServerKey{ServerName: server, KeyID: string(id),
			PublicKey: signing.EncodeBase64(pub), ValidUntilTS: validUntil, FetchedTS: now})
	}
	if _, err := k.Store.DB.NewInsert().Model(&rows).
		On("CONFLICT (server_name, key_id) DO UPDATE").
		Set("public_key = EXCLUDED.public_key, valid_until_ts = EXCLUDED.valid_until_ts, fetched_ts = EXCLUDED.fetched_ts").
		Exec(ctx); err != nil {
		return err
	}
	for id, pub := range keys {
		k.remember(keyRef{server, id}, cachedKey{pub, validUntil})
	}
	return nil
}

// CheckKeyDocument validates a key document of server: it names server, is
// still valid, and every signature by one of its ed25519 verify_keys
// verifies (at least one must). It returns those keys and the time (ms)
// until which they may be used: valid_until_ts, capped at now + 7 days.
func CheckKeyDocument(raw []byte, server string, now time.Time) (map[signing.KeyID]ed25519.PublicKey, int64, error) {
	var doc struct {
		ServerName   string `json:"server_name"`
		ValidUntilTS int64  `json:"valid_until_ts"`
		VerifyKeys   map[string]struct {
			Key string `json:"key"`
		} `json:"verify_keys"`
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, 0, fmt.Errorf("key document is not JSON: %w", err)
	}
	if doc.ServerName != server {
		return nil, 0, fmt.Errorf("key document names %q, not %q", doc.ServerName, server)
	}
	if doc.ValidUntilTS <= now.UnixMilli() {
		return nil, 0, fmt.Errorf("key document of %s expired", server)
	}
	keys := map[signing.KeyID]ed25519.PublicKey{}
	for id, vk := range doc.VerifyKeys {
		if !strings.HasPrefix(id, "ed25519:") {
			continue
		}
		pub, err := signing.DecodeBase64(vk.Key)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, 0, fmt.Errorf("key document of %s: key %s is malformed", server, id)
		}
		keys[signing.KeyID(id)] = pub
	}
	signed := 0
	for id := range doc.Signatures[server] {
		pub, ok := keys[signing.KeyID(id)]
		if !ok {
			continue // e.g. signed by an old key as well
		}
		if err := signing.VerifyJSON(server, signing.KeyID(id), pub, raw); err != nil {
			return nil, 0, fmt.Errorf("key document of %s: %w", server, err)
		}
		signed++
	}
	if signed == 0 {
		return nil, 0, fmt.Errorf("key document of %s is not signed by its own keys", server)
	}
	return keys, min(doc.ValidUntilTS, now.Add(maxKeyValidity).UnixMilli()), nil
}
