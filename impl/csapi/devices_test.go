package csapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const v3 = "/_matrix/client/v3"

// noAutoFlush keeps last-seen updates buffered for the whole test, so a
// test decides when they reach the database.
func noAutoFlush(c *config.Config) { c.LastSeenFlushInterval = time.Hour }

// rawDevices decodes GET /devices keeping each device as raw key → JSON.
func rawDevices(t *testing.T, r testenv.Response) []map[string]json.RawMessage {
	t.Helper()
	testenv.WantStatus(t, r, 200)
	var body struct {
		Devices []map[string]json.RawMessage `json:"devices"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	return body.Devices
}

func dbDevice(t *testing.T, s *testenv.Server, userID, deviceID string) (storage.Device, bool) {
	t.Helper()
	var d storage.Device
	err := s.App.Store.R.NewSelect().Model(&d).Where("user_id = ? AND device_id = ?", userID, deviceID).Scan(context.Background())
	if err != nil {
		return d, false
	}
	return d, true
}

func streamLen(t *testing.T, s *testenv.Server, userID string) int {
	t.Helper()
	n, err := s.App.Store.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Where("user_id = ?", userID).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func TestDeviceListHasOnlyTheCallersDevicesNewestFirstWithEveryKey(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, noAutoFlush)
		alice, aliceDev := testenv.CreateUser(t, s, "alice", "alice-password")
		_, bobDev := testenv.CreateUser(t, s, "bob", "bob-password")
		// A device nobody has seen and nobody has named (e.g. imported):
		// its unknown values must be null, not missing.
		ghost := storage.Device{UserID: "@alice:localhost", DeviceID: "GHOST", CreatedTS: 1}
		if _, err := s.App.Store.DB.NewInsert().Model(&ghost).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		testenv.Login(t, s, "@alice:localhost", "OLDPHONE")
		past := time.Now().Add(-time.Hour).UnixMilli()
		if _, err := s.App.Store.DB.NewUpdate().Model((*storage.Device)(nil)).Set("last_seen_ts = ?", past).
			Where("device_id = ?", "OLDPHONE").Exec(context.Background()); err != nil {
			t.Fatal(err)
		}

		devs := rawDevices(t, s.Do(t, "GET", v3+"/devices", alice, nil))
		var ids []string
		for _, d := range devs {
			var id string
			_ = json.Unmarshal(d["device_id"], &id)
			ids = append(ids, id)
			for _, k := range []string{"device_id", "display_name", "last_seen_ip", "last_seen_ts"} {
				if _, ok := d[k]; !ok {
					t.Errorf("device %s lacks key %q", id, k)
				}
			}
		}
		if want := fmt.Sprint([]string{aliceDev, "OLDPHONE", "GHOST"}); fmt.Sprint(ids) != want {
			t.Fatalf("devices %v, want %s (newest first, never seen last; no %s of bob)", ids, want, bobDev)
		}
		g := devs[2]
		if string(g["display_name"]) != "null" || string(g["last_seen_ip"]) != "null" || string(g["last_seen_ts"]) != "null" {
			t.Fatalf("unknown values not null: %v", g)
		}
		if string(devs[0]["last_seen_ip"]) != `"127.0.0.1"` {
			t.Fatalf("caller's device last seen at %s", devs[0]["last_seen_ip"])
		}
	})
}

func TestUsersCannotSeeOrRenameEachOthersDevices(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, aliceDev := testenv.CreateUser(t, s, "alice", "alice-password")
		bob, bobDev := testenv.CreateUser(t, s, "bob", "bob-password")

		testenv.WantStatus(t, s.Do(t, "GET", v3+"/devices/"+aliceDev, alice, nil), 200)
		testenv.WantError(t, s.Do(t, "GET", v3+"/devices/"+bobDev, alice, nil), 404, "M_NOT_FOUND")
		testenv.WantError(t, s.Do(t, "GET", v3+"/devices/NOSUCHDEVICE", alice, nil), 404, "M_NOT_FOUND")
		testenv.WantError(t, s.Do(t, "GET", v3+"/devices/"+strings.Repeat("X", 600), alice, nil), 404, "M_NOT_FOUND")

		testenv.WantError(t, s.Do(t, "PUT", v3+"/devices/"+aliceDev, bob, map[string]any{"display_name": "pwned"}), 404, "M_NOT_FOUND")
		testenv.WantError(t, s.Do(t, "PUT", v3+"/devices/NOSUCHDEVICE", bob, map[string]any{"display_name": "x"}), 404, "M_NOT_FOUND")
		r := s.Do(t, "GET", v3+"/devices/"+aliceDev, alice, nil)
		if r.Body["display_name"] != nil {
			t.Fatalf("bob renamed alice's device: %s", r.Raw)
		}
		if streamLen(t, s, "@alice:localhost") != 1 {
			t.Fatal("a refused rename appended a device-list change")
		}
		if ds := rawDevices(t, s.Do(t, "GET", v3+"/devices", bob, nil)); len(ds) != 1 || string(ds[0]["device_id"]) != `"`+bobDev+`"` {
			t.Fatalf("bob sees %v", ds)
		}
	})
}

func TestRenameIsVisibleAtOnceAndRecordedInTheStream(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, dev := testenv.CreateUser(t, s, "alice", "alice-password")
		path := v3 + "/devices/" + dev

		r := s.Do(t, "PUT", path, alice, map[string]any{"display_name": "Jungle Phone"})
		testenv.WantStatus(t, r, 200)
		if string(r.Raw) != "{}\n" && string(r.Raw) != "{}" {
			t.Fatalf("rename answered %q, want {}", r.Raw)
		}
		if got := s.Do(t, "GET", path, alice, nil).Str("display_name"); got != "Jungle Phone" {
			t.Fatalf("display_name %q after rename", got)
		}
		if n := streamLen(t, s, "@alice:localhost"); n != 2 {
			t.Fatalf("%d stream rows after create and rename, want 2", n)
		}

		// No display_name, or the same one: nothing changes, no stream row.
		testenv.WantStatus(t, s.Do(t, "PUT", path, alice, map[string]any{}), 200)
		testenv.WantStatus(t, s.Do(t, "PUT", path, alice, map[string]any{"display_name": "Jungle Phone"}), 200)
		if n := streamLen(t, s, "@alice:localhost"); n != 2 {
			t.Fatalf("%d stream rows after no-op renames, want 2", n)
		}

		hundred := strings.Repeat("é", 100) // 100 characters, 200 bytes
		testenv.WantStatus(t, s.Do(t, "PUT", path, alice, map[string]any{"display_name": hundred}), 200)
		testenv.WantError(t, s.Do(t, "PUT", path, alice, map[string]any{"display_name": hundred + "x"}), 400, "M_TOO_LARGE")
		testenv.WantError(t, s.Do(t, "PUT", path, alice, map[string]any{"display_name": "a\u0000b"}), 400, "M_INVALID_PARAM")
		if got := s.Do(t, "GET", path, alice, nil).Str("display_name"); got != hundred {
			t.Fatalf("a refused rename changed the name to %q", got)
		}
	})
}

func TestDeviceEndpointsServeR0AndQueryToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, dev := testenv.CreateUser(t, s, "alice", "alice-password")
		r0 := "/_matrix/client/r0"
		if ds := rawDevices(t, s.Do(t, "GET", r0+"/devices?access_token="+alice, "", nil)); len(ds) != 1 {
			t.Fatalf("r0 list: %v", ds)
		}
		testenv.WantStatus(t, s.Do(t, "PUT", r0+"/devices/"+dev+"?access_token="+alice, "", map[string]any{"display_name": "nio"}), 200)
		if got := s.Do(t, "GET", r0+"/devices/"+dev, alice, nil).Str("display_name"); got != "nio" {
			t.Fatalf("r0 rename not visible: %q", got)
		}
		testenv.WantError(t, s.Do(t, "GET", r0+"/devices?access_token=wrong", "", nil), 401, "M_UNKNOWN_TOKEN")
		testenv.WantError(t, s.Do(t, "GET", v3+"/devices", "", nil), 401, "M_MISSING_TOKEN")
	})
}

// getFrom sends GET path with a bearer token and an X-Forwarded-For header.
func getFrom(t *testing.T, s *testenv.Server, path, token, xff string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Forwarded-For", xff)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
}

func TestLastSeenIsBufferedAndFlushedAtShutdown(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, noAutoFlush)
		alice, dev := testenv.CreateUser(t, s, "alice", "alice-password")
		created, _ := dbDevice(t, s, "@alice:localhost", dev)
		if created.LastSeenIP == nil || *created.LastSeenIP != "127.0.0.1" || created.LastSeenTS == nil {
			t.Fatalf("a new device has no last-seen from the request that created it: %+v", created)
		}
		// Make the stored value clearly old, then use the token.
		if _, err := s.App.Store.DB.NewUpdate().Model((*storage.Device)(nil)).Set("last_seen_ts = 1000, last_seen_ip = '10.9.9.9'").
			Where("device_id = ?", dev).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		before := time.Now().UnixMilli()
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/account/whoami", alice, nil), 200)

		if d, _ := dbDevice(t, s, "@alice:localhost", dev); *d.LastSeenTS != 1000 {
			t.Fatalf("last-seen written to the database per request (ts %d)", *d.LastSeenTS)
		}
		r := s.Do(t, "GET", v3+"/devices/"+dev, alice, nil)
		if ts, _ := r.Body["last_seen_ts"].(float64); int64(ts) < before || r.Str("last_seen_ip") != "127.0.0.1" {
			t.Fatalf("buffered last-seen not shown: %s", r.Raw)
		}

		s.Stop()
		st, err := storage.Open(context.Background(), s.Config.Database, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var d storage.Device
		if err := st.R.NewSelect().Model(&d).Where("device_id = ?", dev).Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		if *d.LastSeenTS < before || *d.LastSeenIP != "127.0.0.1" {
			t.Fatalf("shutdown did not flush last-seen: %d %s", *d.LastSeenTS, *d.LastSeenIP)
		}
	})
}

func TestLastSeenIPHonoursForwardedForOnlyFromTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"untrusted", nil, "127.0.0.1"},
		{"trusted", []string{"127.0.0.1/32"}, "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testenv.Start(t, testenv.SQLite, func(c *config.Config) { noAutoFlush(c); c.TrustedProxies = tc.trusted })
			alice, dev := testenv.CreateUser(t, s, "alice", "alice-password")
			getFrom(t, s, v3+"/account/whoami", alice, "203.0.113.7")
			if err := s.App.LastSeen.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d, _ := dbDevice(t, s, "@alice:localhost", dev); *d.LastSeenIP != tc.want {
				t.Fatalf("last_seen_ip %s, want %s", *d.LastSeenIP, tc.want)
			}
		})
	}
}

func TestConcurrentRenamesKeepTheStreamGapFree(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		alice, _ := testenv.CreateUser(t, s, "alice", "alice-password")
		ids := make([]string, 50)
		for i := range ids {
			ids[i] = fmt.Sprintf("DEV%02d", i)
			testenv.Login(t, s, "@alice:localhost", ids[i])
		}
		var wg sync.WaitGroup
		status := make([]int, len(ids))
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status[i] = testenv.Do(t, s.URL, "PUT", v3+"/devices/"+id, alice, map[string]any{"display_name": "name " + id}).Status
			}()
		}
		wg.Wait()
		for i, st := range status {
			if st != 200 {
				t.Fatalf("rename %s: %d", ids[i], st)
			}
		}
		var got []int64
		if err := s.App.Store.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Column("stream_id").
			Where("user_id = ?", "@alice:localhost").Order("stream_id").Scan(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 101 { // 51 devices created, 50 renamed
			t.Fatalf("%d stream rows, want 101", len(got))
		}
		for i, id := range got {
			if id != int64(i+1) {
				t.Fatalf("stream ids not gap-free and increasing: %v", got)
			}
		}
	})
}
