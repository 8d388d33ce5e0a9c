package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; state: %s", what, within, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoServersKeepDeviceListsInSync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two myelin processes")
	}
	bin := testenv.BuildMyelin(t)
	dir := t.TempDir()
	// Fixed addresses: each server's configuration names the other, and B
	// restarts on the same one.
	addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	urlA, urlB := "http://"+addrA, "http://"+addrB
	dbA, dbB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	common := []string{"--federation-resolve", "a.test=" + urlA, "--federation-resolve", "b.test=" + urlB, "--rate-limit=off", "--log-level", "info"}
	argsA := append([]string{"--server-name", "a.test", "--listen", addrA, "--database", dbA}, common...)
	argsB := append([]string{"--server-name", "b.test", "--listen", addrB, "--database", dbB}, common...)
	a := testenv.StartProcess(t, bin, argsA...)
	b := testenv.StartProcess(t, bin, argsB...)

	// Accounts are made in the databases (admin access beside the running
	// servers); the hook queues A's changes in A's outbox, which A's
	// sender polls.
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
	coreB := &devices.Core{Store: stB}
	const alice = "@alice:a.test"
	phoneTok := testenv.IssueToken(t, stA, coreA, alice, "PHONE")
	bobTok := testenv.IssueToken(t, stB, coreB, "@bob:b.test", "BOBDEV")
	upload := func(tok, dev string) {
		t.Helper()
		keys, _ := testenv.SignedDeviceKeys(t, alice, dev)
		testenv.WantStatus(t, testenv.Do(t, urlA, "POST", "/_matrix/client/v3/keys/upload", tok, `{"device_keys":`+string(keys)+`}`), 200)
	}
	rename := func(dev, name string) {
		t.Helper()
		err := stA.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewUpdate().Model((*storage.Device)(nil)).Set("display_name = ?", name).
				Where("user_id = ? AND device_id = ?", alice, dev).Exec(ctx); err != nil {
				return err
			}
			_, err := coreA.AppendChanges(ctx, tx, alice, []string{dev}, false)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// B's view through its client API: devices with keys, and their names.
	bQuery := func() string {
		r := testenv.Do(t, urlB, "POST", "/_matrix/client/v3/keys/query", bobTok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		if r.Status != 200 {
			return fmt.Sprintf("HTTP %d %s", r.Status, r.Raw)
		}
		devs, _ := r.Body["device_keys"].(map[string]any)[alice].(map[string]any)
		var out []string
		for id, d := range devs {
			unsigned, _ := d.(map[string]any)["unsigned"].(map[string]any)
			name, _ := unsigned["device_display_name"].(string)
			out = append(out, id+"="+name)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	// B's cache, including devices without keys.
	bCache := func() string {
		s, err := cachedDevices(ctx, stB, alice)
		if err != nil {
			return err.Error()
		}
		return s
	}
	bSees := func(want string, within time.Duration, what string, view func() string) {
		t.Helper()
		eventually(t, within, what, func() (bool, string) { s := view(); return s == want, s })
	}
	resyncs := func() int64 {
		var l storage.RemoteDeviceList
		_ = stB.R.NewSelect().Model(&l).Where("user_id = ?", alice).Scan(ctx)
		return l.ResyncedGen
	}

	// B fetches A's user's devices with a signed request, and A records B
	// as a subscriber.
	upload(phoneTok, "PHONE")
	rename("PHONE", "Phone")
	if got := bQuery(); got != "PHONE=Phone" {
		t.Fatalf("B's first query for alice: %q", got)
	}
	if n, _ := stA.R.NewSelect().Model((*storage.DeviceListSubscriber)(nil)).Where("user_id = ? AND server_name = 'b.test'", alice).Count(ctx); n != 1 {
		t.Fatal("A did not record B as a subscriber of alice")
	}

	// Creating, renaming and deleting a device on A reaches B within 2 s.
	laptopTok := testenv.IssueToken(t, stA, coreA, alice, "LAPTOP")
	bSees("LAPTOP=,PHONE=Phone", 2*time.Second, "new device in B's cache", bCache)
	upload(laptopTok, "LAPTOP")
	rename("PHONE", "Old phone")
	bSees("LAPTOP=,PHONE=Old phone", 2*time.Second, "keys and rename seen by B's clients", bQuery)
	err = stA.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		_, _, err := coreA.DeleteDevices(ctx, tx, alice, []string{"PHONE"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	bSees("LAPTOP=", 2*time.Second, "deletion seen by B's clients", bQuery)

	// B's clients claim A's one-time keys through federation.
	testenv.WantStatus(t, testenv.Do(t, urlA, "POST", "/_matrix/client/v3/keys/upload", laptopTok,
		`{"one_time_keys":{"signed_curve25519:K1":{"key":"one-time","signatures":{"`+alice+`":{"ed25519:LAPTOP":"sig"}}}}}`), 200)
	claim := map[string]any{"one_time_keys": map[string]any{alice: map[string]string{"LAPTOP": "signed_curve25519"}}}
	r := testenv.Do(t, urlB, "POST", "/_matrix/client/v3/keys/claim", bobTok, claim)
	testenv.WantStatus(t, r, 200)
	if _, ok := r.Body["one_time_keys"].(map[string]any)[alice].(map[string]any)["LAPTOP"].(map[string]any)["signed_curve25519:K1"]; !ok {
		t.Fatalf("remote claim: %s", r.Raw)
	}
	if got := resyncs(); got != 1 {
		t.Fatalf("B resynced alice's list %d times; the updates in series needed none after the first fetch", got)
	}

	// With B stopped, changes on A queue up and arrive, in order, after B
	// restarts (no resync needed).
	b.Stop(t)
	rename("LAPTOP", "Laptop (while B was down)")
	upload(testenv.IssueToken(t, stA, coreA, alice, "TABLET"), "TABLET")
	eventually(t, 10*time.Second, "A fails to reach B and backs off", func() (bool, string) {
		var d storage.Destination
		err := stA.R.NewSelect().Model(&d).Where("destination = 'b.test'").Scan(ctx)
		return err == nil && d.Failures > 0, fmt.Sprint(d, err)
	})
	testenv.StartProcess(t, bin, argsB...)
	bSees("LAPTOP=Laptop (while B was down),TABLET=", 30*time.Second, "changes made while B was down", bCache)
	if got := resyncs(); got != 1 {
		t.Fatalf("B needed a resync (%d) to catch up after its restart; the outbox should have delivered", got)
	}

	// A restarted with the test-only drop switch: its second EDU is lost,
	// which B detects through the next one's prev_id and repairs.
	keyID := func() string {
		r := testenv.Do(t, urlA, "GET", "/_matrix/key/v2/server", "", nil)
		for id := range r.Body["verify_keys"].(map[string]any) {
			return id
		}
		return ""
	}
	outboxEmpty := func() (bool, string) {
		n, err := stA.R.NewSelect().Model((*storage.OutboxEDU)(nil)).Count(ctx)
		return err == nil && n == 0, fmt.Sprint(n, err)
	}
	eventually(t, 5*time.Second, "A's outbox drained before its restart", outboxEmpty)
	before := keyID()
	a.Stop(t)
	testenv.StartProcess(t, bin, append(argsA, "--federation-test-drop", "2")...)
	if after := keyID(); after != before || before == "" {
		t.Fatalf("A's signing key changed across a restart: %s → %s", before, after)
	}
	rename("TABLET", "x")
	bSees("LAPTOP=Laptop (while B was down),TABLET=x", 2*time.Second, "first EDU after A's restart", bCache)
	rename("TABLET", "y") // dropped
	eventually(t, 5*time.Second, "A marks the dropped EDU sent", outboxEmpty)
	if got := bCache(); got != "LAPTOP=Laptop (while B was down),TABLET=x" {
		t.Fatalf("the dropped update reached B: %q", got)
	}
	testenv.IssueToken(t, stA, coreA, alice, "PAD") // its prev_id names the lost update
	// The resync's list has the lost rename; PAD, without identity keys,
	// is not in it (/user/devices lists only devices with keys).
	bSees("LAPTOP=Laptop (while B was down),TABLET=y", 5*time.Second, "gap repaired by a resync", bCache)
	if got := resyncs(); got != 2 {
		t.Fatalf("B resynced %d times, want exactly one more for the gap", got-1)
	}

	// Requests with a tampered signature or a forged origin are refused.
	idB := &federation.Identity{Store: stB, ServerName: "b.test", KeyValidity: time.Hour}
	if err := idB.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	keyB, err := idB.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, forged, _ := ed25519.GenerateKey(rand.Reader)
	asB := &peer{name: "b.test", keyID: keyB.ID, priv: keyB.Priv}
	sign := func(origin string, key signing.KeyID, priv ed25519.PrivateKey, tamper bool) func(string, string, []byte) string {
		return func(method, uri string, content []byte) string {
			h, err := signing.SignRequest(origin, "a.test", key, priv, method, uri, content)
			if err != nil {
				t.Fatal(err)
			}
			if tamper {
				i := strings.Index(h, `sig="`) + 6
				c := byte('A')
				if h[i] == 'A' {
					c = 'B'
				}
				h = h[:i] + string(c) + h[i+1:]
			}
			return h
		}
	}
	const devicesPath = "/_matrix/federation/v1/user/devices/@alice:a.test"
	testenv.WantStatus(t, asB.do(t, urlA, "a.test", "GET", devicesPath, nil, nil), 200)
	for name, auth := range map[string]func(string, string, []byte) string{
		"tampered signature":        sign("b.test", keyB.ID, keyB.Priv, true),
		"forged origin, B's key ID": sign("b.test", keyB.ID, forged, false),
		"forged origin claiming A":  sign("a.test", keyB.ID, keyB.Priv, false),
	} {
		t.Run(name, func(t *testing.T) {
			testenv.WantError(t, asB.do(t, urlA, "a.test", "GET", devicesPath, nil, auth), 401, "M_UNAUTHORIZED")
		})
	}
	// A forged transaction "from A" deleting a device does nothing on B.
	forgedTxn := map[string]any{"origin": "a.test", "origin_server_ts": 1, "pdus": []any{}, "edus": []any{map[string]any{
		"edu_type": "m.device_list_update", "content": map[string]any{"user_id": alice, "device_id": "LAPTOP", "stream_id": 99, "prev_id": []int{}, "deleted": true}}}}
	asA := &peer{name: "a.test", keyID: "ed25519:forged", priv: forged}
	testenv.WantError(t, asA.do(t, urlB, "b.test", "PUT", "/_matrix/federation/v1/send/forged1", forgedTxn, nil), 401, "M_UNAUTHORIZED")
	if got := bCache(); got != "LAPTOP=Laptop (while B was down),TABLET=y" {
		t.Fatalf("a forged transaction changed B's cache: %q", got)
	}
}
