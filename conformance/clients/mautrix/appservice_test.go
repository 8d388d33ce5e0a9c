//go:build goolm

package mautrix_test

// A bridge's bot, as mautrix-go's bridgev2 matrix connector sets it up
// (bridgev2/matrix/crypto.go: loginBot, Init, doSelfSign), against a real
// Myelin process with the bridge's registration file: the appservice API
// (maunium.net/go/mautrix/appservice) registers the bot and a ghost, the
// bot's device is made either the MSC4190 way (PUT /devices as the
// appservice) or by m.login.application_service login, its crypto runs
// through crypto/cryptohelper on an SQLite store (dbutil's sqlite3-fk-wal,
// as the bridges use), and it self-signs with a recovery key. The full
// bridgev2 connector is not started: it needs a network connector, rooms
// and the appservice push endpoint, none of which Myelin has.

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// startWithBridge runs `myelin serve` with a registration file written by
// mautrix's appservice package, and returns the process and the
// appservice.
func startWithBridge(t *testing.T, bin string, b testenv.Backend, msc4190 bool) (*testenv.Process, *appservice.AppService) {
	t.Helper()
	reg := appservice.CreateRegistration()
	reg.ID = "testbridge"
	reg.URL = "http://127.0.0.1:9" // nothing listens: Myelin pushes no events
	reg.SenderLocalpart = "testbridgebot"
	reg.MSC4190 = msc4190
	reg.Namespaces.UserIDs = appservice.NamespaceList{{Regex: `@testbridge_.+:localhost`, Exclusive: true}}
	file := filepath.Join(t.TempDir(), "registration.yaml")
	if err := reg.Save(file); err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProcess(t, bin, "--database", testenv.NewDatabase(t, b), "--server-name", "localhost",
		"--registration", "open", "--rate-limit", "off", "--appservice-config", file)
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: "localhost", HomeserverURL: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	return p, as
}

