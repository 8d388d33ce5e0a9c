package appservice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	v3      = "/_matrix/client/v3"
	asToken = "as-token-of-the-test-bridge"
)

// registration is a bridge's registration file for server name "localhost".
func registration(id, token, sender, prefix string, rateLimited bool) string {
	return fmt.Sprintf(`id: %s
url: http://127.0.0.1:9
as_token: %s
hs_token: hs-%s
sender_localpart: %s
rate_limited: %v
namespaces:
  users:
    - exclusive: true
      regex: '@%s.*:localhost'
    - exclusive: false
      regex: '@shared_.*:localhost'
`, id, token, token, sender, rateLimited, prefix)
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs a server with the test bridge registered (and more changes
// from mutate).
func start(t *testing.T, b testenv.Backend, mutate func(c *config.Config)) *testenv.Server {
	t.Helper()
	file := writeFile(t, "bridge.yaml", registration("bridge", asToken, "_bridge_bot", "_bridge_", false))
	return testenv.Start(t, b, func(c *config.Config) {
		c.AppServiceConfigFiles = []string{file}
		if mutate != nil {
			mutate(c)
		}
	})
}

// as builds a path with the identity assertion parameters.
func as(path, userID, deviceID string) string {
	q := url.Values{}
	if userID != "" {
		q.Set("user_id", userID)
	}
	if deviceID != "" {
		q.Set("device_id", deviceID)
	}
	if len(q) == 0 {
		return path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + q.Encode()
}

func asRegister(t *testing.T, s *testenv.Server, token, username string, inhibit bool) testenv.Response {
	t.Helper()
	return s.Do(t, "POST", v3+"/register", token, map[string]any{
		"type": "m.login.application_service", "username": username, "inhibit_login": inhibit})
}

func TestAppServiceRegistersUsersOfItsNamespacesWithoutUIAWhateverTheMode(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, func(c *config.Config) { c.Registration = config.RegistrationDisabled })

		// inhibit_login: the user only.
		r := asRegister(t, s, asToken, "_bridge_alice", true)
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") != "@_bridge_alice:localhost" || r.Body["access_token"] != nil || r.Body["device_id"] != nil {
			t.Fatalf("inhibit_login registration answered %s", r.Raw)
		}
		// Without inhibit_login: a device and a token, in the spec's form
		// (auth.type) too, in the non-exclusive namespace too.
		r = s.Do(t, "POST", v3+"/register", asToken, map[string]any{
			"auth": map[string]any{"type": "m.login.application_service"}, "username": "shared_bob", "device_id": "BOBDEV"})
		testenv.WantStatus(t, r, 200)
		if r.Str("access_token") == "" || r.Str("device_id") != "BOBDEV" {
			t.Fatalf("registration with login answered %s", r.Raw)
		}
		w := s.Do(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil)
		if w.Str("user_id") != "@shared_bob:localhost" || w.Str("device_id") != "BOBDEV" {
			t.Fatalf("the registered user's token: %s", w.Raw)
		}

		testenv.WantError(t, asRegister(t, s, asToken, "_bridge_alice", true), 400, "M_USER_IN_USE")
		testenv.WantError(t, asRegister(t, s, asToken, "carol", true), 400, "M_EXCLUSIVE")
		testenv.WantError(t, asRegister(t, s, "", "_bridge_dave", true), 401, "M_MISSING_TOKEN")
		testenv.WantError(t, asRegister(t, s, "not-an-as-token", "_bridge_dave", true), 401, "M_UNKNOWN_TOKEN")
		// A user's own access token is no as_token either.
		testenv.WantError(t, asRegister(t, s, r.Str("access_token"), "_bridge_dave", true), 401, "M_UNKNOWN_TOKEN")
		testenv.WantError(t, asRegister(t, s, asToken, "_Bridge_ bad", true), 400, "M_INVALID_USERNAME")
	})
}

