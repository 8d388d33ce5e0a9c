package conformance

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// TestMatrixJSSDKSignsInThroughOAuth drives matrix-js-sdk's OIDC helpers
// (clients/js/oauth.mjs) against a server with the OAuth 2.0 API: the SDK
// discovers the metadata, registers a client and builds the authorisation
// URL; headless Chromium opens it, signs in on Myelin's page and clicks
// Allow; the SDK completes the code grant, uses the token (whoami,
// devices), refreshes it, and revokes it, after which the device is
// logged out. With MYELIN_SCREENSHOTS=DIR it saves the consent page.
func TestMatrixJSSDKSignsInThroughOAuth(t *testing.T) {
	requireJSSDK(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		testenv.CreateUser(t, s, "alice", "correct horse")
		ctx := testenv.Chromium(t)

		runCtx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(runCtx, "node", "oauth.mjs", s.URL)
		cmd.Dir = "clients/js"
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		authorize := make(chan string, 1)
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				lines = append(lines, line)
				if u, ok := strings.CutPrefix(line, "AUTHORIZE "); ok {
					authorize <- u
				}
			}
		}()
		var az string
		select {
		case az = <-authorize:
		case <-done:
			_ = cmd.Wait()
			t.Fatalf("oauth.mjs ended before the browser step:\n%s\n%s", strings.Join(lines, "\n"), stderr.String())
		}
		var page string
		err = chromedp.Do(ctx,
			chromedp.EmulateViewport(420, 860),
			chromedp.Navigate(az),
			chromedp.WaitVisible(chromedp.ID("username")),
		)
		if err != nil {
			t.Fatalf("sign-in page: %v", err)
		}
		err = chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.ID("username"), "alice"),
			chromedp.SendKeys(chromedp.ID("password"), "correct horse"),
			chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("allow")),
		)
		if err == nil {
			page, err = chromedp.Run(ctx, chromedp.Text(chromedp.ID("client-name")))
		}
		if err != nil {
			t.Fatalf("consent page: %v", err)
		}
		if page != "js-sdk test client" {
			t.Errorf("the consent page names %q", page)
		}
		testenv.Screenshot(t, ctx, "consent.png")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("done"))); err != nil {
			t.Fatalf("redirect to the client: %v", err)
		}
		<-done
		werr := cmd.Wait()
		log := strings.Join(lines, "\n")
		t.Logf("oauth.mjs:\n%s", log)
		if werr != nil || !strings.HasSuffix(strings.TrimSpace(log), "PASS") {
			t.Fatalf("oauth.mjs failed (%v):\n%s", werr, stderr.String())
		}
	})
}

// TestGolangOAuth2DeviceGrant runs the device authorisation grant end to
// end with golang.org/x/oauth2 (DeviceAuth, DeviceAccessToken polling,
// refresh through its TokenSource), the user code approved by a signed-in
// browser session (cookie jar, CSRF token) on the code-entry page.
func TestGolangOAuth2DeviceGrant(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, func(c *config.Config) { c.OAuth.DeviceInterval = time.Second })
		testenv.CreateUser(t, s, "alice", "correct horse")
		reg := s.Do(t, http.MethodPost, oauth.PathRegister, "", map[string]any{
			"client_name": "x/oauth2 CLI", "client_uri": "https://cli.example.org/", "application_type": "native",
			"grant_types": []string{oauth.GrantDeviceCode, oauth.GrantRefreshToken}, "token_endpoint_auth_method": "none",
		})
		testenv.WantStatus(t, reg, http.StatusCreated)
		meta := s.Do(t, http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil)
		cfg := oauth2.Config{
			ClientID: reg.Str("client_id"),
			Endpoint: oauth2.Endpoint{DeviceAuthURL: meta.Str("device_authorization_endpoint"),
				TokenURL: meta.Str("token_endpoint"), AuthStyle: oauth2.AuthStyleInParams},
			Scopes: []string{oauth.ScopeAPI, oauth.ScopeDevice + "GOCLIDEV01"},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatalf("DeviceAuth: %v", err)
		}
		if da.UserCode == "" || da.VerificationURIComplete == "" || da.Interval != 1 {
			t.Fatalf("device authorization: %+v", da)
		}
		approved := make(chan error, 1)
		go func() {
			// The user, on another device: sign in, open the link, allow.
			time.Sleep(1500 * time.Millisecond) // let the client poll first
			br := testenv.NewBrowser(t, s.URL)
			if p := br.SignIn("alice", "correct horse", ""); p.Status != http.StatusSeeOther {
				approved <- fmt.Errorf("sign in: %d", p.Status)
				return
			}
			link := strings.TrimPrefix(da.VerificationURIComplete, s.URL)
			p := br.Get(link)
			if p.Status != http.StatusOK || !strings.Contains(p.Body, "x/oauth2 CLI") {
				approved <- fmt.Errorf("code page: %d", p.Status)
				return
			}
			p = br.Post("/_myelin/link/decide", url.Values{"csrf": {br.CSRF(p)}, "user_code": {da.UserCode}, "decision": {"allow"}})
			if p.Status != http.StatusOK {
				approved <- fmt.Errorf("approve: %d %s", p.Status, p.Body)
				return
			}
			approved <- nil
		}()
		tok, err := cfg.DeviceAccessToken(ctx, da)
		if err != nil {
			t.Fatalf("DeviceAccessToken: %v", err)
		}
		if err := <-approved; err != nil {
			t.Fatal(err)
		}
		if tok.RefreshToken == "" || tok.Expiry.IsZero() || !strings.Contains(tok.Extra("scope").(string), "GOCLIDEV01") {
			t.Fatalf("token: %+v scope %v", tok, tok.Extra("scope"))
		}
		who := s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", tok.AccessToken, nil)
		if who.Str("user_id") != "@alice:localhost" || who.Str("device_id") != "GOCLIDEV01" {
			t.Fatalf("whoami: %s", who.Raw)
		}
		// Refresh through the library's token source once the token is
		// due.
		tok.Expiry = time.Now().Add(-time.Minute)
		fresh, err := cfg.TokenSource(ctx, tok).Token()
		if err != nil || fresh.AccessToken == tok.AccessToken {
			t.Fatalf("refresh: %v %+v", err, fresh)
		}
		testenv.WantStatus(t, s.Do(t, http.MethodGet, "/_matrix/client/v3/account/whoami", fresh.AccessToken, nil), http.StatusOK)
	})
}
