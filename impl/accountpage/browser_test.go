package accountpage_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// run runs steps in the tab, failing the test with what was going on.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v (at %s: %s)", what, err, loc, body)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// TestAccountPageActionsInHeadlessChromium drives every action of the
// account page with clicks, as a user on a phone-sized screen would, and
// checks each effect through the client API.
func TestAccountPageActionsInHeadlessChromium(t *testing.T) {
	ctx := testenv.Chromium(t)
	s := testenv.Start(t, testenv.SQLite, nil)
	tok, dev := testenv.CreateUser(t, s, "alice", "correct horse")
	phone := testenv.Login(t, s, "@alice:localhost", "PHONE")
	testenv.WantStatus(t, s.Do(t, "PUT", "/_matrix/client/v3/devices/PHONE", phone, map[string]any{"display_name": "Alice's phone"}), http.StatusOK)
	const upload = "/_matrix/client/v3/keys/device_signing/upload"
	testenv.WantStatus(t, s.Do(t, "POST", upload, tok, testenv.NewCrossSigning(t, "@alice:localhost").Upload()), http.StatusOK)

	// Sign in: the account page sends the browser to the sign-in form,
	// and back.
	run(t, ctx, "sign in",
		chromedp.EmulateViewport(420, 860),
		chromedp.Navigate(s.URL+account),
		chromedp.WaitVisible(chromedp.ID("username")),
	)
	testenv.Screenshot(t, ctx, "signin.png")
	run(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("devices")),
	)
	list := text(t, ctx, "#devices")
	if !strings.Contains(list, dev) || !strings.Contains(list, "Alice's phone") || !strings.Contains(list, "last seen") {
		t.Fatalf("device list: %q", list)
	}
	testenv.Screenshot(t, ctx, "account.png")

	// View a device, rename it.
	run(t, ctx, "view device",
		chromedp.Click(chromedp.CSS(`li[data-device-id="PHONE"] a`)),
		chromedp.WaitVisible(chromedp.ID("device-details")),
	)
	if id := text(t, ctx, "#device-id"); id != "PHONE" {
		t.Fatalf("device view shows %q", id)
	}
	testenv.Screenshot(t, ctx, "device.png")
	run(t, ctx, "rename",
		chromedp.Clear(chromedp.ID("display_name")),
		chromedp.SendKeys(chromedp.ID("display_name"), "Work phone"),
		chromedp.Click(chromedp.ID("rename")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if r := s.Do(t, "GET", "/_matrix/client/v3/devices/PHONE", tok, nil); r.Str("display_name") != "Work phone" {
		t.Fatalf("after rename: %s", r.Raw)
	}

	// Sign the device out: its token stops working.
	run(t, ctx, "sign out device",
		chromedp.Click(chromedp.ID("sign-out-device")),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")),
		chromedp.Click(chromedp.ID("delete-device")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", phone, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	if list := text(t, ctx, "#devices"); strings.Contains(list, "PHONE") {
		t.Fatalf("signed-out device still listed: %q", list)
	}

	// Approve a cross-signing reset: the next replacement needs no UIA.
	testenv.WantStatus(t, s.Do(t, "POST", upload, tok, testenv.NewCrossSigning(t, "@alice:localhost").Upload()), http.StatusUnauthorized)
	run(t, ctx, "approve reset",
		chromedp.Click(chromedp.ID("reset-link")),
		chromedp.WaitVisible(chromedp.ID("approve-reset")),
		chromedp.Click(chromedp.ID("approve-reset")),
		chromedp.WaitVisible(chromedp.ID("reset-approved")),
	)
	testenv.WantStatus(t, s.Do(t, "POST", upload, tok, testenv.NewCrossSigning(t, "@alice:localhost").Upload()), http.StatusOK)

	// Deactivate: password and confirmation; then login fails.
	run(t, ctx, "deactivate",
		chromedp.Navigate(s.URL+account),
		chromedp.Click(chromedp.ID("deactivate-link")),
		chromedp.WaitVisible(chromedp.ID("deactivate-form")),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse"),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("deactivate")),
		chromedp.WaitVisible(chromedp.ID("deactivated")),
	)
	r := s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse"})
	testenv.WantError(t, r, http.StatusForbidden, "M_USER_DEACTIVATED")
	testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", tok, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}
