package federation_test

import (
	"context"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestPeersQueryAndClaimLocalKeysAndBecomeSubscribers(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		origin := newPeer(t, "origin.test")
		s := testenv.Start(t, b, func(c *config.Config) {
			c.ServerName = "s.test"
			c.PublishDeviceNames = false
			c.FederationResolve = map[string]string{"origin.test": origin.srv.URL}
		})
		tok := login(t, s, "@alice:s.test", "PHONE")
		if _, err := s.App.Store.DB.NewUpdate().Model((*storage.Device)(nil)).Set("display_name = 'Secret name'").
			Where("user_id = '@alice:s.test'").Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		keys, _ := testenv.SignedDeviceKeys(t, "@alice:s.test", "PHONE")
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok,
			`{"device_keys":`+string(keys)+`,"one_time_keys":{"signed_curve25519:AAAA":{"key":"otk","signatures":{"@alice:s.test":{"ed25519:PHONE":"sig"}}}}}`), 200)

		r := origin.do(t, s.URL, "s.test", "POST", "/_matrix/federation/v1/user/keys/query",
			map[string]any{"device_keys": map[string]any{"@alice:s.test": []string{}, "@bob:origin.test": []string{}}}, nil)
		testenv.WantStatus(t, r, 200)
		dev, _ := r.Body["device_keys"].(map[string]any)["@alice:s.test"].(map[string]any)["PHONE"].(map[string]any)
		if dev == nil || dev["unsigned"] != nil || len(r.Body["device_keys"].(map[string]any)) != 1 {
			t.Fatalf("keys query answer (names withheld, local users only): %s", r.Raw)
		}
		n, _ := s.App.Store.R.NewSelect().Model((*storage.DeviceListSubscriber)(nil)).
			Where("user_id = '@alice:s.test' AND server_name = 'origin.test'").Count(context.Background())
		if n != 1 {
			t.Fatal("the querying server was not subscribed")
		}

		// The user ID percent-encoded in the path, as Synapse sends it.
		r = origin.do(t, s.URL, "s.test", "GET", "/_matrix/federation/v1/user/devices/%40alice%3As.test", nil, nil)
		testenv.WantStatus(t, r, 200)
		d0 := r.Body["devices"].([]any)[0].(map[string]any)
		if r.Str("user_id") != "@alice:s.test" || d0["keys"] == nil || d0["device_display_name"] != nil || r.Body["stream_id"] != float64(2) {
			t.Fatalf("user devices answer: %s", r.Raw)
		}

		claim := map[string]any{"one_time_keys": map[string]any{"@alice:s.test": map[string]string{"PHONE": "signed_curve25519"}}}
		r = origin.do(t, s.URL, "s.test", "POST", "/_matrix/federation/v1/user/keys/claim", claim, nil)
		testenv.WantStatus(t, r, 200)
		if k, _ := r.Body["one_time_keys"].(map[string]any)["@alice:s.test"].(map[string]any)["PHONE"].(map[string]any)["signed_curve25519:AAAA"].(map[string]any); k["key"] != "otk" {
			t.Fatalf("claim answer: %s", r.Raw)
		}
		r = origin.do(t, s.URL, "s.test", "POST", "/_matrix/federation/v1/user/keys/claim", claim, nil)
		if len(r.Body["one_time_keys"].(map[string]any)) != 0 {
			t.Fatalf("a one-time key was handed out twice: %s", r.Raw)
		}
	})
}
