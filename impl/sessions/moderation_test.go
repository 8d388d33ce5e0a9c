package sessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

const (
	bob   = "@bob:test"
	admin = "@root:test"
)

func TestLockedAccountKeepsItsTokensButOnlyLogsOut(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		l, tk := e.login(t, alice, "", true)
		ctx := context.Background()
		wantOK(t, e.svc.SetFlag(ctx, alice, sessions.FlagLocked, true))
		p, err := e.use(t, l.AccessToken)
		wantOK(t, err)
		if !p.Locked {
			t.Fatal("principal not locked")
		}
		wantErr(t, sessions.Gate(p, false), 401, "M_USER_LOCKED", yes)
		wantOK(t, sessions.Gate(p, true))
		_, err = e.svc.Refresh(ctx, tk.RefreshToken, "")
		wantErr(t, err, 401, "M_USER_LOCKED", yes)
		wantOK(t, e.svc.SetFlag(ctx, alice, sessions.FlagLocked, false))
		p, err = e.use(t, l.AccessToken)
		wantOK(t, err)
		wantOK(t, sessions.Gate(p, false))
		e.refresh(t, tk.RefreshToken)
	})
}

func TestFlagChangesAreAnnouncedToOtherProcessesCaches(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		l, _ := e.login(t, alice, "", false)
		// Another process's token cache, following the revocation feed.
		other := auth.NewCache(e.store, 100, testLog(t))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go other.Run(ctx)
		waitCached(t, other, l.AccessToken)
		for _, f := range []sessions.Flag{sessions.FlagLocked, sessions.FlagSuspended, sessions.FlagAdmin} {
			wantOK(t, e.svc.SetFlag(ctx, alice, f, true))
			p := eventually(t, other, l.AccessToken, func(p auth.Principal) bool {
				switch f {
				case sessions.FlagLocked:
					return p.Locked
				case sessions.FlagSuspended:
					return p.Suspended
				}
				return p.Admin
			})
			if !p.Locked {
				t.Fatalf("%s: lost the lock: %+v", f, p)
			}
		}
	})
}

func waitCached(t *testing.T, c *auth.Cache, token string) {
	t.Helper()
	eventually(t, c, token, func(auth.Principal) bool { return c.Len() > 0 })
}

// eventually authenticates token on c until ok holds, for at most the
// second the design promises (plus slack for a loaded machine).
func eventually(t *testing.T, c *auth.Cache, token string, ok func(auth.Principal) bool) auth.Principal {
	t.Helper()
	deadline := time.Now().Add(1500 * time.Millisecond)
	for {
		p, err := c.Authenticate(context.Background(), token)
		wantOK(t, err)
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("not seen within a second: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func principal(t *testing.T, e *env, userID string) auth.Principal {
	t.Helper()
	l, _ := e.login(t, userID, "", false)
	p, err := e.use(t, l.AccessToken)
	wantOK(t, err)
	return p
}

func TestAdminEndpointsCheckTheCallerBeforeTheTarget(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		ctx := context.Background()
		for _, u := range []string{alice, bob, admin, "@root2:test"} {
			e.addUser(t, u)
		}
		wantOK(t, e.svc.SetFlag(ctx, admin, sessions.FlagAdmin, true))
		wantOK(t, e.svc.SetFlag(ctx, "@root2:test", sessions.FlagAdmin, true))
		pa, pr := principal(t, e, alice), principal(t, e, admin)
		for _, f := range []sessions.Flag{sessions.FlagLocked, sessions.FlagSuspended} {
			// A non-admin learns nothing, whatever the target.
			for _, target := range []string{bob, "@nobody:test", "@x:elsewhere", alice} {
				_, err := e.svc.AdminGet(ctx, pa, target, f)
				wantErr(t, err, 403, "M_FORBIDDEN", nil)
				_, err = e.svc.AdminSet(ctx, pa, target, f, true)
				wantErr(t, err, 403, "M_FORBIDDEN", nil)
			}
			_, err := e.svc.AdminSet(ctx, pr, "@x:elsewhere", f, true)
			wantErr(t, err, 400, "M_INVALID_PARAM", nil)
			_, err = e.svc.AdminSet(ctx, pr, "@nobody:test", f, true)
			wantErr(t, err, 404, "M_NOT_FOUND", nil)
			_, err = e.svc.AdminSet(ctx, pr, "@root2:test", f, true)
			wantErr(t, err, 403, "M_FORBIDDEN", nil)
			_, err = e.svc.AdminSet(ctx, pr, admin, f, true)
			wantErr(t, err, 403, "M_FORBIDDEN", nil)
			on, err := e.svc.AdminGet(ctx, pr, bob, f)
			if err != nil || on {
				t.Fatalf("%s before: %v %v", f, on, err)
			}
			if on, err = e.svc.AdminSet(ctx, pr, bob, f, true); err != nil || !on {
				t.Fatalf("%s set: %v %v", f, on, err)
			}
			if on, err = e.svc.AdminGet(ctx, pr, bob, f); err != nil || !on {
				t.Fatalf("%s after: %v %v", f, on, err)
			}
		}
		st, err := e.svc.Status(ctx, bob)
		if err != nil || !st.Locked || !st.Suspended || st.Admin {
			t.Fatalf("status %+v %v", st, err)
		}
		// A deactivated account is not found.
		if _, err := e.store.DB.NewUpdate().Model((*storage.User)(nil)).Set("deactivated = ?", true).Where("user_id = ?", bob).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.AdminGet(ctx, pr, bob, sessions.FlagLocked)
		wantErr(t, err, 404, "M_NOT_FOUND", nil)
		// Losing the flag takes the power at once.
		wantOK(t, e.svc.SetFlag(ctx, admin, sessions.FlagAdmin, false))
		_, err = e.svc.AdminGet(ctx, pr, alice, sessions.FlagLocked)
		wantErr(t, err, 403, "M_FORBIDDEN", nil)
	})
}

