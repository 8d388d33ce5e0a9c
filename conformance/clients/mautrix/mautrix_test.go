//go:build goolm

package mautrix_test

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-hs/myelin/impl/testenv"
)

const password = "correct horse battery"

// client registers a user through UIA (m.login.dummy) and returns a
// mautrix client and its olm machine, with its device keys uploaded.
func client(t *testing.T, s *testenv.Server, user string) (*mautrix.Client, *crypto.OlmMachine) {
	t.Helper()
	ctx := context.Background()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: user, Password: password, InitialDeviceDisplayName: "mautrix"})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), mautrix.NewMemoryStateStore().(crypto.StateStore))
	if err := mach.Load(ctx); err != nil {
		t.Fatalf("load olm machine: %v", err)
	}
	if err := mach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("upload device keys: %v", err)
	}
	return cli, mach
}

func passwordUIA(user id.UserID) mautrix.UIACallback {
	return func(r *mautrix.RespUserInteractive) any {
		return &mautrix.ReqUIAuthLogin{
			BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: r.Session},
			User:         user.String(),
			Password:     password,
		}
	}
}

func TestMautrixSetsUpCrossSigning(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		cli, mach := client(t, s, "alice")
		bob, _ := client(t, s, "bob")

		keys, err := mach.GenerateCrossSigningKeys()
		if err != nil {
			t.Fatal(err)
		}
		// The first upload needs no password (v1.11).
		noUIA := func(*mautrix.RespUserInteractive) any {
			t.Error("the first cross-signing upload asked for user-interactive auth")
			return nil
		}
		if err := mach.PublishCrossSigningKeys(ctx, keys, noUIA); err != nil {
			t.Fatalf("publish cross-signing keys: %v", err)
		}
		if err := mach.SignOwnDevice(ctx, mach.OwnIdentity()); err != nil {
			t.Fatalf("sign own device: %v", err)
		}
		if err := mach.SignOwnMasterKey(ctx); err != nil {
			t.Fatalf("sign own master key: %v", err)
		}

		// Read back as alice: all three keys, the device signed by the
		// self-signing key.
		q, err := cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{cli.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		master, self := keys.MasterKey.PublicKey(), keys.SelfSigningKey.PublicKey()
		if q.MasterKeys[cli.UserID].Keys[id.NewKeyID(id.KeyAlgorithmEd25519, master.String())] != master ||
			q.SelfSigningKeys[cli.UserID].Keys[id.NewKeyID(id.KeyAlgorithmEd25519, self.String())] != self ||
			len(q.UserSigningKeys[cli.UserID].Keys) != 1 {
			t.Fatalf("cross-signing keys as queried: %+v %+v %+v", q.MasterKeys, q.SelfSigningKeys, q.UserSigningKeys)
		}
		dev := q.DeviceKeys[cli.UserID][cli.DeviceID]
		if dev.Signatures[cli.UserID][id.NewKeyID(id.KeyAlgorithmEd25519, self.String())] == "" {
			t.Fatalf("own device not signed by the self-signing key: %+v", dev.Signatures)
		}
		if q.MasterKeys[cli.UserID].Signatures[cli.UserID][id.NewKeyID(id.KeyAlgorithmEd25519, cli.DeviceID.String())] == "" {
			t.Fatalf("master key not signed by the device: %+v", q.MasterKeys[cli.UserID].Signatures)
		}

		// Bob's view: master and self-signing keys, no user-signing key;
		// his client trusts alice's device through her cross-signing keys.
		bq, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{cli.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(bq.MasterKeys[cli.UserID].Keys) != 1 || len(bq.SelfSigningKeys[cli.UserID].Keys) != 1 || len(bq.UserSigningKeys) != 0 {
			t.Fatalf("bob's view: %+v %+v %+v", bq.MasterKeys, bq.SelfSigningKeys, bq.UserSigningKeys)
		}

		// Alice's client checks the chain it reads back.
		devices, err := mach.FetchKeys(ctx, []id.UserID{cli.UserID}, true)
		if err != nil {
			t.Fatal(err)
		}
		own := devices[cli.UserID][cli.DeviceID]
		if own == nil {
			t.Fatalf("own device not fetched: %+v", devices)
		}
		if trust, err := mach.ResolveTrustContext(ctx, own); err != nil || trust < id.TrustStateCrossSignedTOFU {
			t.Fatalf("own device trust %s (%v), want cross-signed", trust, err)
		}

		// A reset of the identity asks for the password.
		keys2, err := mach.GenerateCrossSigningKeys()
		if err != nil {
			t.Fatal(err)
		}
		asked := false
		uia := passwordUIA(cli.UserID)
		if err := mach.PublishCrossSigningKeys(ctx, keys2, func(r *mautrix.RespUserInteractive) any { asked = true; return uia(r) }); err != nil {
			t.Fatalf("reset cross-signing keys: %v", err)
		}
		if !asked {
			t.Fatal("replacing the cross-signing keys did not ask for the password")
		}
		q, err = bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{cli.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if m := keys2.MasterKey.PublicKey(); q.MasterKeys[cli.UserID].Keys[id.NewKeyID(id.KeyAlgorithmEd25519, m.String())] != m {
			t.Fatalf("bob does not see the new master key: %+v", q.MasterKeys)
		}
	})
}
