//go:build goolm

package mautrix_test

import (
	"context"
	"slices"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// loginDevice logs user in on a new device with its password and uploads
// the device's keys, as a second client of the same account.
func loginDevice(t *testing.T, s *testenv.Server, user string) (*mautrix.Client, *crypto.OlmMachine) {
	t.Helper()
	ctx := context.Background()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
		Password:   password, StoreCredentials: true,
	}); err != nil {
		t.Fatalf("login: %v", err)
	}
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

func syncOnce(t *testing.T, cli *mautrix.Client, since string, timeoutMS int) *mautrix.RespSync {
	t.Helper()
	resp, err := cli.FullSyncRequest(context.Background(), mautrix.ReqSync{Since: since, Timeout: timeoutMS})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return resp
}

// TestMautrixReceivesToDeviceMessagesAndDeviceListChangesThroughSync: one
// account, two mautrix devices. The first learns of the second through
// device_lists in its /sync; the second receives a plain to-device event
// and an Olm-encrypted one (a one-time key claimed from Myelin), which it
// decrypts.
func TestMautrixReceivesToDeviceMessagesAndDeviceListChangesThroughSync(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		a, aMach := client(t, s, "alice")
		sinceA := syncOnce(t, a, "", 0).NextBatch

		bCli, bMach := loginDevice(t, s, "alice")
		resp := syncOnce(t, a, sinceA, 10000)
		if !slices.Contains(resp.DeviceLists.Changed, a.UserID) {
			t.Fatalf("device A's sync after device B logged in: device_lists %+v", resp.DeviceLists)
		}
		aMach.ProcessSyncResponse(ctx, resp, sinceA)

		ping := event.Type{Type: "org.example.ping", Class: event.ToDeviceEventType}
		if _, err := a.SendToDevice(ctx, ping, &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			a.UserID: {bCli.DeviceID: {Raw: map[string]any{"n": 1}}},
		}}); err != nil {
			t.Fatalf("send to device: %v", err)
		}
		first := syncOnce(t, bCli, "", 0)
		if len(first.ToDevice.Events) != 1 {
			t.Fatalf("device B's first sync has %d to-device events", len(first.ToDevice.Events))
		}
		if e := first.ToDevice.Events[0]; e.Type.Type != ping.Type || e.Sender != a.UserID || e.Content.Raw["n"] != float64(1) {
			t.Fatalf("device B received %+v", e)
		}

		dev, err := aMach.GetOrFetchDevice(ctx, a.UserID, bCli.DeviceID)
		if err != nil {
			t.Fatalf("fetch device B: %v", err)
		}
		secret := event.Type{Type: "org.example.secret", Class: event.ToDeviceEventType}
		if err := aMach.SendEncryptedToDevice(ctx, dev, secret, event.Content{Raw: map[string]any{"secret": "swordfish"}}); err != nil {
			t.Fatalf("send encrypted to device: %v", err)
		}
		next := syncOnce(t, bCli, first.NextBatch, 10000)
		if len(next.ToDevice.Events) != 1 {
			t.Fatalf("device B's next sync has %d to-device events (the ping must not come again)", len(next.ToDevice.Events))
		}
		evt := next.ToDevice.Events[0]
		if evt.Type.Type != event.ToDeviceEncrypted.Type {
			t.Fatalf("device B received %s, want m.room.encrypted", evt.Type.Type)
		}
		evt.Type.Class = event.ToDeviceEventType
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			t.Fatal(err)
		}
		dec := bMach.HandleEncryptedEvent(ctx, evt)
		if dec == nil || dec.Type.Type != secret.Type || dec.Content.Raw["secret"] != "swordfish" {
			t.Fatalf("device B decrypted %+v", dec)
		}
	})
}