// botCrypto sets up the bot's device and crypto as the bridgev2 connector
// does, and self-signs it.
func botCrypto(t *testing.T, as *appservice.AppService, msc4190 bool) (*mautrix.Client, *crypto.OlmMachine) {
	t.Helper()
	ctx := context.Background()
	if err := as.BotIntent().EnsureRegistered(ctx); err != nil {
		t.Fatalf("register the bot: %v", err)
	}
	client := as.NewMautrixClient(as.BotMXID())
	client.Syncer = mautrix.NewDefaultSyncer()
	client.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if !msc4190 {
		// bridgev2's loginBot without MSC4190: the login type must be
		// offered, and the bot logs in with the as_token.
		flows, err := client.GetLoginFlows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !flows.HasFlow(mautrix.AuthTypeAppservice) {
			t.Fatal("GET /login does not offer m.login.application_service")
		}
		if _, err := client.Login(ctx, &mautrix.ReqLogin{
			Type:                     mautrix.AuthTypeAppservice,
			Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(as.BotMXID())},
			StoreCredentials:         true,
			InitialDeviceDisplayName: "Test bridge",
		}); err != nil {
			t.Fatalf("appservice login: %v", err)
		}
	}
	helper, err := cryptohelper.NewCryptoHelper(client, []byte("pickle key"), filepath.Join(t.TempDir(), "crypto.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Close() })
	if msc4190 {
		helper.MSC4190 = true
		helper.LoginAs = &mautrix.ReqLogin{InitialDeviceDisplayName: "Test bridge"}
	}
	if err := helper.Init(ctx); err != nil {
		t.Fatalf("crypto init (device creation and key upload): %v", err)
	}
	mach := helper.Machine()
	// doSelfSign with no keys on the server yet.
	hasKeys, _, err := mach.GetOwnVerificationStatus(ctx)
	if err != nil || hasKeys {
		t.Fatalf("before self-signing: has keys %v, %v", hasKeys, err)
	}
	if _, err := mach.GenerateAndVerifyWithRecoveryKey(ctx); err != nil {
		t.Fatalf("self-sign: %v", err)
	}
	hasKeys, verified, err := mach.GetOwnVerificationStatus(ctx)
	if err != nil || !hasKeys || !verified {
		t.Fatalf("after self-signing: keys %v, verified %v, %v", hasKeys, verified, err)
	}
	return client, mach
}

func TestMautrixBridgeBotSetsUpEncryption(t *testing.T) {
	bin := testenv.BuildMyelin(t)
	for _, mode := range []struct {
		name    string
		msc4190 bool
	}{{"msc4190", true}, {"appservice-login", false}} {
		t.Run(mode.name, func(t *testing.T) {
			testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
				ctx := context.Background()
				p, as := startWithBridge(t, bin, b, mode.msc4190)
				bot, botMach := botCrypto(t, as, mode.msc4190)
				if bot.DeviceID == "" {
					t.Fatal("the bot has no device")
				}
				// The bot's requests act as its device.
				who, err := bot.Whoami(ctx)
				if err != nil || who.UserID != as.BotMXID() || who.DeviceID != bot.DeviceID {
					t.Fatalf("whoami as the bot: %+v %v", who, err)
				}

				// A ghost, masquerading as its own device (MSC4190).
				ghostID := id.NewUserID("testbridge_alice", "localhost")
				if err := as.Intent(ghostID).EnsureRegistered(ctx); err != nil {
					t.Fatalf("register a ghost: %v", err)
				}
				ghost := as.NewMautrixClient(ghostID)
				if err := ghost.CreateDeviceMSC4190(ctx, "GHOSTDEVICE", "ghost device"); err != nil {
					t.Fatalf("create the ghost's device: %v", err)
				}
				who, err = ghost.Whoami(ctx)
				if err != nil || who.UserID != ghostID || who.DeviceID != "GHOSTDEVICE" {
					t.Fatalf("whoami as the ghost's device: %+v %v", who, err)
				}
				log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
				ghostMach := crypto.NewOlmMachine(ghost, &log, crypto.NewMemoryStore(nil), mautrix.NewMemoryStateStore().(crypto.StateStore))
				if err := ghostMach.Load(ctx); err != nil {
					t.Fatal(err)
				}
				if err := ghostMach.ShareKeys(ctx, 0); err != nil {
					t.Fatalf("upload the ghost's device keys: %v", err)
				}
				// Ghosts may not take users outside the namespace.
				outsider := as.NewMautrixClient(id.NewUserID("someone", "localhost"))
				if _, err := outsider.Whoami(ctx); !errors.Is(err, mautrix.MForbidden) {
					t.Fatalf("masquerading outside the namespace: %v", err)
				}

				// Another user sees the bot's device, signed by its
				// self-signing key, and the ghost's device.
				bob, err := mautrix.NewClient(p.URL, "", "")
				if err != nil {
					t.Fatal(err)
				}
				resp, err := bob.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: password})
				if err != nil {
					t.Fatalf("register bob: %v", err)
				}
				bob.SetCredentials(resp.UserID, resp.AccessToken)
				q, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{
					as.BotMXID(): {}, ghostID: {}}})
				if err != nil {
					t.Fatalf("bob's /keys/query: %v", err)
				}
				own := botMach.OwnIdentity()
				dev, ok := q.DeviceKeys[as.BotMXID()][bot.DeviceID]
				if !ok || dev.Keys.GetEd25519(bot.DeviceID) != own.SigningKey {
					t.Fatalf("bob does not see the bot's device keys: %+v", q.DeviceKeys[as.BotMXID()])
				}
				master, ok := q.MasterKeys[as.BotMXID()]
				if !ok || len(master.Keys) == 0 {
					t.Fatalf("bob does not see the bot's master key: %+v", q.MasterKeys)
				}
				ssk, ok := q.SelfSigningKeys[as.BotMXID()]
				if !ok || len(ssk.Keys) == 0 {
					t.Fatal("bob does not see the bot's self-signing key")
				}
				var sskID id.KeyID
				for k := range ssk.Keys {
					sskID = k
				}
				if _, signed := dev.Signatures[as.BotMXID()][sskID]; !signed {
					t.Fatalf("the bot's device is not signed by its self-signing key %s: %+v", sskID, dev.Signatures)
				}
				gdev, ok := q.DeviceKeys[ghostID]["GHOSTDEVICE"]
				if !ok || gdev.Keys.GetEd25519("GHOSTDEVICE") != ghostMach.OwnIdentity().SigningKey {
					t.Fatalf("bob does not see the ghost's device keys: %+v", q.DeviceKeys[ghostID])
				}
			})
		})
	}
}
