package csapi_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func passwordAuth(userID, password, session string) map[string]any {
	return map[string]any{"type": "m.login.password", "session": session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": userID}}
}

func keyIDOf(v any) string {
	k, _ := v.(map[string]any)["keys"].(map[string]any)
	for _, pub := range k {
		s, _ := pub.(string)
		return s
	}
	return ""
}

func TestCrossSigningUploadAsksForThePasswordOnlyWhenReplacingKeys(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", "correct horse")
		alice := "@alice:" + s.Config.ServerName
		cs := testenv.NewCrossSigning(t, alice)
		up := func(body map[string]any) testenv.Response {
			return s.Do(t, "POST", v3+"/keys/device_signing/upload", tok, body)
		}
		testenv.WantStatus(t, up(cs.Upload()), 200)
		testenv.WantStatus(t, up(cs.Upload()), 200) // a retry of a lost answer

		cs2 := testenv.NewCrossSigning(t, alice)
		r := up(cs2.Upload())
		if r.Status != 401 || r.Str("session") == "" || fmt.Sprint(r.Body["flows"]) != "[map[stages:[m.login.password]]]" {
			t.Fatalf("replacing keys without auth: %d %s", r.Status, r.Raw)
		}
		session := r.Str("session")
		withAuth := cs2.Upload()
		withAuth["auth"] = passwordAuth(alice, "wrong", session)
		testenv.WantError(t, up(withAuth), 401, "M_FORBIDDEN")
		withAuth["auth"] = passwordAuth(alice, "correct horse", session)
		testenv.WantStatus(t, up(withAuth), 200)

		r = s.Do(t, "POST", v3+"/keys/query", tok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		testenv.WantStatus(t, r, 200)
		if got := keyIDOf(r.Body["master_keys"].(map[string]any)[alice]); got != cs2.MasterID {
			t.Fatalf("master key %s, want the new %s: %s", got, cs2.MasterID, r.Raw)
		}
		if keyIDOf(r.Body["user_signing_keys"].(map[string]any)[alice]) != cs2.USID {
			t.Fatalf("own query lacks the user-signing key: %s", r.Raw)
		}
		// Bad keys answer Matrix errors.
		testenv.WantError(t, up(map[string]any{"self_signing_key": testenv.NewCrossSigning(t, alice).Self,
			"auth": passwordAuth(alice, "correct horse", "")}), 400, "M_INVALID_SIGNATURE")
	})
}

func TestSignaturesUploadReportsFailuresPerKeyAndStoresTheRest(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, dev := testenv.CreateUser(t, s, "alice", "correct horse")
		bobTok, _ := testenv.CreateUser(t, s, "bob", "battery staple")
		alice, bob := "@alice:"+s.Config.ServerName, "@bob:"+s.Config.ServerName
		keys, _ := testenv.SignedDeviceKeys(t, alice, dev)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/keys/upload", tok, map[string]any{"device_keys": keys}), 200)
		cs := testenv.NewCrossSigning(t, alice)
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/keys/device_signing/upload", tok, cs.Upload()), 200)

		forged := testenv.NewCrossSigning(t, alice)
		r := s.Do(t, "POST", v3+"/keys/signatures/upload", tok, map[string]any{alice: map[string]any{
			dev:      cs.SignWith(t, cs.SelfPriv, keys),
			"NOSUCH": cs.SignWith(t, cs.SelfPriv, keys),
		}})
		testenv.WantStatus(t, r, 200)
		var res struct {
			Failures map[string]map[string]struct{ Errcode string } `json:"failures"`
		}
		_ = json.Unmarshal(r.Raw, &res)
		if _, bad := res.Failures[alice][dev]; bad || res.Failures[alice]["NOSUCH"].Errcode != "M_NOT_FOUND" {
			t.Fatalf("failures %s", r.Raw)
		}
		r = s.Do(t, "POST", v3+"/keys/signatures/upload", tok, map[string]any{alice: map[string]any{dev: forged.SignWith(t, forged.SelfPriv, keys)}})
		_ = json.Unmarshal(r.Raw, &res)
		if res.Failures[alice][dev].Errcode != "M_INVALID_SIGNATURE" {
			t.Fatalf("forged signature: %s", r.Raw)
		}

		// Bob sees the device signed by alice's self-signing key, her master
		// and self-signing keys, and not her user-signing key.
		r = s.Do(t, "POST", v3+"/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		testenv.WantStatus(t, r, 200)
		sigs := r.Body["device_keys"].(map[string]any)[alice].(map[string]any)[dev].(map[string]any)["signatures"].(map[string]any)[alice].(map[string]any)
		if sigs["ed25519:"+cs.SelfID] == nil || sigs["ed25519:"+forged.SelfID] != nil {
			t.Fatalf("device signatures %v", sigs)
		}
		if keyIDOf(r.Body["master_keys"].(map[string]any)[alice]) != cs.MasterID || keyIDOf(r.Body["self_signing_keys"].(map[string]any)[alice]) != cs.SelfID {
			t.Fatalf("cross-signing keys missing: %s", r.Raw)
		}
		if usk, _ := r.Body["user_signing_keys"].(map[string]any); len(usk) != 0 {
			t.Fatalf("bob sees alice's user-signing key: %s", r.Raw)
		}
		_ = bob
	})
}

func TestClaimHandsOutTheFallbackKeyWhenOneTimeKeysRunOut(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, dev := testenv.CreateUser(t, s, "alice", "correct horse")
		alice := "@alice:" + s.Config.ServerName
		keys, priv := testenv.SignedDeviceKeys(t, alice, dev)
		sign := func(obj map[string]any) json.RawMessage {
			signed, err := signing.SignJSON(alice, signing.KeyID("ed25519:"+dev), priv, mustMarshal(t, obj))
			if err != nil {
				t.Fatal(err)
			}
			return signed
		}
		r := s.Do(t, "POST", v3+"/keys/upload", tok, map[string]any{
			"device_keys":   keys,
			"one_time_keys": map[string]any{"signed_curve25519:OTK": sign(map[string]any{"key": "once"})},
			"fallback_keys": map[string]any{"signed_curve25519:FB": sign(map[string]any{"key": "fallback", "fallback": true})},
		})
		testenv.WantStatus(t, r, 200)
		claim := func() map[string]any {
			r := s.Do(t, "POST", v3+"/keys/claim", tok, map[string]any{"one_time_keys": map[string]any{alice: map[string]string{dev: "signed_curve25519"}}})
			testenv.WantStatus(t, r, 200)
			k, _ := r.Body["one_time_keys"].(map[string]any)[alice].(map[string]any)[dev].(map[string]any)
			return k
		}
		if k := claim(); k["signed_curve25519:OTK"] == nil {
			t.Fatalf("first claim %v", k)
		}
		for range 2 {
			k := claim()
			fb, _ := k["signed_curve25519:FB"].(map[string]any)
			if fb == nil || fb["fallback"] != true {
				t.Fatalf("claim without one-time keys %v", k)
			}
		}
	})
}
