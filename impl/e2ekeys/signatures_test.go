package e2ekeys_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"

	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// uploadDeviceKeys uploads signed device keys for the device and returns
// them with the device's private key.
func uploadDeviceKeys(t *testing.T, s *testenv.Server, userID, deviceID string) (json.RawMessage, ed25519.PrivateKey) {
	t.Helper()
	keys, priv := testenv.SignedDeviceKeys(t, userID, deviceID)
	if _, err := s.App.Keys.Upload(context.Background(), userID, deviceID, mustJSON(t, map[string]any{"device_keys": keys})); err != nil {
		t.Fatal(err)
	}
	return keys, priv
}

func setUpCrossSigning(t *testing.T, s *testenv.Server, userID string) testenv.CrossSigning {
	t.Helper()
	cs := testenv.NewCrossSigning(t, userID)
	if err := s.App.Keys.UploadCrossSigningKeys(context.Background(), userID, mustJSON(t, cs.Upload()), authenticated); err != nil {
		t.Fatal(err)
	}
	return cs
}

func hasSignature(obj json.RawMessage, signer, keyID string) bool {
	var o struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	_ = json.Unmarshal(obj, &o)
	_, ok := o.Signatures[signer][keyID]
	return ok
}

func failureCode(f e2ekeys.SignatureFailures, user, key string) string {
	code, _ := f[user][key]["errcode"].(string)
	return code
}

func TestSelfSigningKeySignaturesOfOwnDevicesAreVerifiedStoredAndServed(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		alice, bob := "@alice:"+s.Config.ServerName, "@bob:"+s.Config.ServerName
		login(t, s, alice, "PHONE")
		login(t, s, alice, "LAPTOP")
		login(t, s, alice, "TABLET")
		phone, _ := uploadDeviceKeys(t, s, alice, "PHONE")
		laptop, _ := uploadDeviceKeys(t, s, alice, "LAPTOP")
		cs := setUpCrossSigning(t, s, alice)
		other := testenv.NewCrossSigning(t, alice)
		before := streamLen(t, s.App.Store, alice)

		signedPhone := cs.SignWith(t, cs.SelfPriv, phone)
		forgedLaptop := other.SignWith(t, other.SelfPriv, laptop) // not the key on record
		var tampered map[string]any
		_ = json.Unmarshal(cs.SignWith(t, cs.SelfPriv, laptop), &tampered)
		tampered["algorithms"] = []string{"m.megolm.v1.aes-sha2"}
		tabletKeys, _ := testenv.SignedDeviceKeys(t, alice, "TABLET") // never uploaded
		f, err := s.App.Keys.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{alice: map[string]any{
			"PHONE":  signedPhone,
			"LAPTOP": forgedLaptop,
			"TABLET": cs.SignWith(t, cs.SelfPriv, tabletKeys),
		}}))
		if err != nil {
			t.Fatal(err)
		}
		if failureCode(f, alice, "PHONE") != "" || failureCode(f, alice, "LAPTOP") != "M_INVALID_SIGNATURE" || failureCode(f, alice, "TABLET") != "M_NOT_FOUND" {
			t.Fatalf("failures %v", f)
		}
		f, _ = s.App.Keys.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{alice: map[string]any{"LAPTOP": tampered}}))
		if failureCode(f, alice, "LAPTOP") != "M_INVALID_SIGNATURE" {
			t.Fatalf("a changed device object was accepted: %v", f)
		}
		if got := streamLen(t, s.App.Store, alice); got != before+1 {
			t.Fatalf("%d device-list changes, want 1 (the signed phone)", got-before)
		}
		for _, viewer := range []string{alice, bob} {
			res, err := s.App.Keys.Query(ctx, viewer, map[string][]string{alice: nil})
			if err != nil {
				t.Fatal(err)
			}
			p, l := res.DeviceKeys[alice]["PHONE"], res.DeviceKeys[alice]["LAPTOP"]
			if !hasSignature(p, alice, "ed25519:"+cs.SelfID) || !hasSignature(p, alice, "ed25519:PHONE") {
				t.Fatalf("phone as seen by %s lacks a signature: %s", viewer, p)
			}
			if err := signing.VerifyJSON(alice, signing.KeyID("ed25519:"+cs.SelfID), cs.SelfPriv.Public().(ed25519.PublicKey), p); err != nil {
				t.Fatalf("served signature does not verify: %v", err)
			}
			if hasSignature(l, alice, "ed25519:"+other.SelfID) {
				t.Fatalf("refused signature served: %s", l)
			}
		}
		// New device keys (the ID reused) drop the signatures of the old.
		uploadDeviceKeys(t, s, alice, "PHONE")
		res, _ := s.App.Keys.Query(ctx, bob, map[string][]string{alice: nil})
		if hasSignature(res.DeviceKeys[alice]["PHONE"], alice, "ed25519:"+cs.SelfID) {
			t.Fatal("signature of replaced device keys still served")
		}
	})
}

