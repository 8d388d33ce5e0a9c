package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// scaleOutConfig is the YAML both processes share: open registration,
// cheap hashing, a failed-login limit of three per account (the other
// limits are per process and set out of the way), and remote.test, served
// by the test at the URL filled in, as a federation peer that receives
// every device-list update.
const scaleOutConfig = `
server_name: localhost
registration: open
argon2: {memory_kib: 1024, iterations: 1, parallelism: 1}
rate_limit:
  enabled: true
  per_ip: {rate: 1000, burst: 1000}
  per_account: {rate: 1000, burst: 1000}
  failed_login: {rate: 0.001, burst: 3}
federation_peers: [remote.test]
federation_resolve: {remote.test: "%s"}
`

// eduRecorder plays remote.test: it accepts every transaction and records
// the device-list updates of each transaction ID once (a retried
// transaction is the same delivery).
type eduRecorder struct {
	mu   sync.Mutex
	txns map[string]bool
	edus map[string][]int64 // user → stream IDs in arrival order
}

func newEDURecorder(t *testing.T) (*eduRecorder, string) {
	r := &eduRecorder{txns: map[string]bool{}, edus: map[string][]int64{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		txnID, ok := strings.CutPrefix(req.URL.Path, "/_matrix/federation/v1/send/")
		var txn struct {
			EDUs []struct {
				Type    string `json:"edu_type"`
				Content struct {
					UserID   string `json:"user_id"`
					StreamID int64  `json:"stream_id"`
				} `json:"content"`
			} `json:"edus"`
		}
		if !ok || req.Method != "PUT" || json.NewDecoder(req.Body).Decode(&txn) != nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		r.mu.Lock()
		if !r.txns[txnID] {
			r.txns[txnID] = true
			for _, e := range txn.EDUs {
				if e.Type == "m.device_list_update" {
					r.edus[e.Content.UserID] = append(r.edus[e.Content.UserID], e.Content.StreamID)
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"pdus":{}}`))
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func (r *eduRecorder) streamIDs(user string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.edus[user]...)
}

func register(t *testing.T, base, user string) testenv.Response {
	t.Helper()
	return testenv.Do(t, base, "POST", v3+"/register", "", map[string]any{
		"username": user, "password": pwd, "auth": map[string]any{"type": "m.login.dummy"}})
}

func login(t *testing.T, base, user, password string) testenv.Response {
	t.Helper()
	return testenv.Do(t, base, "POST", v3+"/login", "", passwordLogin(user, password))
}

func passwordAuth(user string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": pwd,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

// cachedOn makes sure token is valid on base and in its token cache.
func cachedOn(t *testing.T, base, token string) {
	t.Helper()
	for range 2 {
		testenv.WantStatus(t, testenv.Do(t, base, "GET", v3+"/account/whoami", token, nil), 200)
	}
}

// Several identical processes on one PostgreSQL, with no sticky sessions,
// behave as one server (issue 7: scale-out).
func TestTwoProcessesOnOnePostgreSQLBehaveAsOneServer(t *testing.T) {
	testenv.RequireBackend(t, testenv.Postgres)
	dsn := testenv.NewDatabase(t, testenv.Postgres)
	remote, remoteURL := newEDURecorder(t)
	cfg := filepath.Join(t.TempDir(), "myelin.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, scaleOutConfig, remoteURL), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := testenv.BuildMyelin(t)
	a := testenv.StartProcess(t, bin, "--config", cfg, "--database", dsn)
	b := testenv.StartProcess(t, bin, "--config", cfg, "--database", dsn)

	t.Run("a UIA session started on one completes on the other", func(t *testing.T) {
		testenv.WantStatus(t, register(t, a.URL, "alice"), 200)
		r := login(t, b.URL, "alice", pwd)
		testenv.WantStatus(t, r, 200)
		tok, dev := r.Str("access_token"), r.Str("device_id")
		cachedOn(t, a.URL, tok)
		r = testenv.Do(t, a.URL, "DELETE", v3+"/devices/"+dev, tok, map[string]any{})
		testenv.WantStatus(t, r, 401)
		auth := passwordAuth("alice")
		auth["session"] = r.Str("session")
		testenv.WantStatus(t, testenv.Do(t, b.URL, "DELETE", v3+"/devices/"+dev, tok, map[string]any{"auth": auth}), 200)
		done := time.Now()
		// Deleting the device revoked its token: at once where it was
		// deleted, within a second on the other process.
		testenv.WantError(t, testenv.Do(t, b.URL, "GET", v3+"/account/whoami", tok, nil), 401, "M_UNKNOWN_TOKEN")
		testenv.WantTokenRefusedWithin(t, a.URL, tok, done, testenv.RevocationDelay)
	})

	t.Run("a logout on one is honoured by the other within a second", func(t *testing.T) {
		testenv.WantStatus(t, register(t, a.URL, "carol"), 200)
		r := login(t, a.URL, "carol", pwd)
		testenv.WantStatus(t, r, 200)
		tok := r.Str("access_token")
		cachedOn(t, b.URL, tok)
		testenv.WantStatus(t, testenv.Do(t, a.URL, "POST", v3+"/logout", tok, map[string]any{}), 200)
		testenv.WantTokenRefusedWithin(t, b.URL, tok, time.Now(), testenv.RevocationDelay)
	})

	t.Run("a password change on one logs devices out on the other within a second", func(t *testing.T) {
		testenv.WantStatus(t, register(t, a.URL, "dave"), 200)
		r := login(t, a.URL, "dave", pwd)
		testenv.WantStatus(t, r, 200)
		other := r.Str("access_token")
		r = login(t, b.URL, "dave", pwd)
		testenv.WantStatus(t, r, 200)
		caller := r.Str("access_token")
		cachedOn(t, a.URL, other)
		cachedOn(t, a.URL, caller)
		testenv.WantStatus(t, testenv.Do(t, b.URL, "POST", v3+"/account/password", caller,
			map[string]any{"new_password": "another passphrase", "auth": passwordAuth("dave")}), 200)
		testenv.WantTokenRefusedWithin(t, a.URL, other, time.Now(), testenv.RevocationDelay)
		testenv.WantStatus(t, testenv.Do(t, a.URL, "GET", v3+"/account/whoami", caller, nil), 200)
	})

	t.Run("the same username registered on both at once succeeds once", func(t *testing.T) {
		for i := range 10 {
			user := fmt.Sprintf("race%d", i)
			var wg sync.WaitGroup
			rs := make([]testenv.Response, 2)
			for j, p := range []*testenv.Process{a, b} {
				wg.Add(1)
				go func() { defer wg.Done(); rs[j] = register(t, p.URL, user) }()
			}
			wg.Wait()
			won := 0
			for _, r := range rs {
				if r.Status == 200 {
					won++
				} else {
					testenv.WantError(t, r, 400, "M_USER_IN_USE")
				}
			}
			if won != 1 {
				t.Fatalf("%s: %d registrations succeeded, want 1: %s / %s", user, won, rs[0].Raw, rs[1].Raw)
			}
		}
	})

	t.Run("failed logins per account are limited across both", func(t *testing.T) {
		testenv.WantStatus(t, register(t, a.URL, "erin"), 200)
		// The limit is three failures; they go to alternate processes.
		for i, p := range []*testenv.Process{a, b, a} {
			if r := login(t, p.URL, "erin", fmt.Sprintf("wrong %d", i)); r.Status != 403 {
				t.Fatalf("failed login %d: %d %s", i+1, r.Status, r.Raw)
			}
		}
		for _, p := range []*testenv.Process{b, a} {
			r := login(t, p.URL, "erin", "wrong again")
			testenv.WantError(t, r, 429, "M_LIMIT_EXCEEDED")
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %v", r.Header)
			}
		}
	})

	t.Run("a to-device message sent on one wakes a long poll on the other", func(t *testing.T) {
		r := register(t, a.URL, "grace")
		testenv.WantStatus(t, r, 200)
		sender := r.Str("access_token")
		r = register(t, b.URL, "heidi")
		testenv.WantStatus(t, r, 200)
		recv, dev := r.Str("access_token"), r.Str("device_id")
		r = testenv.Do(t, b.URL, "GET", v3+"/sync", recv, nil)
		testenv.WantStatus(t, r, 200)
		since := r.Str("next_batch")
		var lat []time.Duration
		for i := range 5 {
			type answer struct {
				r  testenv.Response
				at time.Time
			}
			ch := make(chan answer, 1)
			go func() {
				r := testenv.Do(t, b.URL, "GET", v3+"/sync?timeout=20000&since="+url.QueryEscape(since), recv, nil)
				ch <- answer{r, time.Now()}
			}()
			time.Sleep(200 * time.Millisecond) // the poll is waiting
			testenv.WantStatus(t, testenv.Do(t, a.URL, "PUT", fmt.Sprintf("%s/sendToDevice/m.test/t%d", v3, i), sender,
				map[string]any{"messages": map[string]any{"@heidi:localhost": map[string]any{dev: map[string]any{"i": i}}}}), 200)
			sent := time.Now()
			got := <-ch
			testenv.WantStatus(t, got.r, 200)
			td, _ := got.r.Body["to_device"].(map[string]any)
			if evs, _ := td["events"].([]any); len(evs) != 1 {
				t.Fatalf("poll %d answered %s", i, got.r.Raw)
			}
			lat = append(lat, got.at.Sub(sent))
			since = got.r.Str("next_batch")
		}
		slices.Sort(lat)
		t.Logf("answers after the send returned: %v", lat)
		if lat[2] > 100*time.Millisecond {
			t.Fatalf("median wake-up across processes %v, want under 100ms (%v)", lat[2], lat)
		}
	})

	t.Run("each device-list update is sent once by one of them", func(t *testing.T) {
		testenv.WantStatus(t, register(t, a.URL, "frank"), 200)
		r := login(t, b.URL, "frank", pwd)
		testenv.WantStatus(t, r, 200)
		tok, dev := r.Str("access_token"), r.Str("device_id")
		// Renames on both processes at once: each appends a change that
		// whichever process's sender gets to it delivers.
		var wg sync.WaitGroup
		for i := range 20 {
			p := []*testenv.Process{a, b}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				testenv.WantStatus(t, testenv.Do(t, p.URL, "PUT", v3+"/devices/"+dev, tok, map[string]any{"display_name": fmt.Sprintf("Phone %d", i)}), 200)
			}()
		}
		wg.Wait()
		// Registration and login made devices 1 and 2, the renames 3…22.
		want := make([]int64, 22)
		for i := range want {
			want[i] = int64(i + 1)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(remote.streamIDs("@frank:localhost")) < len(want) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // a duplicate would arrive meanwhile
		if got := remote.streamIDs("@frank:localhost"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("remote.test received stream IDs %v, want each of 1…22 once, in order", got)
		}
	})
}