func TestOthersCannotRegisterInAnExclusiveNamespace(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		for _, name := range []string{"_bridge_mallory", "_bridge_bot"} {
			r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": name, "password": "a fine password"})
			testenv.WantError(t, r, 400, "M_EXCLUSIVE")
			testenv.WantError(t, s.Do(t, "GET", v3+"/register/available?username="+name, "", nil), 400, "M_EXCLUSIVE")
		}
		// The non-exclusive namespace stays open to everyone.
		testenv.WantStatus(t, s.Do(t, "GET", v3+"/register/available?username=shared_eve", "", nil), 200)
		_, _ = testenv.CreateUser(t, s, "shared_eve", "a fine password")
	})
}

func TestIdentityAssertionActsAsANamespaceUserAndOneOfItsDevices(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		whoami := func(userID, deviceID string) testenv.Response {
			return s.Do(t, "GET", as(v3+"/account/whoami", userID, deviceID), asToken, nil)
		}
		// No user_id: the sender, registered on first use, and no device.
		r := whoami("", "")
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") != "@_bridge_bot:localhost" || r.Body["device_id"] != nil {
			t.Fatalf("whoami as the appservice: %s", r.Raw)
		}
		testenv.WantStatus(t, asRegister(t, s, asToken, "_bridge_ghost", true), 200)
		ghost := "@_bridge_ghost:localhost"
		testenv.WantStatus(t, whoami(ghost, ""), 200)

		testenv.WantError(t, whoami("@_bridge_unregistered:localhost", ""), 403, "M_FORBIDDEN")
		_, _ = testenv.CreateUser(t, s, "alice", "a fine password")
		testenv.WantError(t, whoami("@alice:localhost", ""), 403, "M_FORBIDDEN")
		testenv.WantError(t, whoami("@_bridge_ghost:elsewhere.example", ""), 403, "M_FORBIDDEN")

		// device_id (v1.17): one of the user's devices, else 400.
		testenv.WantError(t, whoami(ghost, "NOPE"), 400, "M_UNKNOWN_DEVICE")
		testenv.WantStatus(t, s.Do(t, "PUT", as(v3+"/devices/GHOSTDEV", ghost, ""), asToken, map[string]any{}), 201)
		r = whoami(ghost, "GHOSTDEV")
		if r.Status != 200 || r.Str("user_id") != ghost || r.Str("device_id") != "GHOSTDEV" {
			t.Fatalf("whoami as the ghost's device: %d %s", r.Status, r.Raw)
		}
		// Another user's device is unknown for this user, and the sender's
		// default applies to device_id without user_id.
		testenv.WantError(t, whoami("", "GHOSTDEV"), 400, "M_UNKNOWN_DEVICE")

		// The deprecated ?access_token= carries an as_token as well.
		r = s.Do(t, "GET", as(v3+"/account/whoami?access_token="+asToken, ghost, "GHOSTDEV"), "", nil)
		if r.Status != 200 || r.Str("device_id") != "GHOSTDEV" {
			t.Fatalf("as_token in the query: %d %s", r.Status, r.Raw)
		}
		// Uploading keys needs a device.
		testenv.WantError(t, s.Do(t, "POST", as(v3+"/keys/upload", ghost, ""), asToken, map[string]any{}), 400, "M_MISSING_PARAM")
		testenv.WantStatus(t, s.Do(t, "POST", as(v3+"/keys/upload", ghost, "GHOSTDEV"), asToken, map[string]any{}), 200)
	})
}

