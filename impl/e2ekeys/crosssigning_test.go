package e2ekeys_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantMatrixError(t *testing.T, err error, code string) {
	t.Helper()
	e, ok := matrixerr.As(err)
	if !ok || e.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
}

// authenticated stands for completed user-interactive auth.
func authenticated(context.Context, bun.Tx) error { return nil }

func crossSigningRows(t *testing.T, st *storage.Store, user string) int64 {
	t.Helper()
	n, err := st.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Where("user_id = ? AND cross_signing = ?", user, true).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFirstCrossSigningUploadAndIdenticalRetryNeedNoAuthButReplacingKeysDoes(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		keys := s.App.Keys
		alice := "@alice:" + s.Config.ServerName
		login(t, s, alice, "PHONE")
		cs := testenv.NewCrossSigning(t, alice)
		body := mustJSON(t, cs.Upload())

		if need, err := keys.CrossSigningUploadNeedsUIA(ctx, alice, body); err != nil || need {
			t.Fatalf("first upload: needs UIA %v, %v", need, err)
		}
		if err := keys.UploadCrossSigningKeys(ctx, alice, body, nil); err != nil {
			t.Fatal(err)
		}
		if n := crossSigningRows(t, s.App.Store, alice); n != 3 {
			t.Fatalf("%d cross-signing rows in the device-list stream, want 3", n)
		}
		// A retry of the same keys (a lost response) needs no auth and
		// changes nothing.
		if need, _ := keys.CrossSigningUploadNeedsUIA(ctx, alice, body); need {
			t.Fatal("identical re-upload needs UIA")
		}
		if err := keys.UploadCrossSigningKeys(ctx, alice, body, nil); err != nil {
			t.Fatal(err)
		}
		if n := crossSigningRows(t, s.App.Store, alice); n != 3 {
			t.Fatalf("identical re-upload recorded changes (%d rows)", n)
		}
		// The same self-signing key without the master key is no proof
		// of identity: auth is needed.
		if need, _ := keys.CrossSigningUploadNeedsUIA(ctx, alice, mustJSON(t, map[string]any{"self_signing_key": cs.Self})); !need {
			t.Fatal("upload without master key needs no UIA")
		}
		// New keys replace the identity: auth is needed.
		cs2 := testenv.NewCrossSigning(t, alice)
		body2 := mustJSON(t, cs2.Upload())
		if need, _ := keys.CrossSigningUploadNeedsUIA(ctx, alice, body2); !need {
			t.Fatal("replacing keys needs no UIA")
		}
		if err := keys.UploadCrossSigningKeys(ctx, alice, body2, nil); !errors.Is(err, e2ekeys.ErrUIARequired) {
			t.Fatalf("replacing keys without auth: %v", err)
		}
		if err := keys.UploadCrossSigningKeys(ctx, alice, body2, authenticated); err != nil {
			t.Fatal(err)
		}
		res, err := keys.Query(ctx, alice, map[string][]string{alice: nil})
		if err != nil {
			t.Fatal(err)
		}
		if e2ekeys.CrossSigningKeyID(res.MasterKeys[alice]) != cs2.MasterID {
			t.Fatalf("master key not replaced: %s", res.MasterKeys[alice])
		}
		if n := crossSigningRows(t, s.App.Store, alice); n != 6 {
			t.Fatalf("%d cross-signing rows, want 6", n)
		}
	})
}

