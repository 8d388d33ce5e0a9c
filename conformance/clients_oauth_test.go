package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/security"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// TestMatrixJSSDKSignsInThroughOAuthInTheBrowser runs matrix-js-sdk's
// OIDC helpers inside headless Chromium, as Element Web does: a tiny web
// client (clients/js/oidc-web.mjs, bundled with esbuild at test time) is
// served at https://127.0.0.1:PORT/ — a web client's redirect URI must be
// https — and, from its own origin and so cross-origin to Myelin,
// discovers the metadata, registers itself (application_type web,
// client_uri and redirect URI the page), builds the authorisation URL and
// goes there; Chromium signs in on Myelin's page and clicks Allow; back
// on the page with ?code=&state=, the SDK completes the code grant, uses
// the token (whoami, /devices), refreshes it with OidcTokenRefresher and
// revokes it with oidc-client-ts, after which whoami answers 401
// M_UNKNOWN_TOKEN. The page reports into <pre id=result>, read here; the
// device is then gone from the user's other session's /devices too. With
// MYELIN_SCREENSHOTS=DIR it saves the consent page.
func TestMatrixJSSDKSignsInThroughOAuthInTheBrowser(t *testing.T) {
	requireJSSDK(t)
	bundle := buildOIDCWebBundle(t)
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		password, _ := testenv.CreateUser(t, s, "alice", "correct horse")
		app := httptest.NewUnstartedServer(oidcWebClient(s.URL, bundle))
		// Chromium's first handshakes, before it is told to ignore the
		// self-signed certificate, fail: not worth a log line.
		app.Config.ErrorLog = log.New(io.Discard, "", 0)
		app.StartTLS()
		t.Cleanup(app.Close)
		ctx := testenv.Chromium(t)
		var console []string
		var mu sync.Mutex
		err := chromedp.Listen(ctx, func(ev any) {
			var line string
			switch e := ev.(type) {
			case *runtime.EventConsoleAPICalled:
				var args []string
				for _, a := range e.Args {
					args = append(args, strings.Trim(string(a.Value), `"`)+a.Description)
				}
				line = string(e.Type) + ": " + strings.Join(args, " ")
			case *runtime.EventExceptionThrown:
				line = "exception: " + e.ExceptionDetails.Text
				if e.ExceptionDetails.Exception != nil {
					line += " " + e.ExceptionDetails.Exception.Description
				}
			default:
				return
			}
			mu.Lock()
			console = append(console, line)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		fatal := func(format string, args ...any) {
			t.Helper()
			res, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("result")?.textContent ?? ""`))
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%s\npage result: %s\nconsole:\n%s", fmt.Sprintf(format, args...), res, strings.Join(console, "\n"))
		}

		// The client's own page: it registers and sends the browser to
		// Myelin's authorisation endpoint (the test's certificate is
		// self-signed).
		err = chromedp.Do(ctx,
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, security.SetIgnoreCertificateErrors, security.SetIgnoreCertificateErrorsParams{Ignore: true})
				return err
			}),
			chromedp.EmulateViewport(420, 860),
			chromedp.Navigate(app.URL+"/"),
		)
		if err != nil {
			fatal("the client page: %v", err)
		}
		// The page navigates by itself: poll across the navigation.
		for deadline := time.Now().Add(30 * time.Second); ; {
			there, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(document.getElementById("username") || document.querySelector("#result[data-done]"))`))
			if there {
				break
			}
			if time.Now().After(deadline) {
				fatal("neither Myelin's sign-in page nor a result within 30 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil || !strings.HasPrefix(loc, s.URL+"/") {
			fatal("the client page did not send the browser to Myelin's sign-in page: at %q (%v)", loc, err)
		}
		err = chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.ID("username"), "alice"),
			chromedp.SendKeys(chromedp.ID("password"), "correct horse"),
			chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("allow")),
		)
		var name string
		if err == nil {
			name, err = chromedp.Run(ctx, chromedp.Text(chromedp.ID("client-name")))
		}
		if err != nil {
			fatal("consent page: %v", err)
		}
		if name != "js-sdk web client" {
			t.Errorf("the consent page names %q", name)
		}
		testenv.Screenshot(t, ctx, "consent.png")

		// Back on the client's page, which completes the grant and
		// reports.
		err = chromedp.Do(ctx,
			chromedp.Click(chromedp.ID("allow")),
			chromedp.WaitVisible(chromedp.CSS(`#result[data-done]`)),
		)
		var result string
		if err == nil {
			loc, err = chromedp.Run(ctx, chromedp.Location())
		}
		if err == nil {
			result, err = chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("result")))
		}
		if err != nil {
			fatal("back on the client page: %v", err)
		}
		var got struct {
			Pass     bool   `json:"pass"`
			Error    string `json:"error"`
			UserID   string `json:"userId"`
			DeviceID string `json:"deviceId"`
			Steps    []struct{ Name, Detail string }
		}
		if err := json.Unmarshal([]byte(result), &got); err != nil {
			fatal("the page's result is not JSON: %v", err)
		}
		var names []string
		for _, st := range got.Steps {
			t.Logf("ok   %s: %s", st.Name, st.Detail)
			names = append(names, st.Name)
		}
		if !got.Pass {
			fatal("the page failed: %s", got.Error)
		}
		if !strings.HasPrefix(loc, app.URL+"/?") {
			t.Errorf("the grant was completed at %q, not on the client's page", loc)
		}
		want := []string{"getAuthMetadata", "discoverAndValidateOIDCIssuerWellKnown", "registerOidcClient",
			"generateOidcAuthorizationUrl", "redirect back", "completeAuthorizationCodeGrant", "whoami", "getDevices",
			"OidcTokenRefresher.doRefreshAccessToken", "OidcClient.revokeToken"}
		if !slices.Equal(names, want) {
			t.Errorf("steps %v, want %v", names, want)
		}
		if got.UserID != "@alice:localhost" || got.DeviceID == "" {
			t.Fatalf("signed in as %q on device %q", got.UserID, got.DeviceID)
		}
		// Seen from alice's password session: the revoked device is gone.
		devs := s.Do(t, http.MethodGet, "/_matrix/client/v3/devices", password, nil)
		testenv.WantStatus(t, devs, http.StatusOK)
		if strings.Contains(string(devs.Raw), `"`+got.DeviceID+`"`) {
			t.Errorf("the revoked device %s is still listed: %s", got.DeviceID, devs.Raw)
		}
	})
}

