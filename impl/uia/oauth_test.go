package uia_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/uia"
)

const account = "/_myelin/account/"

// oauthDevices marks some device IDs as OAuth sessions (the oauth package
// implements uia.OAuthSessions over its own table).
type oauthDevices map[string]bool

func (o oauthDevices) IsOAuthSession(_ context.Context, _, deviceID string) (bool, error) {
	return o[deviceID], nil
}

func approveReset(t *testing.T, s *testenv.Server) {
	t.Helper()
	br := testenv.NewBrowser(t, s.URL)
	br.MustSignIn("alice", "correct horse")
	p := br.Submit(account+"?action="+uia.ActionCrossSigningReset, account+"cross-signing-reset", nil)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("approve reset: %d %s", p.Status, p.Body)
	}
	if p := br.Get(p.Location()); p.Status != http.StatusOK {
		t.Fatalf("after approval: %d", p.Status)
	}
}

func TestApprovedCrossSigningResetLetsOneReplacementThroughWithoutAuth(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		tok, _ := testenv.CreateUser(t, s, "alice", "correct horse")
		const upload = "/_matrix/client/v3/keys/device_signing/upload"
		testenv.WantStatus(t, s.Do(t, "POST", upload, tok, testenv.NewCrossSigning(t, "@alice:localhost").Upload()), http.StatusOK)
		// Replacing keys needs the password…
		r := s.Do(t, "POST", upload, tok, testenv.NewCrossSigning(t, "@alice:localhost").Upload())
		testenv.WantStatus(t, r, http.StatusUnauthorized)
		if r.Body["flows"].([]any)[0].(map[string]any)["stages"].([]any)[0] != uia.StagePassword {
			t.Fatalf("flows: %s", r.Raw)
		}
		// …until the user approves a reset on the account page, for 10 minutes.
		approveReset(t, s)
		var ap storage.UIAApproval
		if err := s.App.Store.R.NewSelect().Model(&ap).Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		if left := time.Until(time.UnixMilli(ap.ExpiresTS)); left < 9*time.Minute || left > 10*time.Minute {
			t.Fatalf("approval lasts %s", left)
		}
		second := testenv.NewCrossSigning(t, "@alice:localhost")
		testenv.WantStatus(t, s.Do(t, "POST", upload, tok, second.Upload()), http.StatusOK)
		q := s.Do(t, "POST", "/_matrix/client/v3/keys/query", tok, map[string]any{"device_keys": map[string]any{"@alice:localhost": []string{}}})
		if _, ok := q.Body["master_keys"].(map[string]any)["@alice:localhost"].(map[string]any)["keys"].(map[string]any)["ed25519:"+second.MasterID]; !ok {
			t.Fatalf("new master key not stored: %s", q.Raw)
		}
		// The approval was used up.
		testenv.WantStatus(t, s.Do(t, "POST", upload, tok, testenv.NewCrossSigning(t, "@alice:localhost").Upload()), http.StatusUnauthorized)
	})
}

func TestApprovalsExpire(t *testing.T) {
	s := testenv.Start(t, testenv.SQLite, nil)
	testenv.CreateUser(t, s, "alice", "correct horse")
	e := *s.App.Services.UIA
	ctx := context.Background()
	now := time.Now()
	e.Now = func() time.Time { return now }
	if err := e.Approve(ctx, "@alice:localhost", uia.OpCrossSigningUpload()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(uia.ApprovalTTL + time.Second)
	if _, ok, err := e.Approved(ctx, "@alice:localhost", uia.OpCrossSigningUpload()); ok || err != nil {
		t.Fatalf("expired approval still approved: %v %v", ok, err)
	}
	if ok, err := e.ConsumeApproval(ctx, s.App.Store.DB, "@alice:localhost", uia.OpCrossSigningUpload()); ok || err != nil {
		t.Fatalf("expired approval consumed: %v %v", ok, err)
	}
}

func oauthParamsURL(t *testing.T, r testenv.Response) string {
	t.Helper()
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("want a 401 challenge, got %d %s", r.Status, r.Raw)
	}
	flows := r.Body["flows"].([]any)
	if len(flows) != 1 || len(flows[0].(map[string]any)["stages"].([]any)) != 1 || flows[0].(map[string]any)["stages"].([]any)[0] != uia.StageOAuth {
		t.Fatalf("flows: %s", r.Raw)
	}
	p, _ := r.Body["params"].(map[string]any)[uia.StageOAuth].(map[string]any)
	u, _ := p["url"].(string)
	if u == "" || r.Str("session") == "" {
		t.Fatalf("no m.oauth url or session: %s", r.Raw)
	}
	return u
}

