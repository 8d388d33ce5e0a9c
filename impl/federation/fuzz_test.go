package federation_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// FuzzSignedFederationBodiesGetMatrixErrorsNever500 sends arbitrary
// bodies, correctly signed by a known server, to every federation
// endpoint that takes one (any server on the internet can): the answer is
// a success or a Matrix error, never a 500.
func FuzzSignedFederationBodiesGetMatrixErrorsNever500(f *testing.F) {
	// Each seed is an endpoint (0 send, 1 keys query, 2 keys claim) and a
	// body; the first four are well formed.
	seeds := []struct {
		which uint8
		body  string
	}{
		{0, `{"origin":"origin.test","origin_server_ts":1,"pdus":[],"edus":[{"edu_type":"m.device_list_update","content":{"user_id":"@bob:origin.test","device_id":"D","stream_id":1,"prev_id":[],"deleted":false}}]}`},
		{0, `{"origin":"origin.test","origin_server_ts":1,"pdus":[{"event_id":"$x"}],"edus":[{"edu_type":"m.direct_to_device","content":{}}]}`},
		{1, `{"device_keys":{"@alice:s.test":[],"@bob:origin.test":["X"]}}`},
		{2, `{"one_time_keys":{"@alice:s.test":{"PHONE":"signed_curve25519"}}}`},
		{0, `{"edus":[{"edu_type":"m.device_list_update","content":{"user_id":"@bob:elsewhere.test","stream_id":-1,"prev_id":[1e20]}}]}`},
		{0, `{}`}, {1, `[]`}, {2, `null`}, {0, `"x"`}, {0, `{"pdus":"x"}`}, {1, "\xff"},
	}
	for _, sd := range seeds {
		f.Add(sd.which, []byte(sd.body))
	}
	origin := newPeer(f, "origin.test")
	s := testenv.Start(f, testenv.SQLite, func(c *config.Config) {
		c.ServerName = "s.test"
		c.FederationResolve = map[string]string{"origin.test": origin.srv.URL}
	})
	login(f, s, "@alice:s.test", "PHONE")
	var txn atomic.Int64
	send := func(t testing.TB, which uint8, body []byte) (string, string, testenv.Response) {
		var method, path string
		switch which % 3 {
		case 0:
			method, path = "PUT", fmt.Sprintf("/_matrix/federation/v1/send/fuzz%d", txn.Add(1))
		case 1:
			method, path = "POST", "/_matrix/federation/v1/user/keys/query"
		default:
			method, path = "POST", "/_matrix/federation/v1/user/keys/claim"
		}
		h, err := signing.SignRequest("origin.test", "s.test", origin.keyID, origin.priv, method, path, body)
		if err != nil {
			// Not JSON, or JSON with no canonical form (1e20 as an
			// integer): signed as if empty, which does not match.
			if h, err = signing.SignRequest("origin.test", "s.test", origin.keyID, origin.priv, method, path, nil); err != nil {
				t.Fatal(err)
			}
		}
		req, err := http.NewRequest(method, s.URL+path, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", h)
		req.Header.Set("Content-Type", "application/json")
		return method, path, testenv.DoRequest(t, req)
	}
	// The signatures are good: a well-formed request is served.
	for i := range 4 {
		if _, path, r := send(f, seeds[i].which, []byte(seeds[i].body)); r.Status != 200 {
			f.Fatalf("seed %d to %s: %d %s", i, path, r.Status, r.Raw)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		method, path, r := send(t, which, body)
		if r.Status >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, r.Status, r.Raw)
		}
		if r.Status >= 400 && (!strings.HasPrefix(r.Str("errcode"), "M_") || r.Str("error") == "") {
			t.Fatalf("%s %s %q: %d answered %s, not a Matrix error", method, path, body, r.Status, r.Raw)
		}
	})
}
