package sessions_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/tokens"
)

const alice = "@alice:test"

func TestRefreshIssuesAnExpiringTokenAndRotatesBoth(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.AccessTokenLifetime = 90 * time.Second })
		e.addUser(t, alice)
		l, tk := e.login(t, alice, "PHONE", true)
		if tk.RefreshToken == "" || tk.ExpiresInMS != 90000 {
			t.Fatalf("tokens %+v", tk)
		}
		p, err := e.use(t, l.AccessToken)
		wantOK(t, err)
		if p.ExpiresTS == 0 || p.ExpiresTS > time.Now().Add(91*time.Second).UnixMilli() {
			t.Fatalf("expiry %d", p.ExpiresTS)
		}
		next := e.refresh(t, tk.RefreshToken)
		if next.AccessToken == l.AccessToken || next.RefreshToken == tk.RefreshToken || next.ExpiresInMS != 90000 {
			t.Fatalf("refresh %+v", next)
		}
		_, err = e.use(t, l.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		p, err = e.use(t, next.AccessToken)
		wantOK(t, err)
		if p.DeviceID != "PHONE" || p.UserID != alice {
			t.Fatalf("principal %+v", p)
		}
		// Stored only as hashes.
		n, err := e.store.R.NewSelect().Model((*storage.RefreshToken)(nil)).
			Where("token_hash IN (?, ?)", tokens.HashToken(tk.RefreshToken).String(), tokens.HashToken(next.RefreshToken).String()).Count(context.Background())
		if err != nil || n != 2 {
			t.Fatalf("hashed rows %d %v", n, err)
		}
	})
}

func TestTokensWithoutRefreshNeverExpire(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		e.svc.Now = func() time.Time { return time.Now().Add(-24 * time.Hour) }
		l, _ := e.login(t, alice, "", false)
		p, err := e.use(t, l.AccessToken)
		wantOK(t, err)
		if p.ExpiresTS != 0 {
			t.Fatalf("expiry %d", p.ExpiresTS)
		}
	})
}

func TestOldRefreshTokenWorksUntilTheNewAccessTokenIsUsedThenItsReuseRevokesTheSession(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		_, r1 := e.login(t, alice, "PHONE", true)
		lost := e.refresh(t, r1.RefreshToken) // the answer never reached the client
		retry := e.refresh(t, r1.RefreshToken)
		// The lost pair is gone, the retried one works.
		_, err := e.use(t, lost.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		_, err = e.svc.Refresh(context.Background(), lost.RefreshToken, "")
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		_, err = e.use(t, retry.AccessToken)
		wantOK(t, err)
		// Now that the new access token was used, r1 is consumed: a thief
		// presenting it revokes the whole session.
		_, err = e.svc.Refresh(context.Background(), r1.RefreshToken, "")
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		_, err = e.use(t, retry.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		_, err = e.svc.Refresh(context.Background(), retry.RefreshToken, "")
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		// The device and its keys stay: the owner can log in to it again.
		if ok, err := e.store.R.NewSelect().Model((*storage.Device)(nil)).Where("user_id = ? AND device_id = ?", alice, "PHONE").Exists(context.Background()); err != nil || !ok {
			t.Fatalf("device gone: %v %v", ok, err)
		}
		l, _ := e.login(t, alice, "PHONE", false)
		_, err = e.use(t, l.AccessToken)
		wantOK(t, err)
	})
}

func TestUsingTheNewRefreshTokenConsumesTheOldOne(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		_, r1 := e.login(t, alice, "", true)
		r2 := e.refresh(t, r1.RefreshToken)
		r3 := e.refresh(t, r2.RefreshToken)
		_, err := e.use(t, r3.AccessToken)
		wantOK(t, err)
		_, err = e.svc.Refresh(context.Background(), r1.RefreshToken, "")
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		_, err = e.use(t, r3.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
	})
}

func TestExpiredAccessTokenIsSoftLoggedOutAndRefreshRestoresTheDevice(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		e.svc.Now = func() time.Time { return time.Now().Add(-time.Hour) } // issued an hour ago
		l, tk := e.login(t, alice, "PHONE", true)
		e.svc.Now = nil
		_, err := e.use(t, l.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", yes)
		next := e.refresh(t, tk.RefreshToken)
		p, err := e.use(t, next.AccessToken)
		wantOK(t, err)
		if p.DeviceID != "PHONE" {
			t.Fatalf("device %s", p.DeviceID)
		}
	})
}

func TestTokenCacheHonoursExpiry(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.AccessTokenLifetime = time.Second })
		e.addUser(t, alice)
		cache := auth.NewCache(e.store, 100, testLog(t))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go cache.Run(ctx)
		l, _ := e.login(t, alice, "", true)
		deadline := time.Now().Add(5 * time.Second)
		for cache.Len() == 0 { // until the feed is current and the token cached
			if time.Now().After(deadline) {
				t.Fatal("token never cached")
			}
			_, err := cache.Authenticate(ctx, l.AccessToken)
			wantOK(t, err)
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(1100 * time.Millisecond)
		_, err := cache.Authenticate(ctx, l.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", yes)
	})
}

func TestConcurrentRefreshesWithOneTokenExactlyOneWins(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		_, tk := e.login(t, alice, "PHONE", true)
		for round := range 3 {
			const n = 4
			var seen sync.WaitGroup
			seen.Add(n)
			// Every request has read the token before any transaction runs.
			sessions.SetAfterSeen(e.svc, func() { seen.Done(); seen.Wait() })
			results := make([]sessions.Tokens, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = e.svc.Refresh(context.Background(), tk.RefreshToken, "")
				}()
			}
			wg.Wait()
			sessions.SetAfterSeen(e.svc, nil)
			winner := -1
			for i, err := range errs {
				if err == nil {
					if winner >= 0 {
						t.Fatalf("round %d: two refreshes won", round)
					}
					winner = i
					continue
				}
				wantErr(t, err, 401, "M_UNKNOWN_TOKEN", yes)
			}
			if winner < 0 {
				t.Fatalf("round %d: no refresh won: %v", round, errs)
			}
			_, err := e.use(t, results[winner].AccessToken)
			wantOK(t, err)
			tk = results[winner]
		}
	})
}

func TestLoginWithTheDeviceIDRevokesItsRefreshTokens(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		_, tk := e.login(t, alice, "PHONE", true)
		e.login(t, alice, "PHONE", false)
		_, err := e.svc.Refresh(context.Background(), tk.RefreshToken, "")
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
	})
}

func TestDeletingTheDeviceDeletesItsRefreshTokens(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		e.addUser(t, alice)
		_, tk := e.login(t, alice, "PHONE", true)
		e.refresh(t, tk.RefreshToken)
		if _, err := e.svc.Devices.Delete(context.Background(), alice, []string{"PHONE"}, nil); err != nil {
			t.Fatal(err)
		}
		n, err := e.store.R.NewSelect().Model((*storage.RefreshToken)(nil)).Count(context.Background())
		if err != nil || n != 0 {
			t.Fatalf("refresh tokens left: %d %v", n, err)
		}
		_, err = e.svc.Refresh(context.Background(), tk.RefreshToken, "")
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
	})
}

func TestUnknownRefreshTokenIsUnknownToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newEnv(t, b, nil)
		for _, tok := range []string{"", "myl_refresh_nope", "\x00"} {
			_, err := e.svc.Refresh(context.Background(), tok, "")
			wantErr(t, err, 401, "M_UNKNOWN_TOKEN", no)
		}
	})
}