func TestAppServiceLoginNeedsTheAsTokenAndANamespaceUser(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		// Without appservices, GET /login does not offer the type.
		plain := testenv.Start(t, b, nil)
		if strings.Contains(string(plain.Do(t, "GET", v3+"/login", "", nil).Raw), "m.login.application_service") {
			t.Fatal("GET /login offers m.login.application_service with no appservice registered")
		}
		s := start(t, b, nil)
		if !strings.Contains(string(s.Do(t, "GET", v3+"/login", "", nil).Raw), `"m.login.application_service"`) {
			t.Fatal("GET /login does not offer m.login.application_service")
		}
		login := func(token, user string) testenv.Response {
			return s.Do(t, "POST", v3+"/login", token, map[string]any{"type": "m.login.application_service",
				"identifier": map[string]any{"type": "m.id.user", "user": user}, "device_id": "BOTDEV"})
		}
		r := login(asToken, "@_bridge_bot:localhost")
		testenv.WantStatus(t, r, 200)
		if r.Str("device_id") != "BOTDEV" || r.Str("access_token") == "" {
			t.Fatalf("appservice login answered %s", r.Raw)
		}
		w := s.Do(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil)
		if w.Str("user_id") != "@_bridge_bot:localhost" || w.Str("device_id") != "BOTDEV" {
			t.Fatalf("the bot's token: %s", w.Raw)
		}
		// A localpart works too; the device is kept and its token replaced.
		testenv.WantStatus(t, s.Do(t, "POST", v3+"/register", asToken, map[string]any{"type": "m.login.application_service", "username": "_bridge_ghost", "inhibit_login": true}), 200)
		testenv.WantStatus(t, login(asToken, "_bridge_ghost"), 200)

		testenv.WantError(t, login("", "_bridge_ghost"), 401, "M_MISSING_TOKEN")
		testenv.WantError(t, login("wrong", "_bridge_ghost"), 401, "M_UNKNOWN_TOKEN")
		_, _ = testenv.CreateUser(t, s, "alice", "a fine password")
		testenv.WantError(t, login(asToken, "@alice:localhost"), 400, "M_EXCLUSIVE")
		testenv.WantError(t, login(asToken, "_bridge_nobody"), 403, "M_FORBIDDEN")
	})
}

func TestAppServiceCreatesRenamesAndDeletesDevicesWithoutUIA(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		ghost := "@_bridge_ghost:localhost"
		testenv.WantStatus(t, asRegister(t, s, asToken, "_bridge_ghost", true), 200)
		stream := func() int {
			n, err := s.App.Store.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Where("user_id = ?", ghost).Count(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
		put := func(dev, name string) testenv.Response {
			return s.Do(t, "PUT", as(v3+"/devices/"+dev, ghost, ""), asToken, map[string]any{"display_name": name})
		}
		for _, dev := range []string{"D1", "D2", "D3"} {
			testenv.WantStatus(t, put(dev, "bridge "+dev), 201)
		}
		if n := stream(); n != 3 {
			t.Fatalf("%d device-list changes after creating three devices", n)
		}
		testenv.WantStatus(t, put("D1", "renamed"), 200)
		r := s.Do(t, "GET", as(v3+"/devices/D1", ghost, ""), asToken, nil)
		if r.Str("display_name") != "renamed" {
			t.Fatalf("renamed device: %s", r.Raw)
		}
		testenv.WantError(t, put(strings.Repeat("X", 600), "x"), 400, "M_INVALID_PARAM")

		// Deletion needs no user-interactive auth from the appservice.
		testenv.WantStatus(t, s.Do(t, "DELETE", as(v3+"/devices/D1", ghost, ""), asToken, nil), 200)
		testenv.WantStatus(t, s.Do(t, "POST", as(v3+"/delete_devices", ghost, ""), asToken, map[string]any{"devices": []string{"D2", "D3"}}), 200)
		var body struct {
			Devices []json.RawMessage `json:"devices"`
		}
		r = s.Do(t, "GET", as(v3+"/devices", ghost, ""), asToken, nil)
		if err := json.Unmarshal(r.Raw, &body); err != nil || len(body.Devices) != 0 {
			t.Fatalf("devices left: %s", r.Raw)
		}
		if n := stream(); n != 7 {
			t.Fatalf("%d device-list changes, want 7 (3 created, 1 renamed, 3 deleted)", n)
		}

		// A user's own token still cannot create devices, and still needs
		// UIA to delete them.
		tok, dev := testenv.CreateUser(t, s, "alice", "a fine password")
		testenv.WantError(t, s.Do(t, "PUT", v3+"/devices/NEWDEV", tok, map[string]any{}), 404, "M_NOT_FOUND")
		if r := s.Do(t, "DELETE", v3+"/devices/"+dev, tok, nil); r.Status != 401 || r.Str("session") == "" {
			t.Fatalf("a user's delete without auth: %d %s", r.Status, r.Raw)
		}
	})
}

