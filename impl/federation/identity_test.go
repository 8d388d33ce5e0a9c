package federation_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

type keyDoc struct {
	ServerName    string                       `json:"server_name"`
	ValidUntilTS  int64                        `json:"valid_until_ts"`
	VerifyKeys    map[string]map[string]string `json:"verify_keys"`
	OldVerifyKeys map[string]struct {
		Key       string `json:"key"`
		ExpiredTS int64  `json:"expired_ts"`
	} `json:"old_verify_keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

func TestKeyDocumentIsSelfSignedAndValidForTheConfiguredTime(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		now := time.UnixMilli(1_800_000_000_000)
		id := &federation.Identity{Store: openStore(t, b), ServerName: "a.test", KeyValidity: 7 * 24 * time.Hour, Now: func() time.Time { return now }}
		if err := id.Ensure(context.Background()); err != nil {
			t.Fatal(err)
		}
		raw, err := id.KeyDocument(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		keys, until, err := federation.CheckKeyDocument(raw, "a.test", now)
		if err != nil {
			t.Fatalf("our own key document does not pass our check: %v\n%s", err, raw)
		}
		var doc keyDoc
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.ValidUntilTS != now.Add(7*24*time.Hour).UnixMilli() || until != doc.ValidUntilTS {
			t.Fatalf("valid_until_ts %d (usable until %d), want now + 7 days", doc.ValidUntilTS, until)
		}
		cur, err := id.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || !keys[cur.ID].Equal(cur.Priv.Public().(ed25519.PublicKey)) || len(cur.ID) != len("ed25519:")+8 {
			t.Fatalf("verify_keys %v does not hold exactly the current key %s", doc.VerifyKeys, cur.ID)
		}
		if _, _, err := federation.CheckKeyDocument(raw, "a.test", now.Add(8*24*time.Hour)); err == nil {
			t.Fatal("an expired key document passed the check")
		}
	})
}

func TestRotatedKeyMovesToOldVerifyKeysWithExpiry(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		st := openStore(t, b)
		ctx := context.Background()
		id := &federation.Identity{Store: st, ServerName: "a.test", KeyValidity: time.Hour}
		if err := id.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		first, _ := id.Current(ctx)
		at := time.UnixMilli(1_700_000_000_000)
		old, cur, err := federation.RotateKey(ctx, st, at)
		if err != nil {
			t.Fatal(err)
		}
		if old != first.ID || cur == first.ID {
			t.Fatalf("rotate: old %s cur %s, first was %s", old, cur, first.ID)
		}
		// A fresh Identity (another process, or after the cache expires)
		// signs with the new key.
		id2 := &federation.Identity{Store: st, ServerName: "a.test", KeyValidity: time.Hour}
		if err := id2.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		raw, err := id2.KeyDocument(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var doc keyDoc
		_ = json.Unmarshal(raw, &doc)
		if _, ok := doc.VerifyKeys[string(cur)]; !ok || len(doc.VerifyKeys) != 1 {
			t.Fatalf("verify_keys %v, want only %s", doc.VerifyKeys, cur)
		}
		o, ok := doc.OldVerifyKeys[string(first.ID)]
		if !ok || o.ExpiredTS != at.UnixMilli() || o.Key != signing.EncodeBase64(first.Priv.Public().(ed25519.PublicKey)) {
			t.Fatalf("old_verify_keys %+v lacks %s expired at %d", doc.OldVerifyKeys, first.ID, at.UnixMilli())
		}
		if _, ok := doc.Signatures["a.test"][string(cur)]; !ok {
			t.Fatalf("document not signed by the new key: %s", raw)
		}
		if _, _, err := federation.CheckKeyDocument(raw, "a.test", time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProcessesStartingTogetherAgreeOnOneSigningKey(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		dsn := testenv.NewDatabase(t, b)
		var wg sync.WaitGroup
		ids := make([]signing.KeyID, 6)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := storage.Open(context.Background(), dsn, storage.Options{MaxConns: 2})
				if err != nil {
					t.Error(err)
					return
				}
				defer st.Close()
				id := &federation.Identity{Store: st, ServerName: "a.test", KeyValidity: time.Hour}
				if err := id.Ensure(context.Background()); err != nil {
					t.Error(err)
					return
				}
				k, err := id.Current(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = k.ID
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] || id == "" {
				t.Fatalf("processes disagree on the signing key: %v", ids)
			}
		}
	})
}

func TestKeyEndpointsServeTheSignedDocument(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		for _, path := range []string{"/_matrix/key/v2/server", "/_matrix/key/v2/server/ed25519:whatever"} {
			r := s.Do(t, "GET", path, "", nil)
			testenv.WantStatus(t, r, 200)
			if _, _, err := federation.CheckKeyDocument(r.Raw, s.Config.ServerName, time.Now()); err != nil {
				t.Fatalf("%s: %v\n%s", path, err, r.Raw)
			}
		}
	})
}
