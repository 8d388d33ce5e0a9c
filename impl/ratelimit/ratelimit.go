// Package ratelimit holds the token buckets in front of the credential
// endpoints (login, register, register/available, account/password,
// account/deactivate): one per client IP and one per target account, kept
// in each process's memory (golang.org/x/time/rate), and a stricter one on
// failed logins per account kept in the database, so that several server
// processes on one PostgreSQL share it and a password guesser gains
// nothing by spreading attempts over them.
//
// Over a limit the methods return 429 M_LIMIT_EXCEEDED with
// retry_after_ms and a Retry-After header (matrixerr.LimitExceeded). A nil
// *Limiter limits nothing (config rate_limit off).
package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Limiter is the set of buckets of one server process.
type Limiter struct {
	ip, account *keyed
	failed      *shared
	loginToken  *shared
}

// New returns the limiter for cfg, or nil when rate limits are off.
func New(cfg config.RateLimits, store *storage.Store) *Limiter {
	if !cfg.Enabled {
		return nil
	}
	lt := cfg.LoginToken
	if lt == (config.Bucket{}) {
		lt = config.Defaults().RateLimit.LoginToken
	}
	return &Limiter{
		ip:         newKeyed(cfg.PerIP),
		account:    newKeyed(cfg.PerAccount),
		failed:     &shared{Store: store, Rate: cfg.FailedLogin.Rate, Burst: cfg.FailedLogin.Burst, Prefix: "login:"},
		loginToken: &shared{Store: store, Rate: lt.Rate, Burst: lt.Burst, Prefix: "login_token:"},
	}
}

// Allow takes one token from the bucket of ip and one from the bucket of
// account (either may be "" to skip it).
func (l *Limiter) Allow(ip, account string) error {
	if l == nil {
		return nil
	}
	if ip != "" {
		if err := l.ip.take(ip); err != nil {
			return err
		}
	}
	if account != "" {
		return l.account.take(account)
	}
	return nil
}

// AllowLoginToken takes a token of account's bucket of issued login tokens
// (POST /login/get_token), shared by every process on the database.
func (l *Limiter) AllowLoginToken(ctx context.Context, account string) error {
	if l == nil {
		return nil
	}
	return l.loginToken.take(ctx, "login_token:"+account)
}

// BeginLogin takes a failed-login token of account before its password is
// checked; the caller calls Succeeded when the password was right, which
// gives the token back. Taking first makes the limit hold under concurrent
// attempts: a guess is only checked if the bucket could pay for its failure.
func (l *Limiter) BeginLogin(ctx context.Context, account string) (Attempt, error) {
	if l == nil {
		return Attempt{}, nil
	}
	if err := l.failed.take(ctx, "login:"+account); err != nil {
		return Attempt{}, err
	}
	return Attempt{b: l.failed, key: "login:" + account}, nil
}

// Attempt is a login attempt that has paid for its possible failure.
type Attempt struct {
	b   *shared
	key string
}

// Succeeded refunds the attempt's token: only failures count.
func (a Attempt) Succeeded(ctx context.Context) error {
	if a.b == nil {
		return nil
	}
	return a.b.refund(ctx, a.key)
}

// keyed is a set of in-memory buckets, one per key. Buckets that have
// refilled completely are dropped (a fresh one is the same), so the map
// stays as small as the set of recently active clients.
type keyed struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

func newKeyed(b config.Bucket) *keyed {
	return &keyed{limit: rate.Limit(b.Rate), burst: b.Burst, buckets: map[string]*rate.Limiter{}}
}

func (k *keyed) take(key string) error {
	now := time.Now()
	k.mu.Lock()
	if now.Sub(k.lastSweep) > time.Minute {
		for key, l := range k.buckets {
			if l.TokensAt(now) >= float64(k.burst) {
				delete(k.buckets, key)
			}
		}
		k.lastSweep = now
	}
	l := k.buckets[key]
	if l == nil {
		l = rate.NewLimiter(k.limit, k.burst)
		k.buckets[key] = l
	}
	k.mu.Unlock()
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return matrixerr.LimitExceeded(d)
	}
	return nil
}