func TestCrossSigningKeysWithBadUsageUserOrSignatureAreRefused(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		keys := s.App.Keys
		alice := "@alice:" + s.Config.ServerName
		login(t, s, alice, "PHONE")
		cs := testenv.NewCrossSigning(t, alice)
		other := testenv.NewCrossSigning(t, alice)
		bob := testenv.NewCrossSigning(t, "@bob:"+s.Config.ServerName)
		up := func(v map[string]any) error {
			return keys.UploadCrossSigningKeys(ctx, alice, mustJSON(t, v), authenticated)
		}

		wantMatrixError(t, up(map[string]any{"self_signing_key": cs.Self}), "M_MISSING_PARAM")
		wantMatrixError(t, up(map[string]any{"master_key": cs.Master, "self_signing_key": other.Self}), "M_INVALID_SIGNATURE")
		wantMatrixError(t, up(map[string]any{"master_key": cs.Master, "user_signing_key": other.User}), "M_INVALID_SIGNATURE")
		wantMatrixError(t, up(map[string]any{"master_key": cs.Self}), "M_INVALID_PARAM")    // usage self_signing
		wantMatrixError(t, up(map[string]any{"master_key": bob.Master}), "M_INVALID_PARAM") // another user's
		wantMatrixError(t, up(map[string]any{"master_key": map[string]any{"user_id": alice, "usage": []string{"master"},
			"keys": map[string]string{"ed25519:a": "b", "ed25519:c": "d"}}}), "M_INVALID_PARAM")
		wantMatrixError(t, keys.UploadCrossSigningKeys(ctx, alice, []byte(`{"master_key": 5}`), authenticated), "M_BAD_JSON")
		// A public key equal to one of the user's device IDs.
		login(t, s, alice, cs.MasterID)
		wantMatrixError(t, up(cs.Upload()), "M_FORBIDDEN")
		if n, _ := s.App.Store.R.NewSelect().Model((*storage.CrossSigningKey)(nil)).Count(ctx); n != 0 {
			t.Fatalf("%d keys stored by refused uploads", n)
		}
		// The self-signing key alone, against the master key on record.
		if err := up(map[string]any{"master_key": other.Master}); err != nil {
			t.Fatal(err)
		}
		if err := up(map[string]any{"self_signing_key": other.Self}); err != nil {
			t.Fatal(err)
		}
		wantMatrixError(t, up(map[string]any{"self_signing_key": cs.Self}), "M_INVALID_SIGNATURE")
	})
}

func TestQueryServesMasterAndSelfSigningKeysToAllButTheUserSigningKeyToItsOwnerOnly(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		alice, bob := "@alice:"+s.Config.ServerName, "@bob:"+s.Config.ServerName
		login(t, s, alice, "PHONE")
		cs := testenv.NewCrossSigning(t, alice)
		if err := s.App.Keys.UploadCrossSigningKeys(ctx, alice, mustJSON(t, cs.Upload()), nil); err != nil {
			t.Fatal(err)
		}
		own, err := s.App.Keys.Query(ctx, alice, map[string][]string{alice: nil})
		if err != nil {
			t.Fatal(err)
		}
		seen, err := s.App.Keys.Query(ctx, bob, map[string][]string{alice: nil})
		if err != nil {
			t.Fatal(err)
		}
		for name, res := range map[string]e2ekeys.QueryResult{"own": own, "bob's": seen} {
			if e2ekeys.CrossSigningKeyID(res.MasterKeys[alice]) != cs.MasterID || e2ekeys.CrossSigningKeyID(res.SelfSigningKeys[alice]) != cs.SelfID {
				t.Fatalf("%s query lacks master or self-signing key: %+v", name, res)
			}
			// The keys are served as uploaded, with their signatures.
			if err := signing.VerifyJSON(alice, signing.KeyID("ed25519:"+cs.MasterID), cs.MasterPriv.Public().(ed25519.PublicKey), res.SelfSigningKeys[alice]); err != nil {
				t.Fatalf("%s self-signing key lost the master's signature: %v", name, err)
			}
		}
		if e2ekeys.CrossSigningKeyID(own.UserSigningKeys[alice]) != cs.USID {
			t.Fatalf("own query lacks the user-signing key: %+v", own.UserSigningKeys)
		}
		if len(seen.UserSigningKeys) != 0 {
			t.Fatalf("another user sees the user-signing key: %+v", seen.UserSigningKeys)
		}
	})
}