func TestUserSigningKeySignaturesOfOthersAreSeenOnlyBySigner(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		alice, bob, carol := "@alice:"+s.Config.ServerName, "@bob:"+s.Config.ServerName, "@carol:"+s.Config.ServerName
		for _, u := range []string{alice, bob, carol} {
			login(t, s, u, "DEV")
		}
		acs := setUpCrossSigning(t, s, alice)
		bcs := setUpCrossSigning(t, s, bob)
		before := streamLen(t, s.App.Store, bob)
		signed := acs.SignWith(t, acs.UserPriv, bcs.Master)
		f, err := s.App.Keys.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{
			bob:   map[string]any{bcs.MasterID: signed},
			carol: map[string]any{"SOMEKEY": signed},
		}))
		if err != nil {
			t.Fatal(err)
		}
		if len(f[bob]) != 0 || failureCode(f, carol, "SOMEKEY") == "" {
			t.Fatalf("failures %v", f)
		}
		// Signed by the master key instead of the user-signing key.
		f, _ = s.App.Keys.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{bob: map[string]any{bcs.MasterID: acs.SignWith(t, acs.MasterPriv, bcs.Master)}}))
		if failureCode(f, bob, bcs.MasterID) != "M_INVALID_SIGNATURE" {
			t.Fatalf("failures %v", f)
		}
		for viewer, want := range map[string]bool{alice: true, bob: false, carol: false} {
			res, err := s.App.Keys.Query(ctx, viewer, map[string][]string{bob: nil})
			if err != nil {
				t.Fatal(err)
			}
			if got := hasSignature(res.MasterKeys[bob], alice, "ed25519:"+acs.USID); got != want {
				t.Fatalf("%s sees alice's signature of bob's master key: %v, want %v", viewer, got, want)
			}
		}
		if streamLen(t, s.App.Store, bob) != before {
			t.Fatal("a private signature was recorded as a change of bob's")
		}
		// Without a user-signing key there is nothing to check against.
		ccs := testenv.NewCrossSigning(t, carol) // never uploaded
		f, _ = s.App.Keys.UploadSignatures(ctx, carol, mustJSON(t, map[string]any{bob: map[string]any{bcs.MasterID: ccs.SignWith(t, ccs.UserPriv, bcs.Master)}}))
		if failureCode(f, bob, bcs.MasterID) != "M_NOT_FOUND" {
			t.Fatalf("failures %v", f)
		}
	})
}

func TestDeviceSignaturesOfOwnMasterKeyAreStoredAsACrossSigningChange(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		alice := "@alice:" + s.Config.ServerName
		login(t, s, alice, "PHONE")
		_, phonePriv := uploadDeviceKeys(t, s, alice, "PHONE")
		cs := setUpCrossSigning(t, s, alice)
		signed, err := signing.SignJSON(alice, "ed25519:PHONE", phonePriv, cs.Master)
		if err != nil {
			t.Fatal(err)
		}
		before := crossSigningRows(t, s.App.Store, alice)
		f, err := s.App.Keys.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{alice: map[string]any{cs.MasterID: json.RawMessage(signed)}}))
		if err != nil || len(f) != 0 {
			t.Fatalf("%v %v", f, err)
		}
		if crossSigningRows(t, s.App.Store, alice) != before+1 {
			t.Fatal("signing the master key recorded no cross-signing change")
		}
		res, _ := s.App.Keys.Query(ctx, "@bob:"+s.Config.ServerName, map[string][]string{alice: nil})
		if !hasSignature(res.MasterKeys[alice], alice, "ed25519:PHONE") {
			t.Fatalf("master key lacks the device's signature: %s", res.MasterKeys[alice])
		}
		// A signature by a device without keys cannot be checked.
		login(t, s, alice, "NOKEYS")
		_, priv, _ := ed25519.GenerateKey(nil)
		bad, _ := signing.SignJSON(alice, "ed25519:NOKEYS", priv, cs.Master)
		f, _ = s.App.Keys.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{alice: map[string]any{cs.MasterID: json.RawMessage(bad)}}))
		if failureCode(f, alice, cs.MasterID) != "M_NOT_FOUND" {
			t.Fatalf("failures %v", f)
		}
		if _, err := s.App.Keys.UploadSignatures(ctx, alice, []byte(`[1]`)); err == nil {
			t.Fatal("a body that is no object was accepted")
		}
		var n int64
		n, _ = s.App.Store.R.NewSelect().Model((*storage.KeySignature)(nil)).Count(ctx)
		if n != 1 {
			t.Fatalf("%d signatures stored, want 1", n)
		}
	})
}