func TestAppServiceReplacesCrossSigningKeysWithoutUIA(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, nil)
		bot := "@_bridge_bot:localhost"
		up := func(cs testenv.CrossSigning) testenv.Response {
			return s.Do(t, "POST", v3+"/keys/device_signing/upload", asToken, cs.Upload())
		}
		testenv.WantStatus(t, up(testenv.NewCrossSigning(t, bot)), 200)
		second := testenv.NewCrossSigning(t, bot)
		testenv.WantStatus(t, up(second), 200)
		tok, _ := testenv.CreateUser(t, s, "alice", "a fine password")
		r := s.Do(t, "POST", v3+"/keys/query", tok, map[string]any{"device_keys": map[string]any{bot: []string{}}})
		testenv.WantStatus(t, r, 200)
		if !strings.Contains(string(r.Raw), second.MasterID) {
			t.Fatalf("the replaced master key is not served: %s", r.Raw)
		}
	})
}

func TestAppServicesAreRateLimitedOnlyWhenTheirFileSaysSo(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		limited := writeFile(t, "limited.yaml", registration("limited", "limited-token", "_lim_bot", "_lim_", true))
		s := start(t, b, func(c *config.Config) {
			c.AppServiceConfigFiles = append(c.AppServiceConfigFiles, limited)
			c.RateLimit.Enabled = true
			c.RateLimit.PerIP = config.Bucket{Rate: 0.001, Burst: 2}
			c.RateLimit.PerAccount = config.Bucket{Rate: 0.001, Burst: 2}
		})
		for i := range 5 {
			testenv.WantStatus(t, asRegister(t, s, asToken, fmt.Sprintf("_bridge_u%d", i), true), 200)
		}
		var last testenv.Response
		for i := range 5 {
			if last = asRegister(t, s, "limited-token", fmt.Sprintf("_lim_u%d", i), true); last.Status != 200 {
				break
			}
		}
		testenv.WantError(t, last, 429, "M_LIMIT_EXCEEDED")
	})
}

func TestWithOnlyOAuthAppServicesRegisterWithoutLoginAndCannotLogIn(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := start(t, b, func(c *config.Config) { c.Auth = config.AuthOAuth })
		// v1.17: with the legacy API off, an appservice still registers its
		// users, but only with inhibit_login.
		testenv.WantError(t, s.Do(t, "POST", v3+"/register", asToken, map[string]any{
			"type": "m.login.application_service", "username": "_bridge_alice"}), 400, "M_APPSERVICE_LOGIN_UNSUPPORTED")
		r := s.Do(t, "POST", v3+"/register", asToken, map[string]any{
			"type": "m.login.application_service", "username": "_bridge_alice", "inhibit_login": true})
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") != "@_bridge_alice:localhost" || r.Str("access_token") != "" {
			t.Fatalf("register: %s", r.Raw)
		}
		// Logging in as it is the legacy API's, and off.
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", asToken, map[string]any{"type": "m.login.application_service",
			"identifier": map[string]any{"type": "m.id.user", "user": "_bridge_alice"}}), 400, "M_APPSERVICE_LOGIN_UNSUPPORTED")
		// The appservice acts as its users through identity assertion,
		// and creates their devices the MSC4190 way.
		testenv.WantStatus(t, s.Do(t, "PUT", as(v3+"/devices/GHOSTDEV", "@_bridge_alice:localhost", ""), asToken,
			map[string]any{"display_name": "ghost"}), 201)
		who := s.Do(t, "GET", as(v3+"/account/whoami", "@_bridge_alice:localhost", "GHOSTDEV"), asToken, nil)
		if who.Str("user_id") != "@_bridge_alice:localhost" || who.Str("device_id") != "GHOSTDEV" {
			t.Fatalf("whoami: %s", who.Raw)
		}
	})
}
