package fallback_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// browser starts a headless Chromium (Debian's package) for one test.
// Without one the test is skipped, unless MYELIN_TEST_REQUIRE_CHROMIUM=1
// (CI installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("MYELIN_TEST_CHROMIUM")
	if path == "" {
		for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if found, err := exec.LookPath(p); err == nil {
				path = found
				break
			}
		}
	}
	if path == "" {
		if os.Getenv("MYELIN_TEST_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("Chromium required (MYELIN_TEST_REQUIRE_CHROMIUM=1) but not found")
		}
		t.Skip("no Chromium found; install Debian's chromium package")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// recordCallbacks makes every page of the tab record the spec's callbacks
// (window.onAuthDone, window.onLogin) before its own scripts run, as an
// embedding client would define them.
var recordCallbacks = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
		window.onAuthDone = function () { window.__authDone = true; };
		window.onLogin = function (r) { window.__login = r; };
	`})
	return err
})

// waitTrue waits until a JavaScript expression is true in the current
// page, across navigations (a form post replaces the document).
func waitTrue(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			if ok, err := chromedp.Evaluate[bool](expr)(ctx, t); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", expr, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

func TestPasswordFallbackPageCompletesDeviceDeletionInHeadlessChromium(t *testing.T) {
	ctx := browser(t)
	s := testenv.Start(t, testenv.SQLite, nil)
	token, _ := testenv.CreateUser(t, s, "alice", "correct horse battery")
	testenv.Login(t, s, "@alice:localhost", "PHONE")

	r := s.Do(t, "DELETE", "/_matrix/client/v3/devices/PHONE", token, map[string]any{})
	testenv.WantStatus(t, r, http.StatusUnauthorized)
	session := r.Str("session")
	if session == "" {
		t.Fatalf("no UIA session: %s", r.Raw)
	}

	pageURL := s.URL + "/_matrix/client/r0/auth/m.login.password/fallback/web?session=" + url.QueryEscape(session)
	if err := chromedp.Do(ctx,
		recordCallbacks,
		chromedp.Navigate(pageURL),
		// A wrong password keeps the form and says why.
		chromedp.SendKeys(chromedp.ID("#password"), "wrong password"),
		chromedp.Click(chromedp.ID("#submit")),
		chromedp.WaitVisible(chromedp.ID("#error")),
	); err != nil {
		t.Fatalf("browser: %v", err)
	}
	errText, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("#error")))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("#password"), "correct horse battery"),
		chromedp.Click(chromedp.ID("#submit")),
		chromedp.WaitVisible(chromedp.ID("#done")),
		waitTrue(`window.__authDone === true`),
	); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if errText == "" {
		t.Error("a wrong password showed no error")
	}

	// The client retries with the session alone: the stage is complete.
	r = s.Do(t, "DELETE", "/_matrix/client/v3/devices/PHONE", token, map[string]any{"auth": map[string]any{"session": session}})
	testenv.WantStatus(t, r, http.StatusOK)
	testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/devices/PHONE", token, nil), http.StatusNotFound, "M_NOT_FOUND")
}

func TestRegistrationTokenFallbackPageCompletesRegistrationInHeadlessChromium(t *testing.T) {
	ctx := browser(t)
	s := testenv.Start(t, testenv.SQLite, func(c *config.Config) { c.Registration = config.RegistrationToken })
	if _, err := s.App.Store.DB.NewInsert().Model(&storage.RegistrationToken{Token: "letmein", CreatedTS: time.Now().UnixMilli()}).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"username": "bob", "password": "a good long password"}
	r := s.Do(t, "POST", "/_matrix/client/v3/register", "", body)
	testenv.WantStatus(t, r, http.StatusUnauthorized)
	session := r.Str("session")

	if err := chromedp.Do(ctx,
		recordCallbacks,
		chromedp.Navigate(s.URL+"/_matrix/client/v3/auth/m.login.registration_token/fallback/web?session="+url.QueryEscape(session)),
		chromedp.SendKeys(chromedp.ID("#token"), "letmein"),
		chromedp.Click(chromedp.ID("#submit")),
		waitTrue(`window.__authDone === true`),
	); err != nil {
		t.Fatalf("browser: %v", err)
	}

	body["auth"] = map[string]any{"session": session}
	r = s.Do(t, "POST", "/_matrix/client/v3/register", "", body)
	testenv.WantStatus(t, r, http.StatusOK)
	if r.Str("user_id") != "@bob:localhost" {
		t.Fatalf("registered %s", r.Raw)
	}
}

func TestLoginFallbackPageLogsInAndCallsOnLoginInHeadlessChromium(t *testing.T) {
	ctx := browser(t)
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "carol", "carol's long password")

	if err := chromedp.Do(ctx,
		recordCallbacks,
		chromedp.Navigate(s.URL+"/_matrix/static/client/login/"),
		chromedp.SendKeys(chromedp.ID("#user"), "carol"),
		chromedp.SendKeys(chromedp.ID("#password"), "carol's long password"),
		chromedp.Click(chromedp.ID("#submit")),
		waitTrue(`!!(window.__login && window.__login.access_token)`),
	); err != nil {
		t.Fatalf("browser: %v", err)
	}
	token, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__login.access_token`))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Do(t, "GET", "/_matrix/client/v3/account/whoami", token, nil)
	testenv.WantStatus(t, r, http.StatusOK)
	if r.Str("user_id") != "@carol:localhost" {
		t.Fatalf("whoami: %s", r.Raw)
	}
}

func TestFallbackPagesRefuseUnknownStagesAndMissingSessions(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/auth/m.login.bogus/fallback/web?session=x", "", nil), http.StatusNotFound, "M_NOT_FOUND")
	testenv.WantError(t, s.Do(t, "GET", "/_matrix/client/v3/auth/m.login.dummy/fallback/web", "", nil), http.StatusBadRequest, "M_MISSING_PARAM")
	r := s.Do(t, "GET", "/_matrix/client/v3/auth/m.login.dummy/fallback/web?session=%3Cscript%3E", "", nil)
	testenv.WantStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.Raw), "<script>alert") || strings.Contains(string(r.Raw), `value="<script>"`) {
		t.Fatalf("session not escaped: %s", r.Raw)
	}
	if !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("no CSP: %v", r.Header)
	}
}