func TestWhoIsIsForTheUserThemselfAndAdmins(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		ctx := context.Background()
		for _, u := range []string{alice, bob, admin} {
			e.addUser(t, u)
		}
		wantOK(t, e.svc.SetFlag(ctx, admin, sessions.FlagAdmin, true))
		pa, pr := principal(t, e, alice), principal(t, e, admin)
		var seenTS int64 = 1700000000000
		ip := "203.0.113.9"
		if _, err := e.store.DB.NewUpdate().Model((*storage.Device)(nil)).Set("last_seen_ts = ?, last_seen_ip = ?", seenTS, ip).
			Where("user_id = ? AND device_id = ?", alice, pa.DeviceID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, caller := range []auth.Principal{pa, pr} {
			w, err := e.svc.WhoIs(ctx, caller, alice)
			wantOK(t, err)
			c := w.Devices[pa.DeviceID]
			if w.UserID != alice || len(w.Devices) != 1 || len(c) != 1 || c[0].IP != ip || c[0].LastSeen != seenTS {
				t.Fatalf("whois %+v", w)
			}
		}
		_, err := e.svc.WhoIs(ctx, pa, bob)
		wantErr(t, err, 403, "M_FORBIDDEN", nil)
		_, err = e.svc.WhoIs(ctx, pa, "@nobody:test")
		wantErr(t, err, 403, "M_FORBIDDEN", nil)
		_, err = e.svc.WhoIs(ctx, pr, "@nobody:test")
		wantErr(t, err, 404, "M_NOT_FOUND", nil)
		if _, err := e.svc.WhoIs(ctx, pa, admin); err == nil {
			t.Fatal("non-admin looked an admin up")
		}
	})
}

func TestLoginTokenNeedsFreshUIAEveryTime(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		ctx := context.Background()
		e.addUser(t, alice)
		pa := principal(t, e, alice)
		_, err := e.svc.GetLoginToken(ctx, pa, nil, "")
		wantErr(t, err, 404, "M_UNRECOGNIZED", nil)
		e.cfg.GetLoginToken = true
		_, err = e.svc.GetLoginToken(ctx, pa, nil, "")
		me, _ := matrixerrAs(err)
		if me == nil || me.Status != 401 || me.Extra["session"] == nil {
			t.Fatalf("want a UIA challenge, got %v", err)
		}
		session := me.Extra["session"].(string)
		dict := map[string]any{"type": "m.login.password", "session": session, "password": pwd,
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}}
		lt, err := e.svc.GetLoginToken(ctx, pa, dict, "")
		wantOK(t, err)
		if lt.ExpiresInMS != e.cfg.LoginTokenTTL.Milliseconds() || len(lt.Token) < 40 {
			t.Fatalf("login token %+v", lt)
		}
		var row storage.LoginToken
		if err := e.store.R.NewSelect().Model(&row).Scan(ctx); err != nil || row.UserID != alice || row.TokenHash == lt.Token {
			t.Fatalf("stored %+v %v", row, err)
		}
		// The finished session does not give a second token: a new challenge.
		_, err = e.svc.GetLoginToken(ctx, pa, dict, "")
		me, _ = matrixerrAs(err)
		if me == nil || me.Status != 401 || me.Extra["session"] == session {
			t.Fatalf("want a fresh challenge, got %v", err)
		}
		// Guests have no password to consent with.
		pa.IsGuest = true
		_, err = e.svc.GetLoginToken(ctx, pa, dict, "")
		wantErr(t, err, 403, "M_GUEST_ACCESS_FORBIDDEN", nil)
	})
}

func TestCapabilitiesFollowTheCallerAndTheServer(t *testing.T) {
	e := &sessions.Service{Config: &config.Config{}}
	user := e.Capabilities(auth.Principal{}).JSON()
	want := map[string]bool{"m.change_password": true, "m.3pid_changes": true, "m.get_login_token": false,
		"m.set_displayname": false, "m.set_avatar_url": false, "m.profile_fields": false}
	for k, v := range want {
		if user[k].(map[string]any)["enabled"] != v {
			t.Fatalf("%s: %v", k, user[k])
		}
	}
	if _, ok := user["m.account_moderation"]; ok {
		t.Fatal("moderation advertised to a non-admin")
	}
	e.Config.GetLoginToken = true
	c := e.Capabilities(auth.Principal{Admin: true, Suspended: true})
	if !c.GetLoginToken || c.ThreePIDChanges || !c.Lock || !c.Suspend {
		t.Fatalf("admin %+v", c)
	}
	if m := c.JSON()["m.account_moderation"].(map[string]any); m["lock"] != true || m["suspend"] != true {
		t.Fatalf("moderation %v", m)
	}
	g := e.Capabilities(auth.Principal{IsGuest: true})
	if g.ChangePassword || g.ThreePIDChanges || g.GetLoginToken {
		t.Fatalf("guest %+v", g)
	}
}
