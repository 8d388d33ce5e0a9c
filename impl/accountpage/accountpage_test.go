package accountpage_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/uia"
)

const account = "/_myelin/account/"

func view(action, deviceID string) string {
	q := url.Values{"action": {action}}
	if deviceID != "" {
		q.Set("device_id", deviceID)
	}
	return account + "?" + q.Encode()
}

func mustContain(t *testing.T, p testenv.Page, want ...string) {
	t.Helper()
	if p.Status != http.StatusOK {
		t.Fatalf("page: %d %s", p.Status, p.Body)
	}
	for _, w := range want {
		if !strings.Contains(p.Body, w) {
			t.Fatalf("page lacks %q: %s", w, p.Body)
		}
	}
}

func TestAccountPageListsDevicesWithLastSeenAndThisBrowser(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, dev := testenv.CreateUser(t, s, "alice", "correct horse")
		testenv.Login(t, s, "@alice:localhost", "PHONE")
		s.Do(t, "PUT", "/_matrix/client/v3/devices/PHONE", tok, map[string]any{"display_name": "Alice's <phone>"})
		testenv.WantStatus(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", tok, nil), http.StatusOK)

		br := testenv.NewBrowser(t, s.URL)
		// Not signed in: the sign-in page, then back to the page asked for.
		p := br.Get(account)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location(), "/_myelin/login?next=") {
			t.Fatalf("account page without session: %d %q", p.Status, p.Location())
		}
		if p := br.SignIn("alice", "correct horse", account); p.Location() != account {
			t.Fatalf("sign-in: %d %q", p.Status, p.Location())
		}
		p = br.Get(account)
		mustContain(t, p, dev, "PHONE", "Alice&#39;s &lt;phone&gt;", "last seen", "from 127.0.0.1", "This browser", "@alice:localhost")
		if strings.Contains(p.Body, "<phone>") {
			t.Fatal("device name not escaped")
		}
		// Another user's devices are not shown.
		testenv.CreateUser(t, s, "bob", "bob's password")
		bob := testenv.NewBrowser(t, s.URL)
		bob.MustSignIn("bob", "bob's password")
		if p := bob.Get(account); strings.Contains(p.Body, "PHONE") || strings.Contains(p.Body, dev) {
			t.Fatalf("bob sees alice's devices: %s", p.Body)
		}
	})
}

func TestActionParametersOpenTheirViews(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	_, dev := testenv.CreateUser(t, s, "alice", "correct horse")
	br := testenv.NewBrowser(t, s.URL)
	// A deep link survives the sign-in.
	deep := view(uia.ActionDeviceDelete, dev)
	if p := br.SignIn("alice", "correct horse", deep); p.Location() != deep {
		t.Fatalf("sign-in with a deep link: %q", p.Location())
	}
	mustContain(t, br.Get(view(uia.ActionDevicesList, "")), `id="devices"`, dev)
	mustContain(t, br.Get(view(uia.ActionDeviceView, dev)), `id="device-id">`+dev, `id="rename"`, `id="sign-out-device"`)
	mustContain(t, br.Get(deep), `id="confirm-delete"`, `id="delete-device"`)
	mustContain(t, br.Get(view(uia.ActionAccountDeactivate, "")), `id="deactivate-form"`, `name="password"`, `name="confirm"`)
	mustContain(t, br.Get(view(uia.ActionCrossSigningReset, "")), `id="approve-reset"`)
	mustContain(t, br.Get(view(uia.ActionDeviceView, "NOSUCH")), `id="device-missing"`, "NOSUCH")
	mustContain(t, br.Get(view("org.example.unknown", "")), `id="devices"`)
	mustContain(t, br.Get(account), `id="devices"`)
}

func TestRenamingADeviceOnThePageRenamesItForClients(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, dev := testenv.CreateUser(t, s, "alice", "correct horse")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "correct horse")
		p := br.Submit(view(uia.ActionDeviceView, dev), account+"devices/rename", url.Values{"device_id": {dev}, "display_name": {"Laptop"}})
		if p.Status != http.StatusSeeOther {
			t.Fatalf("rename: %d %s", p.Status, p.Body)
		}
		mustContain(t, br.Get(p.Location()), "The device was renamed.", "Laptop")
		r := s.Do(t, "GET", "/_matrix/client/v3/devices/"+dev, tok, nil)
		if r.Str("display_name") != "Laptop" {
			t.Fatalf("device after rename: %s", r.Raw)
		}
		// Another user's device cannot be renamed through the form.
		_, bobDev := testenv.CreateUser(t, s, "bob", "bob's password")
		if p := br.Submit(account, account+"devices/rename", url.Values{"device_id": {bobDev}, "display_name": {"x"}}); p.Status != http.StatusNotFound {
			t.Fatalf("renaming bob's device: %d", p.Status)
		}
	})
}

