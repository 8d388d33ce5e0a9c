package federation_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const cv3 = "/_matrix/client/v3"

func keyIDIn(v any) string {
	k, _ := v.(map[string]any)["keys"].(map[string]any)
	for _, pub := range k {
		s, _ := pub.(string)
		return s
	}
	return ""
}

// signedOTK is a one-time or fallback key object signed by the device.
func signedOTK(t *testing.T, userID, deviceID string, priv []byte, obj map[string]any) json.RawMessage {
	t.Helper()
	raw, _ := json.Marshal(obj)
	out, err := signing.SignJSON(userID, signing.KeyID("ed25519:"+deviceID), priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPeersGetCrossSigningKeysFromUserDevicesAndKeysQueryAndFallbackKeysFromClaims(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		origin := newPeer(t, "origin.test")
		s := testenv.Start(t, b, func(c *config.Config) {
			c.ServerName = "s.test"
			c.FederationResolve = map[string]string{"origin.test": origin.srv.URL}
		})
		const alice = "@alice:s.test"
		tok := login(t, s, alice, "PHONE")
		keys, priv := testenv.SignedDeviceKeys(t, alice, "PHONE")
		testenv.WantStatus(t, s.Do(t, "POST", cv3+"/keys/upload", tok, map[string]any{
			"device_keys":   keys,
			"fallback_keys": map[string]any{"signed_curve25519:FB": signedOTK(t, alice, "PHONE", priv, map[string]any{"key": "fb", "fallback": true})},
		}), 200)
		cs := testenv.NewCrossSigning(t, alice)
		testenv.WantStatus(t, s.Do(t, "POST", cv3+"/keys/device_signing/upload", tok, cs.Upload()), 200)
		testenv.WantStatus(t, s.Do(t, "POST", cv3+"/keys/signatures/upload", tok, map[string]any{alice: map[string]any{"PHONE": cs.SignWith(t, cs.SelfPriv, keys)}}), 200)

		r := origin.do(t, s.URL, "s.test", "GET", "/_matrix/federation/v1/user/devices/"+alice, nil, nil)
		testenv.WantStatus(t, r, 200)
		if keyIDIn(r.Body["master_key"]) != cs.MasterID || keyIDIn(r.Body["self_signing_key"]) != cs.SelfID || r.Body["user_signing_key"] != nil {
			t.Fatalf("user devices answer: %s", r.Raw)
		}
		dev := r.Body["devices"].([]any)[0].(map[string]any)["keys"].(map[string]any)
		if dev["signatures"].(map[string]any)[alice].(map[string]any)["ed25519:"+cs.SelfID] == nil {
			t.Fatalf("device keys lack the self-signing signature: %s", r.Raw)
		}

		r = origin.do(t, s.URL, "s.test", "POST", "/_matrix/federation/v1/user/keys/query",
			map[string]any{"device_keys": map[string]any{alice: []string{}}}, nil)
		testenv.WantStatus(t, r, 200)
		if keyIDIn(r.Body["master_keys"].(map[string]any)[alice]) != cs.MasterID || keyIDIn(r.Body["self_signing_keys"].(map[string]any)[alice]) != cs.SelfID {
			t.Fatalf("keys query answer: %s", r.Raw)
		}
		if _, ok := r.Body["user_signing_keys"]; ok {
			t.Fatalf("the user-signing key went to another server: %s", r.Raw)
		}

		claim := map[string]any{"one_time_keys": map[string]any{alice: map[string]string{"PHONE": "signed_curve25519"}}}
		for range 2 {
			r = origin.do(t, s.URL, "s.test", "POST", "/_matrix/federation/v1/user/keys/claim", claim, nil)
			testenv.WantStatus(t, r, 200)
			k, _ := r.Body["one_time_keys"].(map[string]any)[alice].(map[string]any)["PHONE"].(map[string]any)["signed_curve25519:FB"].(map[string]any)
			if k["fallback"] != true {
				t.Fatalf("claim without one-time keys: %s", r.Raw)
			}
		}
	})
}

// edusTo records the EDUs a server sends to a peer.
type edusTo struct {
	mu   sync.Mutex
	edus []struct {
		Type    string         `json:"edu_type"`
		Content map[string]any `json:"content"`
	}
}

