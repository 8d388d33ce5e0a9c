package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestTwoServersShareACrossSigningIdentityAndItsReset(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two myelin processes")
	}
	bin := testenv.BuildMyelin(t)
	dir := t.TempDir()
	addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	urlA, urlB := "http://"+addrA, "http://"+addrB
	dbA, dbB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	common := []string{"--federation-resolve", "a.test=" + urlA, "--federation-resolve", "b.test=" + urlB, "--rate-limit=off"}
	testenv.StartProcess(t, bin, append([]string{"--server-name", "a.test", "--listen", addrA, "--database", dbA}, common...)...)
	testenv.StartProcess(t, bin, append([]string{"--server-name", "b.test", "--listen", addrB, "--database", dbB}, common...)...)

	ctx := context.Background()
	stA, err := storage.Open(ctx, dbA, storage.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer stA.Close()
	stB, err := storage.Open(ctx, dbB, storage.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer stB.Close()
	coreA := &devices.Core{Store: stA, Hooks: []devices.ChangeHook{(&federation.Outbox{ServerName: "a.test", PublishNames: true}).Hook}}
	const alice = "@alice:a.test"
	aliceTok := testenv.IssueToken(t, stA, coreA, alice, "PHONE")
	bobTok := testenv.IssueToken(t, stB, &devices.Core{Store: stB}, "@bob:b.test", "BOBDEV")
	keys, _ := testenv.SignedDeviceKeys(t, alice, "PHONE")
	testenv.WantStatus(t, testenv.Do(t, urlA, "POST", "/_matrix/client/v3/keys/upload", aliceTok, map[string]any{"device_keys": keys}), 200)
	cs := testenv.NewCrossSigning(t, alice)
	testenv.WantStatus(t, testenv.Do(t, urlA, "POST", "/_matrix/client/v3/keys/device_signing/upload", aliceTok, cs.Upload()), 200)

	// B's clients see alice's master and self-signing keys (never her
	// user-signing key), fetched from A.
	bView := func() (master, self string, usk bool) {
		r := testenv.Do(t, urlB, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		if r.Status != 200 {
			return fmt.Sprintf("HTTP %d", r.Status), "", false
		}
		m, _ := r.Body["master_keys"].(map[string]any)
		s, _ := r.Body["self_signing_keys"].(map[string]any)
		u, _ := r.Body["user_signing_keys"].(map[string]any)
		return keyIDIn(m[alice]), keyIDIn(s[alice]), len(u) > 0
	}
	if m, s, usk := bView(); m != cs.MasterID || s != cs.SelfID || usk {
		t.Fatalf("B's first view of alice's identity: master %s self %s user-signing %v", m, s, usk)
	}
	resyncs := func() int64 {
		var l storage.RemoteDeviceList
		_ = stB.R.NewSelect().Model(&l).Where("user_id = ?", alice).Scan(ctx)
		return l.ResyncedGen
	}
	before := resyncs()

	// Alice resets her identity on A (after user-interactive auth, which
	// the domain call stands for); B learns of it through
	// m.signing_key_update within seconds, not through a resync.
	cs2 := testenv.NewCrossSigning(t, alice)
	body, _ := json.Marshal(cs2.Upload())
	keysA := &e2ekeys.Service{Store: stA, Devices: coreA, ServerName: "a.test"}
	if err := keysA.UploadCrossSigningKeys(ctx, alice, body, func(context.Context, bun.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B sees alice's new identity", func() (bool, string) {
		m, s, _ := bView()
		return m == cs2.MasterID && s == cs2.SelfID, m + " " + s
	})
	if got := resyncs(); got != before {
		t.Fatalf("B resynced alice's list (%d → %d) instead of applying the update", before, got)
	}
	// Her devices' updates still arrive in series after the cross-signing
	// changes that share her stream.
	testenv.IssueToken(t, stA, coreA, alice, "LAPTOP")
	laptop, _ := testenv.SignedDeviceKeys(t, alice, "LAPTOP")
	testenv.WantStatus(t, testenv.Do(t, urlA, "POST", "/_matrix/client/v3/keys/upload", testenv.IssueToken(t, stA, coreA, alice, "LAPTOP"), map[string]any{"device_keys": laptop}), 200)
	eventually(t, 5*time.Second, "B caches alice's new device", func() (bool, string) {
		s, err := cachedDevices(ctx, stB, alice)
		return err == nil && s == "LAPTOP=,PHONE=", s
	})
	if got := resyncs(); got != before {
		t.Fatalf("B resynced alice's list after the device updates (%d → %d)", before, got)
	}
}
