package sessions_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
	"github.com/myelin-hs/myelin/impl/uia"
)

// env is a sessions.Service on a fresh database, with the database
// authenticator that serves requests.
type env struct {
	svc   *sessions.Service
	store *storage.Store
	auth  *auth.DBAuthenticator
	cfg   *config.Config
}

const pwd = "correct horse battery"

func newEnv(t *testing.T, b testenv.Backend, mutate func(*config.Config)) *env {
	t.Helper()
	st, err := storage.Open(context.Background(), testenv.NewDatabase(t, b), storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Defaults()
	cfg.ServerName = "test"
	cfg.RateLimit.Enabled = false
	if mutate != nil {
		mutate(&cfg)
	}
	hasher := passwords.New(passwords.Params{MemoryKiB: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, nil)
	creds := &credentials.Checker{Store: st, Hasher: hasher, ServerName: cfg.ServerName}
	core := &devices.Core{Store: st}
	svc := &sessions.Service{Store: st, Config: &cfg, Devices: core,
		UIA: &uia.Engine{Store: st, Credentials: creds, TTL: time.Minute}}
	return &env{svc: svc, store: st, auth: &auth.DBAuthenticator{Store: st}, cfg: &cfg}
}

// addUser creates an active account with password pwd.
func (e *env) addUser(t *testing.T, userID string) {
	t.Helper()
	h, err := e.svc.UIA.Credentials.Hasher.Hash(pwd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.DB.NewInsert().Model(&storage.User{UserID: userID, PasswordHash: h, CreatedTS: 1}).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// login binds a new token to deviceID ("" generates one), with a refresh
// token if refresh.
func (e *env) login(t *testing.T, userID, deviceID string, refresh bool) (devices.Login, sessions.Tokens) {
	t.Helper()
	var l devices.Login
	var tk sessions.Tokens
	err := e.store.Tx(context.Background(), func(ctx context.Context, tx bun.Tx) (err error) {
		if l, err = e.svc.Devices.IssueToken(ctx, tx, userID, deviceID, nil, ""); err != nil || !refresh {
			return err
		}
		tk, err = e.svc.AttachRefresh(ctx, tx, userID, l.DeviceID, l.AccessToken)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, tk
}

func (e *env) refresh(t *testing.T, rt string) sessions.Tokens {
	t.Helper()
	tk, err := e.svc.Refresh(context.Background(), rt, "")
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return tk
}

// use authenticates a request with token and returns the error (nil when
// it is accepted).
func (e *env) use(t *testing.T, token string) (auth.Principal, error) {
	t.Helper()
	return e.auth.Authenticate(context.Background(), token)
}

func wantOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("want success, got %v", err)
	}
}

// wantErr asserts a Matrix error with status, code and soft_logout (nil:
// not checked).
func wantErr(t *testing.T, err error, status int, code string, softLogout *bool) {
	t.Helper()
	me, ok := matrixerr.As(err)
	if !ok {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
	if me.Status != status || me.Code != code {
		t.Fatalf("want %d %s, got %d %s (%s)", status, code, me.Status, me.Code, me.Message)
	}
	if softLogout != nil {
		if got, _ := me.Extra["soft_logout"].(bool); got != *softLogout {
			t.Fatalf("want soft_logout %v, got %v", *softLogout, me.Extra)
		}
	}
}

var (
	yes = new(bool)
	no  = new(bool)
)

func init() { *yes = true }

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func matrixerrAs(err error) (*matrixerr.Error, bool) { return matrixerr.As(err) }