func TestOAuthSessionsAreSentToTheAccountPageForUIA(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		legacy, _ := testenv.CreateUser(t, s, "alice", "correct horse")
		oauthTok := testenv.Login(t, s, "@alice:localhost", "OAUTHDEV")
		testenv.Login(t, s, "@alice:localhost", "OLDPHONE")
		s.App.Services.UIA.OAuth = oauthDevices{"OAUTHDEV": true}
		base := s.Config.BaseURL()

		// Cross-signing reset (the case the spec defines).
		const upload = "/_matrix/client/v3/keys/device_signing/upload"
		testenv.WantStatus(t, s.Do(t, "POST", upload, oauthTok, testenv.NewCrossSigning(t, "@alice:localhost").Upload()), http.StatusOK)
		body := testenv.NewCrossSigning(t, "@alice:localhost").Upload()
		r := s.Do(t, "POST", upload, oauthTok, body)
		if u := oauthParamsURL(t, r); u != base+account+"?action="+url.QueryEscape(uia.ActionCrossSigningReset) {
			t.Fatalf("m.oauth url %q", u)
		}
		session := r.Str("session")
		// A password device of the same user still gets the password stage.
		lr := s.Do(t, "POST", upload, legacy, body)
		if lr.Body["flows"].([]any)[0].(map[string]any)["stages"].([]any)[0] != uia.StagePassword {
			t.Fatalf("legacy flows: %s", lr.Raw)
		}
		// Retrying before the approval: the same challenge.
		body["auth"] = map[string]any{"session": session}
		if u := oauthParamsURL(t, s.Do(t, "POST", upload, oauthTok, body)); u == "" {
			t.Fatal("no challenge")
		}
		approveReset(t, s)
		testenv.WantStatus(t, s.Do(t, "POST", upload, oauthTok, body), http.StatusOK)

		// Device deletion: deep link to that device, completed by signing
		// it out on the page.
		r = s.Do(t, "DELETE", "/_matrix/client/v3/devices/OLDPHONE", oauthTok, map[string]any{})
		if u := oauthParamsURL(t, r); u != base+account+"?action="+uia.ActionDeviceDelete+"&device_id=OLDPHONE" {
			t.Fatalf("m.oauth url %q", u)
		}
		retry := map[string]any{"auth": map[string]any{"session": r.Str("session")}}
		oauthParamsURL(t, s.Do(t, "DELETE", "/_matrix/client/v3/devices/OLDPHONE", oauthTok, retry))
		br := testenv.NewBrowser(t, s.URL)
		br.MustSignIn("alice", "correct horse")
		if p := br.Submit(account+"?action="+uia.ActionDeviceDelete+"&device_id=OLDPHONE", account+"devices/delete", url.Values{"device_id": {"OLDPHONE"}}); p.Status != http.StatusSeeOther {
			t.Fatalf("sign out on the page: %d %s", p.Status, p.Body)
		}
		testenv.WantStatus(t, s.Do(t, "DELETE", "/_matrix/client/v3/devices/OLDPHONE", oauthTok, retry), http.StatusOK)

		// Deactivation points at the deactivation form.
		r = s.Do(t, "POST", "/_matrix/client/v3/account/deactivate", oauthTok, map[string]any{})
		if u := oauthParamsURL(t, r); u != base+account+"?action="+uia.ActionAccountDeactivate {
			t.Fatalf("m.oauth url %q", u)
		}
		// The client cannot complete m.oauth by itself.
		r = s.Do(t, "POST", "/_matrix/client/v3/account/deactivate", oauthTok, map[string]any{"auth": map[string]any{"type": uia.StageOAuth, "session": r.Str("session")}})
		oauthParamsURL(t, r)
		testenv.WantStatus(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", oauthTok, nil), http.StatusOK)
	})
}
