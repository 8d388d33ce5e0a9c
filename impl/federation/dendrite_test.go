package federation_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// deviceKeysOf returns the device_keys object of user's device in a
// /keys/query answer (raw), or nil.
func deviceKeysOf(t *testing.T, raw []byte, user, device string) json.RawMessage {
	t.Helper()
	var resp struct {
		DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
		Failures   map[string]any                        `json:"failures"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		t.Fatalf("keys query answer: %v: %s", err, raw)
	}
	if len(resp.Failures) > 0 {
		t.Fatalf("keys query reports failures: %s", raw)
	}
	return resp.DeviceKeys[user][device]
}

// signedBy checks the device's self-signature on keys, as clients do.
func signedBy(t *testing.T, keys json.RawMessage, user, device string, priv ed25519.PrivateKey) {
	t.Helper()
	if keys == nil {
		t.Fatalf("no keys of %s/%s", user, device)
	}
	if err := signing.VerifyJSON(user, signing.KeyID("ed25519:"+device), priv.Public().(ed25519.PublicKey), keys); err != nil {
		t.Fatalf("the signature of %s/%s does not verify after federation: %v: %s", user, device, err, keys)
	}
}

// dendriteDevices is what Dendrite's database holds of user's devices, as
// "DEVICE=name(keys)" in device order: what it applied from our updates.
func dendriteDevices(t *testing.T, d *testenv.Dendrite, user string) string {
	t.Helper()
	for _, file := range []string{"dendrite_keyserver.db", "dendrite_userapi.db"} {
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.Dir, file)+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query("SELECT device_id, COALESCE(display_name, ''), key_json FROM keyserver_device_keys WHERE user_id = ? ORDER BY device_id", user)
		if err != nil {
			db.Close()
			continue // not this database
		}
		var out []string
		for rows.Next() {
			var dev, name, keys string
			if err := rows.Scan(&dev, &name, &keys); err != nil {
				t.Fatal(err)
			}
			if keys == "" {
				continue // a deleted device
			}
			var k struct {
				Keys map[string]string `json:"keys"`
			}
			_ = json.Unmarshal([]byte(keys), &k)
			out = append(out, fmt.Sprintf("%s=%s(%s)", dev, name, k.Keys["ed25519:"+dev][:6]))
		}
		rows.Close()
		db.Close()
		return strings.Join(out, ",")
	}
	t.Fatal("no keyserver_device_keys table in Dendrite's databases")
	return ""
}

func edKey(priv ed25519.PrivateKey) string {
	return signing.EncodeBase64(priv.Public().(ed25519.PublicKey))[:6]
}

// otk is a signed one-time key object of device.
func otk(t *testing.T, user, device string, priv ed25519.PrivateKey, key string) json.RawMessage {
	t.Helper()
	out, err := signing.SignJSON(user, signing.KeyID("ed25519:"+device), priv, []byte(`{"key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Myelin and a real Dendrite 0.13.8 federate over TLS on loopback, both
// ways: keys, key queries with signatures intact, one-time key claims,
// device-list updates, and no backoff for unknown users.
func TestFederationWithDendrite(t *testing.T) {
	bin := testenv.DendriteDir(t)
	ctx := context.Background()
	d := testenv.StartDendrite(t, bin)

	fedAddr := testenv.FreeAddr(t)
	cert, key, _ := testenv.SelfSignedCert(t, t.TempDir(), "myelin")
	const ttl = time.Second
	s := testenv.Start(t, testenv.SQLite, func(c *config.Config) {
		c.ServerName = fedAddr // an IP literal: Dendrite reaches us at https://127.0.0.1:PORT
		c.FederationListen = fedAddr
		c.TLSCert, c.TLSKey = cert, key
		// We reach Dendrite's federation API on its HTTP listener (its
		// self-signed certificate is not ours to trust).
		c.FederationResolve = map[string]string{d.ServerName: d.HTTPURL}
		c.FederationDeviceListTTL = ttl
	})
	alice := "@alice:" + fedAddr
	phoneTok := login(t, s, alice, "PHONE")
	phoneKeys, phonePriv := testenv.SignedDeviceKeys(t, alice, "PHONE")
	testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", phoneTok, map[string]any{
		"device_keys":   phoneKeys,
		"one_time_keys": map[string]any{"signed_curve25519:AAAA": otk(t, alice, "PHONE", phonePriv, "alice-otk")},
	}), 200)

	bob, bobTok := d.Register(t, "bob", "BOBDEV")
	bobKeys, bobPriv := testenv.SignedDeviceKeys(t, bob, "BOBDEV")
	testenv.WantStatus(t, testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/upload", bobTok, map[string]any{
		"device_keys":   bobKeys,
		"one_time_keys": map[string]any{"signed_curve25519:BBBB": otk(t, bob, "BOBDEV", bobPriv, "bob-otk")},
	}), 200)

	t.Run("server keys are fetched and accepted both ways", func(t *testing.T) {
		// Dendrite as a notary: it fetches our key document over TLS and
		// serves it only if it checks out.
		req, err := http.NewRequest("POST", d.HTTPURL+"/_matrix/key/v2/query", strings.NewReader(`{"server_keys":{"`+fedAddr+`":{}}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = d.ServerName // Dendrite takes its name from Host
		r := testenv.DoRequest(t, req)
		testenv.WantStatus(t, r, 200)
		cur, err := s.App.Federation.Identity.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(r.Raw), `"`+string(cur.ID)+`"`) || !strings.Contains(string(r.Raw), `"server_name":"`+fedAddr+`"`) {
			t.Fatalf("Dendrite's copy of our keys: %s", r.Raw)
		}
		// Ours of Dendrite's, fetched to verify its signed requests (as
		// the key query Dendrite makes for bob here).
		testenv.WantStatus(t, testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok,
			map[string]any{"device_keys": map[string]any{alice: []string{}}}), 200)
		var cached []storage.ServerKey
		if err := s.App.Store.R.NewSelect().Model(&cached).Where("server_name = ?", d.ServerName).Scan(ctx); err != nil || len(cached) == 0 {
			t.Fatalf("Dendrite's server key not cached (%v)", err)
		}
		req, err = http.NewRequest("GET", d.HTTPURL+"/_matrix/key/v2/server", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = d.ServerName
		r = testenv.DoRequest(t, req)
		published, _ := r.Body["verify_keys"].(map[string]any)[cached[0].KeyID].(map[string]any)
		if published["key"] != cached[0].PublicKey {
			t.Fatalf("our copy of Dendrite's key %+v, published: %s", cached[0], r.Raw)
		}
	})

	t.Run("keys query with signatures intact both ways", func(t *testing.T) {
		r := testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		testenv.WantStatus(t, r, 200)
		signedBy(t, deviceKeysOf(t, r.Raw, alice, "PHONE"), alice, "PHONE", phonePriv)
		r = s.Do(t, "POST", "/_matrix/client/v3/keys/query", phoneTok, map[string]any{"device_keys": map[string]any{bob: []string{}}})
		testenv.WantStatus(t, r, 200)
		signedBy(t, deviceKeysOf(t, r.Raw, bob, "BOBDEV"), bob, "BOBDEV", bobPriv)
	})

	t.Run("one-time keys are claimed both ways", func(t *testing.T) {
		r := testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/claim", bobTok,
			map[string]any{"one_time_keys": map[string]any{alice: map[string]string{"PHONE": "signed_curve25519"}}})
		testenv.WantStatus(t, r, 200)
		if !strings.Contains(string(r.Raw), "alice-otk") {
			t.Fatalf("Dendrite's claim of our key: %s", r.Raw)
		}
		r = s.Do(t, "POST", "/_matrix/client/v3/keys/claim", phoneTok,
			map[string]any{"one_time_keys": map[string]any{bob: map[string]string{"BOBDEV": "signed_curve25519"}}})
		testenv.WantStatus(t, r, 200)
		k, _ := json.Marshal(r.Body["one_time_keys"].(map[string]any)[bob].(map[string]any)["BOBDEV"].(map[string]any)["signed_curve25519:BBBB"])
		if err := signing.VerifyJSON(bob, "ed25519:BOBDEV", bobPriv.Public().(ed25519.PublicKey), k); err != nil {
			t.Fatalf("our claim of Dendrite's key: %v: %s", err, r.Raw)
		}
	})

	t.Run("Dendrite applies our device-list updates", func(t *testing.T) {
		waitDendrite := func(want, what string) {
			t.Helper()
			eventually(t, 30*time.Second, what, func() (bool, string) {
				got := dendriteDevices(t, d, alice)
				return got == want, got
			})
		}
		// Dendrite asked for alice's devices above, so it follows them.
		waitDendrite("PHONE=("+edKey(phonePriv)+")", "Dendrite holds alice's list")
		laptopTok := login(t, s, alice, "LAPTOP")
		laptopKeys, laptopPriv := testenv.SignedDeviceKeys(t, alice, "LAPTOP")
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", laptopTok, map[string]any{"device_keys": laptopKeys}), 200)
		waitDendrite("LAPTOP=("+edKey(laptopPriv)+"),PHONE=("+edKey(phonePriv)+")", "a new device")

		testenv.WantStatus(t, s.Do(t, "PUT", "/_matrix/client/v3/devices/LAPTOP", laptopTok, map[string]any{"display_name": "Work laptop"}), 200)
		waitDendrite("LAPTOP=Work laptop("+edKey(laptopPriv)+"),PHONE=("+edKey(phonePriv)+")", "a renamed device")

		newKeys, newPriv := testenv.SignedDeviceKeys(t, alice, "LAPTOP")
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", laptopTok, map[string]any{"device_keys": newKeys}), 200)
		waitDendrite("LAPTOP=Work laptop("+edKey(newPriv)+"),PHONE=("+edKey(phonePriv)+")", "new keys of a device")

		if err := s.App.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			_, _, err := s.App.Devices.DeleteDevices(ctx, tx, alice, []string{"LAPTOP"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		waitDendrite("PHONE=("+edKey(phonePriv)+")", "a deleted device")

		// What Dendrite's users see.
		r := testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		if deviceKeysOf(t, r.Raw, alice, "LAPTOP") != nil {
			t.Fatalf("Dendrite still lists the deleted device: %s", r.Raw)
		}
	})

	t.Run("a device added on Dendrite is seen within the TTL", func(t *testing.T) {
		query := func() []byte {
			r := s.Do(t, "POST", "/_matrix/client/v3/keys/query", phoneTok, map[string]any{"device_keys": map[string]any{bob: nil}})
			testenv.WantStatus(t, r, 200)
			return r.Raw
		}
		query() // cached now
		_, tok2 := d.Login(t, "bob", "BOB2")
		keys2, priv2 := testenv.SignedDeviceKeys(t, bob, "BOB2")
		testenv.WantStatus(t, testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/upload", tok2, map[string]any{"device_keys": keys2}), 200)
		added := time.Now()
		eventually(t, ttl+5*time.Second, "bob's new device in our /keys/query", func() (bool, string) {
			raw := query()
			return deviceKeysOf(t, raw, bob, "BOB2") != nil, string(raw)
		})
		signedBy(t, deviceKeysOf(t, query(), bob, "BOB2"), bob, "BOB2", priv2)
		t.Logf("seen %s after the upload (TTL %s)", time.Since(added).Round(10*time.Millisecond), ttl)
	})

	t.Run("an unknown user gives no backoff", func(t *testing.T) {
		nobody := "@nobody:" + fedAddr
		r := testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{nobody: []string{}}})
		testenv.WantStatus(t, r, 200)
		// No failure reported (deviceKeysOf checks), no devices.
		if deviceKeysOf(t, r.Raw, nobody, "X") != nil {
			t.Fatalf("answer about an unknown user: %s", r.Raw)
		}
		// Dendrite still reaches us at once (once its device-list worker
		// has asked us about nobody too): a new device of alice's is in
		// its users' next query, without a 10 s hang or a failure.
		time.Sleep(time.Second)
		tabletTok := login(t, s, alice, "TABLET")
		tabletKeys, tabletPriv := testenv.SignedDeviceKeys(t, alice, "TABLET")
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tabletTok, map[string]any{"device_keys": tabletKeys}), 200)
		start := time.Now()
		eventually(t, 5*time.Second, "alice's tablet seen by Dendrite's users", func() (bool, string) {
			r := testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
			return deviceKeysOf(t, r.Raw, alice, "TABLET") != nil, string(r.Raw)
		})
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Dendrite took %s to reach us after an unknown user", took)
		}
		signedBy(t, deviceKeysOf(t, testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok,
			map[string]any{"device_keys": map[string]any{alice: []string{}}}).Raw, alice, "TABLET"), alice, "TABLET", tabletPriv)
	})
	t.Run("master and self-signing keys both ways", func(t *testing.T) {
		// crossSigned checks the master and self-signing keys of user in a
		// /keys/query answer against cs: the same keys, the self-signing
		// key's master signature intact.
		crossSigned := func(raw []byte, user string, cs testenv.CrossSigning) (bool, string) {
			var resp struct {
				Master map[string]json.RawMessage `json:"master_keys"`
				Self   map[string]json.RawMessage `json:"self_signing_keys"`
			}
			if err := json.Unmarshal(raw, &resp); err != nil {
				return false, err.Error()
			}
			m, sk := resp.Master[user], resp.Self[user]
			if !strings.Contains(string(m), cs.MasterID) || !strings.Contains(string(sk), cs.SelfID) {
				return false, string(raw)
			}
			if err := signing.VerifyJSON(user, signing.KeyID("ed25519:"+cs.MasterID), cs.MasterPriv.Public().(ed25519.PublicKey), sk); err != nil {
				return false, "self-signing key's master signature: " + err.Error()
			}
			return true, ""
		}
		acs := testenv.NewCrossSigning(t, alice)
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/device_signing/upload", phoneTok, acs.Upload()), 200)
		eventually(t, 10*time.Second, "alice's cross-signing keys on Dendrite", func() (bool, string) {
			r := testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
			return crossSigned(r.Raw, alice, acs)
		})

		bcs := testenv.NewCrossSigning(t, bob)
		upload := bcs.Upload()
		upload["auth"] = map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "bob"},
			"password": "correct horse battery"}
		testenv.WantStatus(t, testenv.Do(t, d.HTTPURL, "POST", "/_matrix/client/v3/keys/device_signing/upload", bobTok, upload), 200)
		eventually(t, ttl+5*time.Second, "bob's cross-signing keys on Myelin", func() (bool, string) {
			r := s.Do(t, "POST", "/_matrix/client/v3/keys/query", phoneTok, map[string]any{"device_keys": map[string]any{bob: []string{}}})
			return crossSigned(r.Raw, bob, bcs)
		})
	})
}