func (e *edusTo) handler(w http.ResponseWriter, r *http.Request) {
	if r.Method != "PUT" || !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var txn struct {
		EDUs []struct {
			Type    string         `json:"edu_type"`
			Content map[string]any `json:"content"`
		} `json:"edus"`
	}
	_ = json.Unmarshal(body, &txn)
	e.mu.Lock()
	e.edus = append(e.edus, txn.EDUs...)
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"pdus":{}}`))
}

func TestCrossSigningChangesGoOutAsSigningKeyUpdatesBesideAnUnbrokenDeviceSeries(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		peer := newPeer(t, "peer.test")
		rec := &edusTo{}
		peer.setHandler(rec.handler)
		s := testenv.Start(t, b, func(c *config.Config) {
			c.ServerName = "s.test"
			c.FederationResolve = map[string]string{"peer.test": peer.srv.URL}
			c.FederationPeers = []string{"peer.test"}
		})
		const alice = "@alice:s.test"
		tok := login(t, s, alice, "PHONE") // stream 1
		keys, _ := testenv.SignedDeviceKeys(t, alice, "PHONE")
		testenv.WantStatus(t, s.Do(t, "POST", cv3+"/keys/upload", tok, map[string]any{"device_keys": keys}), 200) // 2
		cs := testenv.NewCrossSigning(t, alice)
		testenv.WantStatus(t, s.Do(t, "POST", cv3+"/keys/device_signing/upload", tok, cs.Upload()), 200) // 3, 4, 5
		login(t, s, alice, "LAPTOP")                                                                     // 6, after 2
		// Only the user-signing key changes (7): nothing for other servers.
		usk := testenv.NewCrossSigning(t, alice)
		only, _ := json.Marshal(map[string]any{"user_signing_key": cs.SignWith(t, cs.MasterPriv,
			testenv.CrossSigningKey(t, alice, "user_signing", usk.UserPriv.Public().(ed25519.PublicKey)))})
		if err := s.App.Keys.UploadCrossSigningKeys(context.Background(), alice, only, func(context.Context, bun.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		login(t, s, alice, "TABLET") // 8

		var got []string
		eventually(t, 10*time.Second, "EDUs delivered", func() (bool, string) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			got = got[:0]
			for _, e := range rec.edus {
				switch e.Type {
				case "m.device_list_update":
					b, _ := json.Marshal(e.Content["prev_id"])
					got = append(got, e.Content["device_id"].(string)+"@"+jsonNum(e.Content["stream_id"])+"<"+string(b))
				case "m.signing_key_update":
					if keyIDIn(e.Content["master_key"]) != cs.MasterID || keyIDIn(e.Content["self_signing_key"]) != cs.SelfID || e.Content["user_signing_key"] != nil {
						t.Errorf("signing key update %v", e.Content)
					}
					got = append(got, "keys")
				}
			}
			return len(got) == 5, strings.Join(got, " ")
		})
		if want := "PHONE@1<[] PHONE@2<[1] keys LAPTOP@6<[2] TABLET@8<[6]"; strings.Join(got, " ") != want {
			t.Fatalf("EDUs %q, want %q", strings.Join(got, " "), want)
		}
	})
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRemoteCrossSigningKeysComeFromResyncsAndSigningKeyUpdatesOfTheirOwnServerOnly(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		bserver := newPeer(t, "b.test")
		const bob = "@bob:b.test"
		bcs := testenv.NewCrossSigning(t, bob)
		mallory := testenv.NewCrossSigning(t, "@mallory:c.test")
		bobKeys, _ := testenv.SignedDeviceKeys(t, bob, "BOBDEV")
		bserver.setHandler(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/user/devices/") {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"user_id": bob, "stream_id": 3,
				"devices":    []any{map[string]any{"device_id": "BOBDEV", "keys": bobKeys}},
				"master_key": bcs.Master, "self_signing_key": bcs.Self})
		})
		s := testenv.Start(t, b, func(c *config.Config) {
			c.ServerName = "s.test"
			c.FederationResolve = map[string]string{"b.test": bserver.srv.URL}
		})
		const alice = "@alice:s.test"
		tok := login(t, s, alice, "PHONE")
		query := func() testenv.Response {
			r := s.Do(t, "POST", cv3+"/keys/query", tok, map[string]any{"device_keys": map[string]any{bob: []string{}}})
			testenv.WantStatus(t, r, 200)
			return r
		}
		masterOf := func(r testenv.Response) string { return keyIDIn(r.Body["master_keys"].(map[string]any)[bob]) }
		r := query()
		if masterOf(r) != bcs.MasterID || keyIDIn(r.Body["self_signing_keys"].(map[string]any)[bob]) != bcs.SelfID {
			t.Fatalf("bob's keys after the first fetch: %s", r.Raw)
		}
		send := func(txn string, edus ...any) {
			t.Helper()
			testenv.WantStatus(t, bserver.do(t, s.URL, "s.test", "PUT", "/_matrix/federation/v1/send/"+txn,
				map[string]any{"origin": "b.test", "origin_server_ts": 1, "pdus": []any{}, "edus": edus}, nil), 200)
		}
		edu := func(content map[string]any) map[string]any {
			return map[string]any{"edu_type": "m.signing_key_update", "content": content}
		}
		// Forged: a key of another user, and an update about a user of
		// another server.
		send("t1", edu(map[string]any{"user_id": bob, "master_key": mallory.Master}),
			edu(map[string]any{"user_id": "@mallory:c.test", "master_key": mallory.Master}))
		if masterOf(query()) != bcs.MasterID {
			t.Fatal("a forged master key replaced bob's")
		}
		n, _ := s.App.Store.R.NewSelect().Table("remote_cross_signing_keys").Where("user_id = ?", "@mallory:c.test").Count(context.Background())
		if n != 0 {
			t.Fatal("b.test's claim about a user of c.test was stored")
		}
		// Bob resets his identity.
		bcs2 := testenv.NewCrossSigning(t, bob)
		send("t2", edu(map[string]any{"user_id": bob, "master_key": bcs2.Master, "self_signing_key": bcs2.Self}))
		r = query()
		if masterOf(r) != bcs2.MasterID || keyIDIn(r.Body["self_signing_keys"].(map[string]any)[bob]) != bcs2.SelfID {
			t.Fatalf("bob's keys after his update: %s", r.Raw)
		}
		// Alice signs bob's new master key with her user-signing key: she
		// sees her signature, kept here.
		acs := testenv.NewCrossSigning(t, alice)
		testenv.WantStatus(t, s.Do(t, "POST", cv3+"/keys/device_signing/upload", tok, acs.Upload()), 200)
		r = s.Do(t, "POST", cv3+"/keys/signatures/upload", tok, map[string]any{bob: map[string]any{bcs2.MasterID: acs.SignWith(t, acs.UserPriv, bcs2.Master)}})
		testenv.WantStatus(t, r, 200)
		if f, _ := r.Body["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("failures %s", r.Raw)
		}
		sigs := query().Body["master_keys"].(map[string]any)[bob].(map[string]any)["signatures"].(map[string]any)
		if sigs[alice] == nil {
			t.Fatalf("signatures of bob's master key as alice sees it: %v", sigs)
		}
	})
}