// buildOIDCWebBundle bundles clients/js/oidc-web.mjs for the browser with
// the package's esbuild (npm run build:oidc) into a temporary directory.
func buildOIDCWebBundle(t *testing.T) []byte {
	t.Helper()
	if _, err := os.Stat("clients/js/node_modules/esbuild/package.json"); err != nil {
		why := "esbuild is not installed (cd conformance/clients/js && npm ci)"
		if os.Getenv("MYELIN_TEST_REQUIRE_CLIENTS") == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	out := filepath.Join(t.TempDir(), "oidc-web.js")
	cmd := exec.Command("npm", "run", "--silent", "build:oidc", "--", "--outfile="+out)
	cmd.Dir = "clients/js"
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bundling oidc-web.mjs with esbuild: %v\n%s", err, msg)
	}
	js, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// oidcWebClient serves the test's web client: its page (at /, the
// registered redirect URI, which it is also sent back to with the code)
// naming the homeserver, and the bundle.
func oidcWebClient(homeserver string, bundle []byte) http.Handler {
	page := `<!doctype html><meta charset=utf-8><title>js-sdk web client</title>` +
		`<meta name=homeserver content="` + html.EscapeString(homeserver) + `">` +
		`<h1>js-sdk web client</h1><pre id=result></pre><script type=module src="/oidc-web.js"></script>`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	})
	mux.HandleFunc("GET /oidc-web.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(bundle)
	})
	return mux
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
