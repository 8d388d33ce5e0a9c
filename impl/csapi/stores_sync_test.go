package csapi_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// TestAccountDataReachesSyncAndWakesItsLongPoll needs /sync (issue 14)
// with accountdata wired in app: the Service's Waker publishing the user's
// wake-up and its SyncEvents as the account data source. It skips, saying
// so, while /sync answers 501 M_UNRECOGNIZED.
func TestAccountDataReachesSyncAndWakesItsLongPoll(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", "correct horse battery")
		other := testenv.Login(t, s, "@alice:"+s.Config.ServerName, "OTHER")
		alice := "@alice:" + s.Config.ServerName
		put := func(typ, body string) {
			testenv.WantStatus(t, s.Do(t, "PUT", "/_matrix/client/v3/user/"+url.PathEscape(alice)+"/account_data/"+typ, tok, body), 200)
		}
		put("m.a", `{"v":1}`)
		r := s.Do(t, "GET", "/_matrix/client/v3/sync", other, nil)
		if r.Status == 501 && r.Str("errcode") == "M_UNRECOGNIZED" {
			t.Skip("/sync is not served yet (issue 14)")
		}
		testenv.WantStatus(t, r, 200)
		if !strings.Contains(string(r.Raw), `{"type":"m.a","content":{"v":1}}`) {
			t.Fatalf("initial sync lacks account data: %s", r.Raw)
		}
		since := r.Str("next_batch")
		done := make(chan testenv.Response, 1)
		start := time.Now()
		go func() {
			done <- s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=10000&since="+url.QueryEscape(since), other, nil)
		}()
		time.Sleep(300 * time.Millisecond)
		put("m.b", `{"v":2}`)
		r = <-done
		if time.Since(start) > 3*time.Second {
			t.Fatalf("long poll not woken: %v", time.Since(start))
		}
		if !strings.Contains(string(r.Raw), `"m.b"`) || strings.Contains(string(r.Raw), `"m.a"`) {
			t.Fatalf("incremental sync: %s", r.Raw)
		}
	})
}