func TestSigningOutADeviceRevokesItsTokenAndPublishesTheChange(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, dev := testenv.CreateUser(t, s, "alice", "correct horse")
		other := testenv.Login(t, s, "@alice:localhost", "OTHER")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "correct horse")
		p := br.Submit(view(uia.ActionDeviceDelete, dev), account+"devices/delete", url.Values{"device_id": {dev}})
		if p.Status != http.StatusSeeOther {
			t.Fatalf("sign out device: %d %s", p.Status, p.Body)
		}
		mustContain(t, br.Get(p.Location()), "The device was signed out.")
		testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", tok, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		testenv.WantStatus(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", other, nil), http.StatusOK)
		// The device list records the deletion (what /sync, /keys/changes
		// and the federation EDUs are made from).
		n, err := s.App.Store.R.NewSelect().Model((*storage.DeviceListChange)(nil)).
			Where("user_id = ? AND device_id = ? AND deleted = ?", "@alice:localhost", dev, true).Count(context.Background())
		if err != nil || n != 1 {
			t.Fatalf("deletion stream rows: %d %v", n, err)
		}
		if p := br.Get(account); strings.Contains(p.Body, dev) {
			t.Fatal("signed-out device still listed")
		}
	})
}

func TestDeactivatingNeedsThePasswordAndAConfirmation(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", "correct horse")
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "correct horse")
		form := view(uia.ActionAccountDeactivate, "")
		if p := br.Submit(form, account+"deactivate", url.Values{"password": {"correct horse"}}); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "confirm") {
			t.Fatalf("without confirmation: %d %s", p.Status, p.Body)
		}
		if p := br.Submit(form, account+"deactivate", url.Values{"password": {"wrong"}, "confirm": {"yes"}}); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Wrong password.") {
			t.Fatalf("wrong password: %d %s", p.Status, p.Body)
		}
		testenv.WantStatus(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", tok, nil), http.StatusOK)
		p := br.Submit(form, account+"deactivate", url.Values{"password": {"correct horse"}, "confirm": {"yes"}})
		mustContain(t, p, `id="deactivated"`)
		testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", tok, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		r := s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse"})
		testenv.WantError(t, r, http.StatusForbidden, "M_USER_DEACTIVATED")
		// The browser is signed out, and cannot sign in again.
		if p := br.Get(account); p.Status != http.StatusSeeOther {
			t.Fatalf("account page after deactivation: %d", p.Status)
		}
		if p := br.SignIn("alice", "correct horse", ""); p.Status != http.StatusUnauthorized {
			t.Fatalf("sign-in after deactivation: %d", p.Status)
		}
	})
}

func TestEndingAnotherBrowserSessionSignsThatBrowserOut(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "correct horse")
	laptop, phone := testenv.NewBrowser(t, s.URL), testenv.NewBrowser(t, s.URL)
	laptop.MustSignIn("alice", "correct horse")
	phone.MustSignIn("alice", "correct horse")
	var hashes []string
	if err := s.App.Store.R.NewSelect().Table("web_sessions").Column("session_hash").Order("created_ts").Scan(context.Background(), &hashes); err != nil || len(hashes) != 2 {
		t.Fatalf("sessions: %v %v", hashes, err)
	}
	// The laptop's session is the first; the phone ends it.
	if p := phone.Submit(account, account+"sessions/end", url.Values{"session": {hashes[0]}}); p.Status != http.StatusSeeOther {
		t.Fatalf("end session: %d %s", p.Status, p.Body)
	}
	if p := laptop.Get(account); p.Status != http.StatusSeeOther {
		t.Fatalf("ended session still works: %d", p.Status)
	}
	if p := phone.Get(account); p.Status != http.StatusOK {
		t.Fatalf("phone's session: %d", p.Status)
	}
}
