package e2ekeys_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func streamLen(t *testing.T, st *storage.Store, user string) int64 {
	t.Helper()
	n, err := st.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Where("user_id = ?", user).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUploadedDeviceKeysAreServedWithDisplayNameAndCountAsADeviceChange(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice := "@alice:" + s.Config.ServerName
		tok := login(t, s, alice, "PHONE")
		if _, err := s.App.Store.DB.NewUpdate().Model((*storage.Device)(nil)).Set("display_name = ?", "Alice's phone").
			Where("user_id = ?", alice).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		keys, _ := testenv.SignedDeviceKeys(t, alice, "PHONE")
		before := streamLen(t, s.App.Store, alice)
		r := s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, map[string]any{
			"device_keys":   keys,
			"one_time_keys": map[string]any{"signed_curve25519:AAAAAQ": otk(alice, "k1"), "curve25519:AAAAAg": "k2"},
		})
		testenv.WantStatus(t, r, 200)
		if got := fmt.Sprint(r.Body["one_time_key_counts"]); got != "map[curve25519:1 signed_curve25519:1]" {
			t.Fatalf("counts %s", got)
		}
		if streamLen(t, s.App.Store, alice) != before+1 {
			t.Fatal("uploading device keys recorded no device-list change")
		}
		// The same keys again change nothing.
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, map[string]any{"device_keys": keys}), 200)
		if streamLen(t, s.App.Store, alice) != before+1 {
			t.Fatal("re-uploading identical keys recorded a change")
		}

		r = s.Do(t, "POST", "/_matrix/client/v3/keys/query", tok, map[string]any{"device_keys": map[string]any{alice: []string{}}})
		testenv.WantStatus(t, r, 200)
		dev, _ := r.Body["device_keys"].(map[string]any)[alice].(map[string]any)["PHONE"].(map[string]any)
		if dev == nil {
			t.Fatalf("query lacks the device: %s", r.Raw)
		}
		if dev["unsigned"].(map[string]any)["device_display_name"] != "Alice's phone" {
			t.Fatalf("no display name: %s", r.Raw)
		}
		var uploaded map[string]any
		_ = json.Unmarshal(keys, &uploaded)
		if fmt.Sprint(dev["signatures"]) != fmt.Sprint(uploaded["signatures"]) || fmt.Sprint(dev["keys"]) != fmt.Sprint(uploaded["keys"]) {
			t.Fatalf("served keys differ from the uploaded ones: %s", r.Raw)
		}
	})
}

func TestUploadRefusesKeysNotSignedByTheCallingDevice(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice := "@alice:" + s.Config.ServerName
		tok := login(t, s, alice, "PHONE")
		good, _ := testenv.SignedDeviceKeys(t, alice, "PHONE")
		other, _ := testenv.SignedDeviceKeys(t, alice, "LAPTOP")
		tampered := strings.Replace(string(good), "m.megolm.v1.aes-sha2", "m.megolm.v2.aes-sha2", 1)
		var obj map[string]any
		_ = json.Unmarshal(good, &obj)
		obj["signatures"] = map[string]any{}
		unsigned, _ := json.Marshal(obj)
		for name, keys := range map[string]string{
			"another device's keys": string(other),
			"tampered":              tampered,
			"unsigned":              string(unsigned),
		} {
			t.Run(name, func(t *testing.T) {
				r := s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, `{"device_keys":`+keys+`}`)
				testenv.WantError(t, r, 400, "M_INVALID_PARAM")
			})
		}
		if n, _ := s.App.Store.R.NewSelect().Model((*storage.DeviceKeys)(nil)).Count(context.Background()); n != 0 {
			t.Fatalf("%d device keys stored", n)
		}
	})
}

func TestOneTimeKeyWithChangedContentIsRefused(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok := login(t, s, "@alice:"+s.Config.ServerName, "PHONE")
		up := func(v string) testenv.Response {
			return s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, map[string]any{"one_time_keys": map[string]any{"curve25519:A": v}})
		}
		testenv.WantStatus(t, up("one"), 200)
		testenv.WantStatus(t, up("one"), 200) // a retry
		testenv.WantError(t, up("two"), 400, "M_INVALID_PARAM")
		r := s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, map[string]any{"one_time_keys": map[string]any{"nocolon": "x"}})
		testenv.WantError(t, r, 400, "M_BAD_JSON")
	})
}

func TestEachOneTimeKeyIsClaimedOnceUnderConcurrency(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice := "@alice:" + s.Config.ServerName
		tok := login(t, s, alice, "PHONE")
		otks := map[string]any{}
		for i := range 20 {
			otks[fmt.Sprintf("signed_curve25519:K%02d", i)] = otk(alice, fmt.Sprintf("key%02d", i))
		}
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, map[string]any{"one_time_keys": otks}), 200)
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.Do(t, "POST", "/_matrix/client/v3/keys/claim", tok, map[string]any{
					"one_time_keys": map[string]any{alice: map[string]string{"PHONE": "signed_curve25519"}}})
				if r.Status != 200 {
					t.Errorf("claim: %d %s", r.Status, r.Raw)
					return
				}
				devs, _ := r.Body["one_time_keys"].(map[string]any)[alice].(map[string]any)
				keys, _ := devs["PHONE"].(map[string]any) // absent once all are claimed
				for id := range keys {
					mu.Lock()
					got[id]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(got) != 20 {
			t.Fatalf("%d distinct keys claimed, want all 20: %v", len(got), got)
		}
		for id, n := range got {
			if n != 1 {
				t.Fatalf("key %s handed out %d times", id, n)
			}
		}
	})
}

func TestKeyRequestsWithBadInputGetMatrixErrors(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	tok := login(t, s, "@alice:"+s.Config.ServerName, "PHONE")
	for _, path := range []string{"/_matrix/client/v3/keys/query", "/_matrix/client/v3/keys/claim"} {
		testenv.WantError(t, s.Do(t, "POST", path, tok, nil), 400, "M_NOT_JSON")
		testenv.WantError(t, s.Do(t, "POST", path, tok, map[string]any{}), 400, "M_BAD_JSON")
	}
	r := s.Do(t, "POST", "/_matrix/client/v3/keys/query", tok, map[string]any{"device_keys": map[string]any{"not-a-user": []string{}}})
	testenv.WantError(t, r, 400, "M_INVALID_PARAM")
	r = s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, `{"device_keys":{"user_id":"@alice:`+s.Config.ServerName+`","device_id":"PHONE","algorithms":["a"],"keys":{},"signatures":{}}}`)
	testenv.WantError(t, r, 400, "M_BAD_JSON")
}

// otk is a signed one-time key object as the v1.19 schema requires (the
// server does not check one-time key signatures: claimers do).
func otk(userID, key string) map[string]any {
	return map[string]any{"key": key, "signatures": map[string]any{userID: map[string]string{"ed25519:PHONE": "c2ln"}}}
}

func login(t *testing.T, s *testenv.Server, userID, deviceID string) string {
	return testenv.IssueToken(t, s.App.Store, s.App.Devices, userID, deviceID)
}
