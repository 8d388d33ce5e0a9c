package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestSignedRequestsAreVerifiedAndBadOnesRefused(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		origin := newPeer(t, "origin.test")
		expired := newPeer(t, "expired.test")
		expired.validUntil = time.Now().Add(-time.Minute)
		badSelf := newPeer(t, "badsig.test")
		badSelf.badSelfSig = true
		s := testenv.Start(t, b, func(c *config.Config) {
			c.ServerName = "s.test"
			c.FederationResolve = map[string]string{
				"origin.test": origin.srv.URL, "expired.test": expired.srv.URL,
				"badsig.test": badSelf.srv.URL, "down.test": "http://127.0.0.1:1",
			}
		})
		login(t, s, "@alice:s.test", "PHONE")
		const path = "/_matrix/federation/v1/user/devices/@alice:s.test"

		r := origin.do(t, s.URL, "s.test", "GET", path, nil, nil)
		testenv.WantStatus(t, r, 200)
		// PHONE has uploaded no identity keys, so it is not listed: the
		// spec requires keys on every device of this answer.
		if r.Str("user_id") != "@alice:s.test" || r.Body["stream_id"] != float64(1) || len(r.Body["devices"].([]any)) != 0 {
			t.Fatalf("unexpected devices answer: %s", r.Raw)
		}
		testenv.WantStatus(t, origin.do(t, s.URL, "s.test", "GET", path, nil, nil), 200)
		if n := origin.keyFetches.Load(); n != 1 {
			t.Fatalf("origin's keys fetched %d times for two requests, want 1 (cached)", n)
		}

		_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
		signAs := func(origin, dest string, keyID signing.KeyID, priv ed25519.PrivateKey, uri string) func(string, string, []byte) string {
			return func(method, u string, content []byte) string {
				if uri != "" {
					u = uri
				}
				h, err := signing.SignRequest(origin, dest, keyID, priv, method, u, content)
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
		}
		fixed := func(h string) func(string, string, []byte) string {
			return func(string, string, []byte) string { return h }
		}
		cases := map[string]func(string, string, []byte) string{
			"no authorization":            fixed(""),
			"bearer token":                fixed("Bearer abc"),
			"malformed header":            fixed(`X-Matrix origin=origin.test,key="ed25519:test1"`),
			"another destination":         signAs("origin.test", "other.test", origin.keyID, origin.priv, ""),
			"signed by someone else":      signAs("origin.test", "s.test", origin.keyID, otherKey, ""),
			"tampered (other URI signed)": signAs("origin.test", "s.test", origin.keyID, origin.priv, "/_matrix/federation/v1/user/devices/@bob:s.test"),
			"unknown key":                 signAs("origin.test", "s.test", "ed25519:nope", origin.priv, ""),
			"expired key":                 signAs("expired.test", "s.test", expired.keyID, expired.priv, ""),
			"key document badly signed":   signAs("badsig.test", "s.test", badSelf.keyID, badSelf.priv, ""),
			"origin unreachable":          signAs("down.test", "s.test", "ed25519:x", otherKey, ""),
			"origin is ourselves":         signAs("s.test", "s.test", "ed25519:x", otherKey, ""),
		}
		for name, auth := range cases {
			t.Run(name, func(t *testing.T) {
				r := origin.do(t, s.URL, "s.test", "GET", path, nil, auth)
				testenv.WantError(t, r, 401, "M_UNAUTHORIZED")
				t.Log(r.Str("error"))
			})
		}

		// A refused transaction changes nothing.
		txn := map[string]any{"origin": "origin.test", "origin_server_ts": 1, "pdus": []any{},
			"edus": []any{map[string]any{"edu_type": "m.device_list_update", "content": map[string]any{
				"user_id": "@bob:origin.test", "device_id": "X", "stream_id": 1, "prev_id": []int{}}}}}
		r = origin.do(t, s.URL, "s.test", "PUT", "/_matrix/federation/v1/send/t1", txn,
			signAs("origin.test", "s.test", origin.keyID, otherKey, ""))
		testenv.WantError(t, r, 401, "M_UNAUTHORIZED")
		for _, model := range []any{(*storage.ReceivedTxn)(nil), (*storage.RemoteDeviceList)(nil), (*storage.RemoteDevice)(nil)} {
			if n, _ := s.App.Store.R.NewSelect().Model(model).Count(context.Background()); n != 0 {
				t.Fatalf("a refused transaction left %d rows of %T", n, model)
			}
		}
		// The same transaction properly signed is applied.
		testenv.WantStatus(t, origin.do(t, s.URL, "s.test", "PUT", "/_matrix/federation/v1/send/t1", txn, nil), 200)
		if n, _ := s.App.Store.R.NewSelect().Model((*storage.RemoteDevice)(nil)).Count(context.Background()); n != 1 {
			t.Fatalf("signed transaction not applied: %d remote devices", n)
		}
	})
}

func TestUserDevicesOfAnUnknownUserIsAnEmptyListNotAnError(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		origin := newPeer(t, "origin.test")
		s := testenv.Start(t, b, func(c *config.Config) {
			c.ServerName = "s.test"
			c.FederationResolve = map[string]string{"origin.test": origin.srv.URL}
		})
		// Any status but 200 makes Dendrite back off from this whole
		// server for an hour: an unknown user (ours or another server's)
		// has no devices.
		for _, user := range []string{"@nobody:s.test", "@bob:origin.test"} {
			r := origin.do(t, s.URL, "s.test", "GET", "/_matrix/federation/v1/user/devices/"+user, nil, nil)
			testenv.WantStatus(t, r, 200)
			if r.Str("user_id") != user || r.Body["stream_id"] != float64(0) || len(r.Body["devices"].([]any)) != 0 {
				t.Fatalf("answer for %s: %s", user, r.Raw)
			}
		}
		if n, _ := s.App.Store.R.NewSelect().Model((*storage.DeviceListSubscriber)(nil)).Count(context.Background()); n != 0 {
			t.Fatalf("%d subscriptions to users without accounts", n)
		}
		// A user ID that is not one is still a bad request.
		testenv.WantError(t, origin.do(t, s.URL, "s.test", "GET", "/_matrix/federation/v1/user/devices/nobody", nil, nil), 400, "M_INVALID_PARAM")
		// The user, once registered, is listed (and the origin subscribed).
		keys, _ := testenv.SignedDeviceKeys(t, "@nobody:s.test", "D1")
		tok := login(t, s, "@nobody:s.test", "D1")
		testenv.WantStatus(t, s.Do(t, "POST", "/_matrix/client/v3/keys/upload", tok, `{"device_keys":`+string(keys)+`}`), 200)
		r := origin.do(t, s.URL, "s.test", "GET", "/_matrix/federation/v1/user/devices/@nobody:s.test", nil, nil)
		if devs, _ := r.Body["devices"].([]any); len(devs) != 1 || r.Body["stream_id"] == float64(0) {
			t.Fatalf("answer once registered: %s", r.Raw)
		}
	})
}
