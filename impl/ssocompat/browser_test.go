package ssocompat_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/myelin-hs/myelin/impl/testenv"
)

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v (at %s: %s)", what, err, loc, body)
	}
}

// TestSSORedirectDanceInHeadlessChromium runs the whole m.login.sso dance
// of a legacy web client in a real browser: the client's page sends the
// browser to /login/sso/redirect, the user signs in and confirms, and a
// loopback "client" server catches the redirect with its loginToken,
// which logs in once.
func TestSSORedirectDanceInHeadlessChromium(t *testing.T) {
	ctx := testenv.Chromium(t)
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "correct horse")

	caught := make(chan url.Values, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/callback" {
			select {
			case caught <- r.URL.Query():
			default:
			}
		}
		_, _ = w.Write([]byte(`<!DOCTYPE html><title>client</title><p id="done">Signed in</p>`))
	})}
	go func() { _ = clientSrv.Serve(ln) }()
	t.Cleanup(func() { _ = clientSrv.Close() })
	redirect := "http://" + ln.Addr().String() + "/callback?state=xyz"

	run(t, ctx, "open the SSO redirect",
		chromedp.EmulateViewport(420, 860),
		chromedp.Navigate(s.URL+"/_matrix/client/v3/login/sso/redirect?action=login&redirectUrl="+url.QueryEscape(redirect)),
		chromedp.WaitVisible(chromedp.ID("username")),
	)
	run(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
	)
	target, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("target")))
	if err != nil || target != ln.Addr().String() {
		t.Fatalf("the confirmation should name the client's host %s, shows %q (%v)", ln.Addr(), target, err)
	}
	testenv.Screenshot(t, ctx, "sso-confirm.png")
	run(t, ctx, "confirm",
		chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	var q url.Values
	select {
	case q = <-caught:
	case <-time.After(10 * time.Second):
		t.Fatal("the client never got the redirect")
	}
	if q.Get("state") != "xyz" || q.Get("loginToken") == "" {
		t.Fatalf("the client got %v", q)
	}
	login := map[string]any{"type": "m.login.token", "token": q.Get("loginToken")}
	r := s.Do(t, "POST", "/_matrix/client/v3/login", "", login)
	testenv.WantStatus(t, r, http.StatusOK)
	if r.Str("user_id") != "@alice:localhost" {
		t.Fatalf("login: %s", r.Raw)
	}
	testenv.WantError(t, s.Do(t, "POST", "/_matrix/client/v3/login", "", login), http.StatusForbidden, "M_FORBIDDEN")
}
