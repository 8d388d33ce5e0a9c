// Package testenv starts real Myelin servers for tests: real HTTP on
// loopback, on a real SQLite file or a fresh PostgreSQL database.
//
// PostgreSQL: MYELIN_TEST_POSTGRES is an admin DSN (default
// postgres://postgres@127.0.0.1:5432/postgres). Each test gets its own
// database, dropped afterwards. When no server answers, PostgreSQL subtests
// are skipped, unless MYELIN_TEST_REQUIRE_POSTGRES=1 (set by CI), which
// turns that into a failure.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/myelin-hs/myelin/conformance/validate"
	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
)

// Backend is a database kind under test.
type Backend string

const (
	SQLite   Backend = "sqlite"
	Postgres Backend = "postgres"
)

// AdminDSN is the PostgreSQL DSN used to create test databases.
func AdminDSN() string {
	if v := os.Getenv("MYELIN_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	pgOnce sync.Once
	pgErr  error
)

func pgAvailable() error {
	pgOnce.Do(func() {
		db, err := sql.Open("pgx", AdminDSN())
		if err != nil {
			pgErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		pgErr = db.PingContext(ctx)
	})
	return pgErr
}

// ForEachBackend runs fn as a subtest on SQLite and on PostgreSQL.
func ForEachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range []Backend{SQLite, Postgres} {
		t.Run(string(b), func(t *testing.T) {
			RequireBackend(t, b)
			fn(t, b)
		})
	}
}

// RequireBackend skips (or, in CI, fails) when b is not available.
func RequireBackend(t testing.TB, b Backend) {
	t.Helper()
	if b != Postgres {
		return
	}
	if err := pgAvailable(); err != nil {
		if os.Getenv("MYELIN_TEST_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL required but not reachable at %s: %v", AdminDSN(), err)
		}
		t.Skipf("PostgreSQL not reachable (%v); set MYELIN_TEST_POSTGRES", err)
	}
}

// NewDatabase returns the DSN of a fresh, empty database of kind b.
func NewDatabase(t testing.TB, b Backend) string {
	t.Helper()
	if b == SQLite {
		return filepath.Join(t.TempDir(), "myelin.db")
	}
	RequireBackend(t, b)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "myelin_t_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		admin.Close()
	})
	u, err := url.Parse(AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestConfig is a configuration suited to tests: cheap argon2id, rate
// limits off, registration open, a fresh database of kind b.
func TestConfig(t testing.TB, b Backend) *config.Config {
	t.Helper()
	c := config.Defaults()
	c.Listen = "127.0.0.1:0"
	c.Database = NewDatabase(t, b)
	c.Registration = config.RegistrationOpen
	c.RateLimit.Enabled = false
	c.Argon2 = config.Argon2{MemoryKiB: 1024, Iterations: 1, Parallelism: 1}
	c.LogLevel = "warn"
	return &c
}

// Server is a running in-process server.
type Server struct {
	URL    string
	App    *app.App
	Config *config.Config
	stop   context.CancelFunc
	done   chan error
}

// Start starts a server on a loopback port with TestConfig, changed by
// mutate if not nil. It is stopped when the test ends.
func Start(t testing.TB, b Backend, mutate func(c *config.Config)) *Server {
	t.Helper()
	c := TestConfig(t, b)
	if mutate != nil {
		mutate(c)
	}
	return StartConfig(t, c)
}

// StartConfig starts a server with exactly cfg.
func StartConfig(t testing.TB, cfg *config.Config) *Server {
	t.Helper()
	if err := cfg.Verify(); err != nil {
		t.Fatalf("config: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		ln.Close()
		t.Fatalf("app.New: %v", err)
	}
	checkResponses(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{URL: "http://" + ln.Addr().String(), App: a, Config: cfg, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Serve(ctx, ln) }()
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down gracefully (idempotent).
func (s *Server) Stop() {
	if s.stop == nil {
		return
	}
	s.stop()
	s.stop = nil
	<-s.done
	s.App.Close()
}

var (
	validatorOnce sync.Once
	validator     *validate.Validator
	validatorErr  error
)

// checkResponses makes every response of a test server checked against the
// spec (conformance/validate): a violation fails the test that started the
// server. Benchmarks are left unchecked so they measure the server alone;
// `make test` runs no benchmarks.
func checkResponses(t testing.TB, a *app.App) {
	t.Helper()
	if _, bench := t.(*testing.B); bench {
		return
	}
	validatorOnce.Do(func() { validator, validatorErr = validate.New() })
	if validatorErr != nil {
		t.Fatalf("response validator: %v", validatorErr)
	}
	a.Echo.Pre(validator.Middleware(func(err error) {
		t.Errorf("response violates the spec: %v", err)
	}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Response is a decoded JSON response.
type Response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// Str returns Body[key] as a string ("" if absent).
func (r Response) Str(key string) string { s, _ := r.Body[key].(string); return s }

// Do sends a request with an optional bearer token and JSON body (a
// string or []byte is sent as is) and decodes the JSON answer.
func (s *Server) Do(t testing.TB, method, path, token string, body any) Response {
	t.Helper()
	return Do(t, s.URL, method, path, token, body)
}

// Do is Server.Do against any base URL.
func Do(t testing.TB, base, method, path, token string, body any) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return DoRequest(t, req)
}

// DoRequest sends req and decodes the JSON answer like Do, for requests Do
// does not build (signed federation requests, other headers).
func DoRequest(t testing.TB, req *http.Request) Response {
	t.Helper()
	return doRequest(t, http.DefaultClient, req)
}

// noFollow is a client that answers a redirect as it is.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// DoRequestNoFollow is DoRequest answering a redirect (3xx) as it is,
// not following it.
func DoRequestNoFollow(t testing.TB, req *http.Request) Response {
	t.Helper()
	return doRequest(t, noFollow, req)
}

func doRequest(t testing.TB, client *http.Client, req *http.Request) Response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: response is not a JSON object: %v: %s", req.Method, req.URL.Path, err, raw)
		}
	}
	return r
}

// WantError fails unless r is a Matrix error with the status and errcode.
func WantError(t testing.TB, r Response, status int, errcode string) {
	t.Helper()
	if r.Status != status || r.Str("errcode") != errcode {
		t.Fatalf("want %d %s, got %d %s", status, errcode, r.Status, r.Raw)
	}
	if _, ok := r.Body["error"].(string); !ok {
		t.Fatalf("Matrix error without an error message: %s", r.Raw)
	}
}

// WantStatus fails unless r has the status.
func WantStatus(t testing.TB, r Response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want %d, got %d: %s", status, r.Status, r.Raw)
	}
}
