package accounts_test

import (
	"context"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const newPwd = "a brand new passphrase"

func TestChangePasswordNeedsPasswordUIAAndLogsOutOtherDevices(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		other := login(t, s, passwordLogin("alice", pwd))
		r := s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd})
		session := wantChallenge(t, r, "")
		r = s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd, "auth": pwAuth(session, "alice", "wrong password")})
		if wantChallenge(t, r, "M_FORBIDDEN") != session {
			t.Fatal("failed stage changed the session")
		}
		r = s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd, "auth": pwAuth(session, "alice", pwd)})
		testenv.WantStatus(t, r, 200)
		wantTokenValid(t, s, a.Token, true)
		wantTokenValid(t, s, other.Token, false)
		if ids := deviceIDs(t, s, a.UserID); len(ids) != 1 || ids[0] != a.DeviceID {
			t.Fatalf("devices %v", ids)
		}
		testenv.WantError(t, s.Do(t, "POST", v3+"/login", "", passwordLogin("alice", pwd)), 403, "M_FORBIDDEN")
		login(t, s, passwordLogin("alice", newPwd))
	})
}

func TestChangePasswordCanKeepOtherDevices(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		other := login(t, s, passwordLogin("alice", pwd))
		r := s.Do(t, "POST", r0+"/account/password?access_token="+a.Token, "", map[string]any{"new_password": newPwd,
			"logout_devices": false, "auth": pwAuth("", "alice", pwd)})
		testenv.WantStatus(t, r, 200)
		wantTokenValid(t, s, other.Token, true)
	})
}

func TestChangePasswordAppliesThePolicyBeforeUIA(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		testenv.WantError(t, s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": "short"}), 400, "M_WEAK_PASSWORD")
	})
}

func TestUIAForSomeoneElsesAccountIsForbidden(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		register(t, s, "bob", "bobs password")
		// Alice's token, Bob's correct credentials.
		r := s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd, "auth": pwAuth("", "bob", "bobs password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		r = s.Do(t, "POST", v3+"/account/deactivate", a.Token, map[string]any{"auth": pwAuth("", "@bob:localhost", "bobs password")})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		login(t, s, passwordLogin("alice", pwd))
		login(t, s, passwordLogin("bob", "bobs password"))
	})
}

func TestUIASessionCannotBeReplayedForAnotherOperation(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		session := wantChallenge(t, s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd}), "")
		r := s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd, "auth": pwAuth(session, "alice", pwd)})
		testenv.WantStatus(t, r, 200)
		// The completed password-change session, presented to deactivate.
		r = s.Do(t, "POST", v3+"/account/deactivate", a.Token, map[string]any{"auth": map[string]any{"type": "m.login.password", "session": session}})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		wantTokenValid(t, s, a.Token, true)
		if userRow(t, s, a.UserID).Deactivated {
			t.Fatal("deactivated through another operation's session")
		}
		// A registration session is not one for changing a password either.
		reg := wantChallenge(t, s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "carol", "password": pwd}), "")
		r = s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": "yet another one", "auth": map[string]any{"type": "m.login.dummy", "session": reg}})
		testenv.WantError(t, r, 403, "M_FORBIDDEN")
		login(t, s, passwordLogin("alice", newPwd))
	})
}

func TestUIASessionSurvivesServerRestart(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		cfg := testenv.TestConfig(t, b)
		s := testenv.StartConfig(t, cfg)
		a := register(t, s, "alice", pwd)
		session := wantChallenge(t, s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd}), "")
		s.Stop()

		restarted := *cfg
		restarted.Listen = "127.0.0.1:0"
		s = testenv.StartConfig(t, &restarted)
		r := s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd, "auth": pwAuth(session, "alice", pwd)})
		testenv.WantStatus(t, r, 200)
		login(t, s, passwordLogin("alice", newPwd))
	})
}

func TestRegistrationSessionContinuesOnAnotherServerProcess(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		cfg := testenv.TestConfig(t, b)
		s1 := testenv.StartConfig(t, cfg)
		second := *cfg
		second.Listen = "127.0.0.1:0"
		s2 := testenv.StartConfig(t, &second)
		session := wantChallenge(t, s1.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": pwd}), "")
		r := s2.Do(t, "POST", v3+"/register", "", map[string]any{"auth": map[string]any{"type": "m.login.dummy", "session": session}})
		testenv.WantStatus(t, r, 200)
		if r.Str("user_id") != "@alice:localhost" {
			t.Fatalf("register %s", r.Raw)
		}
		login(t, s1, passwordLogin("alice", pwd))
	})
}

func TestExpiredUIASessionIsRejected(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		session := wantChallenge(t, s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd}), "")
		// Its time has come (rather than waiting for it).
		if _, err := s.App.Store.DB.NewUpdate().Model((*storage.UIASession)(nil)).Set("expires_ts = ?", time.Now().UnixMilli()).
			Where("session_id = ?", session).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		r := s.Do(t, "POST", v3+"/account/password", a.Token, map[string]any{"new_password": newPwd, "auth": pwAuth(session, "alice", pwd)})
		testenv.WantError(t, r, 400, "M_UNKNOWN")
		login(t, s, passwordLogin("alice", pwd))
	})
}

func TestDeactivateRemovesDevicesAndTokensAndKeepsTheRow(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		a := register(t, s, "alice", pwd)
		other := login(t, s, passwordLogin("alice", pwd))
		session := wantChallenge(t, s.Do(t, "POST", v3+"/account/deactivate", a.Token, map[string]any{}), "")
		r := s.Do(t, "POST", v3+"/account/deactivate", a.Token, map[string]any{"auth": pwAuth(session, "alice", pwd)})
		testenv.WantStatus(t, r, 200)
		if r.Str("id_server_unbind_result") != "success" {
			t.Fatalf("deactivate %s", r.Raw)
		}
		wantTokenValid(t, s, a.Token, false)
		wantTokenValid(t, s, other.Token, false)
		if ids := deviceIDs(t, s, a.UserID); len(ids) != 0 {
			t.Fatalf("devices %v", ids)
		}
		if !userRow(t, s, a.UserID).Deactivated {
			t.Fatal("row not marked deactivated")
		}
	})
}
