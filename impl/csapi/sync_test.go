package csapi_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func syncPath(since string, timeoutMS int) string {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if timeoutMS > 0 {
		q.Set("timeout", fmt.Sprint(timeoutMS))
	}
	return v3 + "/sync?" + q.Encode()
}

// toDevice returns the contents of to_device.events of a /sync answer.
func toDevice(t *testing.T, r testenv.Response) []map[string]any {
	t.Helper()
	testenv.WantStatus(t, r, 200)
	var body struct {
		ToDevice struct {
			Events []map[string]any `json:"events"`
		} `json:"to_device"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	return body.ToDevice.Events
}

func changedUsers(t *testing.T, r testenv.Response) string {
	t.Helper()
	dl, _ := r.Body["device_lists"].(map[string]any)
	return fmt.Sprint(dl["changed"])
}

func sendToDevice(t *testing.T, s *testenv.Server, token, evType, txn string, messages map[string]map[string]any) testenv.Response {
	t.Helper()
	return s.Do(t, "PUT", v3+"/sendToDevice/"+url.PathEscape(evType)+"/"+url.PathEscape(txn), token, map[string]any{"messages": messages})
}

func TestSendToDeviceReachesTheDevicesSyncOnceAndIsAcknowledgedByTheNextSince(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		aliceTok, _ := testenv.CreateUser(t, s, "alice", "alice-password")
		bobTok, bobDev := testenv.CreateUser(t, s, "bob", "bob-password")
		bob := "@bob:" + s.Config.ServerName
		// Large integers pass through untouched.
		r := sendToDevice(t, s, aliceTok, "m.key.verification.request", "txn1",
			map[string]map[string]any{bob: {bobDev: map[string]any{"n": json.Number("9007199254740993"), "from_device": "A"}}})
		testenv.WantStatus(t, r, 200)
		if string(r.Raw) != "{}" && !strings.HasPrefix(string(r.Raw), "{}") {
			t.Fatalf("sendToDevice answered %s", r.Raw)
		}
		// A retransmission is not delivered twice.
		testenv.WantStatus(t, sendToDevice(t, s, aliceTok, "m.key.verification.request", "txn1",
			map[string]map[string]any{bob: {bobDev: map[string]any{"n": 2}}}), 200)

		first := s.Do(t, "GET", syncPath("", 0), bobTok, nil)
		evs := toDevice(t, first)
		if len(evs) != 1 || evs[0]["sender"] != "@alice:"+s.Config.ServerName || evs[0]["type"] != "m.key.verification.request" ||
			!strings.Contains(string(first.Raw), `"n":9007199254740993`) {
			t.Fatalf("initial sync: %s", first.Raw)
		}
		for _, key := range []string{"rooms", "presence", "account_data", "device_one_time_keys_count", "device_unused_fallback_key_types"} {
			if _, ok := first.Body[key]; !ok {
				t.Fatalf("initial sync lacks %s: %s", key, first.Raw)
			}
		}
		next := s.Do(t, "GET", syncPath(first.Str("next_batch"), 0), bobTok, nil)
		if evs := toDevice(t, next); len(evs) != 0 {
			t.Fatalf("delivered again: %s", next.Raw)
		}
		n, err := s.App.Store.R.NewSelect().Table("to_device_messages").Count(t.Context())
		if err != nil || n != 0 {
			t.Fatalf("%d messages left after acknowledgement (%v)", n, err)
		}
	})
}

// TestSyncLongPollIsWokenByASendToDevice: the poll answers on the message,
// long before its timeout. (The 100 ms bound is checked in impl/syncstream
// and measured by the bench: here every answer also goes through the
// test-only response validator, which spends tens of milliseconds on the
// large /sync schema.)
func TestSyncLongPollIsWokenByASendToDevice(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		aliceTok, _ := testenv.CreateUser(t, s, "alice", "alice-password")
		bobTok, _ := testenv.CreateUser(t, s, "bob", "bob-password")
		bob := "@bob:" + s.Config.ServerName
		since := s.Do(t, "GET", syncPath("", 0), bobTok, nil).Str("next_batch")
		type result struct {
			r  testenv.Response
			at time.Time
		}
		var lat []time.Duration
		for i := range 5 {
			ch := make(chan result, 1)
			go func() {
				r := s.Do(t, "GET", syncPath(since, 20000), bobTok, nil)
				ch <- result{r, time.Now()}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for s.App.Wake.Waiting() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			testenv.WantStatus(t, sendToDevice(t, s, aliceTok, "m.test", fmt.Sprint("t", i), map[string]map[string]any{bob: {"*": map[string]any{"i": i}}}), 200)
			sent := time.Now()
			got := <-ch
			if evs := toDevice(t, got.r); len(evs) != 1 || evs[0]["type"] != "m.test" {
				t.Fatalf("long poll answered %s", got.r.Raw)
			}
			lat = append(lat, got.at.Sub(sent))
			since = got.r.Str("next_batch")
		}
		slices.Sort(lat)
		t.Logf("answers after the send returned: %v", lat)
		if lat[4] > 2*time.Second {
			t.Fatalf("a poll answered %v after the send: not woken by it (%v)", lat[4], lat)
		}
	})
}

func TestSyncLongPollReturnsEmptyAtItsTimeout(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		bobTok, _ := testenv.CreateUser(t, s, "bob", "bob-password")
		since := s.Do(t, "GET", syncPath("", 0), bobTok, nil).Str("next_batch")
		start := time.Now()
		r := s.Do(t, "GET", syncPath(since, 300), bobTok, nil)
		d := time.Since(start)
		if evs := toDevice(t, r); len(evs) != 0 || changedUsers(t, r) != "[]" || r.Str("next_batch") != since {
			t.Fatalf("timed-out poll: %s", r.Raw)
		}
		if d < 300*time.Millisecond || d > 3*time.Second {
			t.Fatalf("answered after %v, want the 300ms timeout", d)
		}
	})
}

func TestALoggedOutDevicesLongPollAndNextSyncAnswerUnknownToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		bobTok, _ := testenv.CreateUser(t, s, "bob", "bob-password")
		since := s.Do(t, "GET", syncPath("", 0), bobTok, nil).Str("next_batch")
		ch := make(chan testenv.Response, 1)
		go func() { ch <- s.Do(t, "GET", syncPath(since, 20000), bobTok, nil) }()
		deadline := time.Now().Add(5 * time.Second)
		for s.App.Wake.Waiting() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/logout", bobTok, map[string]any{}), 200)
		testenv.WantError(t, <-ch, 401, "M_UNKNOWN_TOKEN")
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the poll learnt of the logout after %v", d)
		}
		testenv.WantError(t, s.Do(t, "GET", syncPath(since, 0), bobTok, nil), 401, "M_UNKNOWN_TOKEN")
	})
}

func TestSyncReportsOwnDeviceChangesAndKeysChangesComparesTokens(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		bobTok, bobDev := testenv.CreateUser(t, s, "bob", "bob-password")
		bob := "@bob:" + s.Config.ServerName
		t1 := s.Do(t, "GET", syncPath("", 0), bobTok, nil).Str("next_batch")
		testenv.WantStatus(t, s.Do(t, "PUT", v3+"/devices/"+bobDev, bobTok, map[string]any{"display_name": "laptop"}), 200)
		r := s.Do(t, "GET", syncPath(t1, 5000), bobTok, nil)
		if changedUsers(t, r) != "["+bob+"]" {
			t.Fatalf("after a rename: %s", r.Raw)
		}
		t2 := r.Str("next_batch")
		kc := s.Do(t, "GET", v3+"/keys/changes?from="+url.QueryEscape(t1)+"&to="+url.QueryEscape(t2), bobTok, nil)
		testenv.WantStatus(t, kc, 200)
		if fmt.Sprint(kc.Body["changed"]) != "["+bob+"]" || fmt.Sprint(kc.Body["left"]) != "[]" {
			t.Fatalf("keys/changes: %s", kc.Raw)
		}
		kc = s.Do(t, "GET", v3+"/keys/changes?from="+url.QueryEscape(t2)+"&to="+url.QueryEscape(t2), bobTok, nil)
		if fmt.Sprint(kc.Body["changed"]) != "[]" {
			t.Fatalf("keys/changes with no change: %s", kc.Raw)
		}
		kc = s.Do(t, "GET", v3+"/keys/changes?from=bogus&to="+url.QueryEscape(t2), bobTok, nil)
		if fmt.Sprint(kc.Body["changed"]) != "["+bob+"]" {
			t.Fatalf("keys/changes from an unreadable token: %s", kc.Raw)
		}
		// An unreadable since starts over, as an initial sync.
		r = s.Do(t, "GET", syncPath("bogus", 5000), bobTok, nil)
		if _, ok := r.Body["device_lists"]; ok || r.Str("next_batch") == "" {
			t.Fatalf("sync from an unreadable token: %s", r.Raw)
		}
	})
}

func TestSendToDeviceRefusesBadRequestsWithMatrixErrors(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", "alice-password")
		testenv.WantError(t, s.Do(t, "PUT", v3+"/sendToDevice/m.test/1", tok, `{}`), 400, "M_BAD_JSON")
		testenv.WantError(t, sendToDevice(t, s, tok, "m.test", "2", map[string]map[string]any{"@x:" + s.Config.ServerName: {"D": map[string]any{"big": strings.Repeat("a", 70000)}}}), 413, "M_TOO_LARGE")
		testenv.WantError(t, s.Do(t, "PUT", v3+"/sendToDevice/m.test/3", "", map[string]any{"messages": map[string]any{}}), 401, "M_MISSING_TOKEN")
	})
}

// TestSendToDeviceCrossesFederationOnce: alice on A sends to bob's
// devices on B (named and "*"); B delivers each message once to bob's
// /sync, and a message claiming a sender of another server is dropped.
func TestSendToDeviceCrossesFederationOnce(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
		resolve := map[string]string{"a.test": "http://" + addrA, "b.test": "http://" + addrB}
		mk := func(name, addr string) func(c *config.Config) {
			return func(c *config.Config) {
				c.ServerName, c.Listen, c.FederationResolve = name, addr, resolve
			}
		}
		sa := testenv.Start(t, b, mk("a.test", addrA))
		sb := testenv.Start(t, b, mk("b.test", addrB))
		aliceTok, _ := testenv.CreateUser(t, sa, "alice", "alice-password")
		bobTok, bobDev := testenv.CreateUser(t, sb, "bob", "bob-password")
		since := sb.Do(t, "GET", syncPath("", 0), bobTok, nil).Str("next_batch")
		testenv.WantStatus(t, sendToDevice(t, sa, aliceTok, "m.room.encrypted", "t1",
			map[string]map[string]any{"@bob:b.test": {bobDev: map[string]any{"ciphertext": "one"}}}), 200)
		testenv.WantStatus(t, sendToDevice(t, sa, aliceTok, "m.room.encrypted", "t2",
			map[string]map[string]any{"@bob:b.test": {"*": map[string]any{"ciphertext": "two"}}}), 200)
		var got []map[string]any
		deadline := time.Now().Add(15 * time.Second)
		for len(got) < 2 && time.Now().Before(deadline) {
			r := sb.Do(t, "GET", syncPath(since, 2000), bobTok, nil)
			got = append(got, toDevice(t, r)...)
			since = r.Str("next_batch")
		}
		if len(got) != 2 {
			t.Fatalf("bob received %v", got)
		}
		for i, want := range []string{"one", "two"} {
			c, _ := got[i]["content"].(map[string]any)
			if got[i]["sender"] != "@alice:a.test" || got[i]["type"] != "m.room.encrypted" || c["ciphertext"] != want {
				t.Fatalf("event %d: %v", i, got[i])
			}
		}
		// Nothing more arrives (each EDU applied once).
		r := sb.Do(t, "GET", syncPath(since, 300), bobTok, nil)
		if evs := toDevice(t, r); len(evs) != 0 {
			t.Fatalf("delivered again: %s", r.Raw)
		}
	})
}

func TestAccountDataComesThroughSyncAndWakesALongPoll(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "bob", "bob-password")
		bob := "@bob:" + s.Config.ServerName
		path := v3 + "/user/" + url.PathEscape(bob) + "/account_data/org.example.settings"
		testenv.WantStatus(t, s.Do(t, "PUT", path, tok, map[string]any{"theme": "dark"}), 200)
		first := s.Do(t, "GET", syncPath("", 0), tok, nil)
		if !strings.Contains(string(first.Raw), `"type":"org.example.settings","content":{"theme":"dark"}`) {
			t.Fatalf("initial sync lacks the account data: %s", first.Raw)
		}
		ch := make(chan testenv.Response, 1)
		go func() { ch <- s.Do(t, "GET", syncPath(first.Str("next_batch"), 20000), tok, nil) }()
		deadline := time.Now().Add(5 * time.Second)
		for s.App.Wake.Waiting() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		testenv.WantStatus(t, s.Do(t, "PUT", path, tok, map[string]any{"theme": "light"}), 200)
		r := <-ch
		if !strings.Contains(string(r.Raw), `"content":{"theme":"light"}`) || time.Since(start) > 2*time.Second {
			t.Fatalf("long poll after %v: %s", time.Since(start), r.Raw)
		}
		if again := s.Do(t, "GET", syncPath(r.Str("next_batch"), 0), tok, nil); strings.Contains(string(again.Raw), "org.example.settings") {
			t.Fatalf("account data repeated: %s", again.Raw)
		}
	})
}
