package accounts_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	v3  = "/_matrix/client/v3"
	r0  = "/_matrix/client/r0"
	pwd = "correct horse battery"
)

// account is a registered user and its first login.
type account struct {
	UserID, Token, DeviceID string
}

// register registers username in one request (dummy stage, no session),
// as matrix-nio does.
func register(t *testing.T, s *testenv.Server, username, password string) account {
	t.Helper()
	r := s.Do(t, "POST", v3+"/register", "", map[string]any{
		"username": username, "password": password, "auth": map[string]any{"type": "m.login.dummy"}})
	testenv.WantStatus(t, r, 200)
	return account{UserID: r.Str("user_id"), Token: r.Str("access_token"), DeviceID: r.Str("device_id")}
}

func passwordLogin(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

// login logs in with body and wants 200.
func login(t *testing.T, s *testenv.Server, body map[string]any) account {
	t.Helper()
	r := s.Do(t, "POST", v3+"/login", "", body)
	testenv.WantStatus(t, r, 200)
	return account{UserID: r.Str("user_id"), Token: r.Str("access_token"), DeviceID: r.Str("device_id")}
}

// whoami returns the status of GET /account/whoami with token.
func whoami(t *testing.T, s *testenv.Server, token string) testenv.Response {
	t.Helper()
	return s.Do(t, "GET", v3+"/account/whoami", token, nil)
}

func wantTokenValid(t *testing.T, s *testenv.Server, token string, valid bool) {
	t.Helper()
	r := whoami(t, s, token)
	if valid {
		testenv.WantStatus(t, r, 200)
	} else {
		testenv.WantError(t, r, 401, "M_UNKNOWN_TOKEN")
	}
}

// pwAuth is an m.login.password auth dict for user.
func pwAuth(session, user, password string) map[string]any {
	a := map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
	if session != "" {
		a["session"] = session
	}
	return a
}

// wantChallenge asserts a 401 UIA answer (errcode "" for a bare challenge)
// and returns its session.
func wantChallenge(t *testing.T, r testenv.Response, errcode string) string {
	t.Helper()
	if r.Status != 401 || r.Str("errcode") != errcode {
		t.Fatalf("want 401 challenge (errcode %q), got %d %s", errcode, r.Status, r.Raw)
	}
	if _, ok := r.Body["params"].(map[string]any); !ok {
		t.Fatalf("challenge without params: %s", r.Raw)
	}
	if _, ok := r.Body["completed"].([]any); !ok {
		t.Fatalf("challenge without completed: %s", r.Raw)
	}
	if _, ok := r.Body["flows"].([]any); !ok {
		t.Fatalf("challenge without flows: %s", r.Raw)
	}
	if r.Str("session") == "" {
		t.Fatalf("challenge without session: %s", r.Raw)
	}
	return r.Str("session")
}

func userRow(t *testing.T, s *testenv.Server, userID string) storage.User {
	t.Helper()
	var u storage.User
	if err := s.App.Store.R.NewSelect().Model(&u).Where("user_id = ?", userID).Scan(context.Background()); err != nil {
		t.Fatalf("user %s: %v", userID, err)
	}
	return u
}

func deviceIDs(t *testing.T, s *testenv.Server, userID string) []string {
	t.Helper()
	var ids []string
	if err := s.App.Store.R.NewSelect().Model((*storage.Device)(nil)).Column("device_id").
		Where("user_id = ?", userID).Order("device_id").Scan(context.Background(), &ids); err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return ids
}
