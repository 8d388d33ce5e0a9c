// Package app assembles a Myelin server from its configuration: the
// database, the domain services, and the HTTP layer. cmd/myelin and the
// end-to-end tests both build servers through it.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/accountdata"
	"github.com/myelin-hs/myelin/impl/accountpage"
	"github.com/myelin-hs/myelin/impl/accounts"
	"github.com/myelin-hs/myelin/impl/appservice"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/csapi"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/fallback"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/keybackup"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/metrics"
	"github.com/myelin-hs/myelin/impl/oauth"
	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/server"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/ssapi"
	"github.com/myelin-hs/myelin/impl/ssocompat"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/syncstream"
	"github.com/myelin-hs/myelin/impl/todevice"
	"github.com/myelin-hs/myelin/impl/uia"
	"github.com/myelin-hs/myelin/impl/wake"
	"github.com/myelin-hs/myelin/impl/web"
)

// App is one running server.
type App struct {
	Config *config.Config
	Log    *slog.Logger
	Store  *storage.Store
	Echo   *echo.Echo
	Auth   auth.Authenticator
	// Services are the domain services the HTTP layer calls.
	Services *Services

	// Devices is the device core; its revocations reach the token cache.
	Devices    *devices.Core
	LastSeen   *devices.LastSeen
	Keys       *e2ekeys.Service
	Federation *federation.Service
	// Wake wakes this process's /sync long polls (see impl/wake); Sync
	// serves /sync and /keys/changes.
	Wake *wake.Hub
	Sync *syncstream.Service
	// Web serves the pages under /_myelin/ (sign-in, account page).
	Web *web.Site
	// Metrics is nil unless cfg.MetricsListen is set; metricsLn is its
	// listener, bound by New so that a bad address fails at start-up.
	Metrics   *metrics.Metrics
	metricsLn net.Listener
	// fedLn is the federation listener (TLS with certs), bound by New
	// when cfg.FederationListen is set.
	fedLn net.Listener
	certs *certReloader

	// background tasks run while serving; shutdown hooks run after the
	// HTTP server has drained (e.g. flushing buffered last-seen updates).
	background []func(ctx context.Context)
	shutdown   []func(ctx context.Context) error
	// stopping run when shutdown begins (e.g. long polls answer at once).
	stopping []func()
}

// New opens the database (applying migrations) and builds the server.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*App, error) {
	store, err := storage.Open(ctx, cfg.Database, storage.Options{MaxConns: cfg.DatabaseMaxConns})
	if err != nil {
		return nil, err
	}
	a := &App{Config: cfg, Log: log, Store: store}
	a.Auth = &auth.DBAuthenticator{Store: store}
	a.Services = NewServices(cfg, store)
	// Only the server buffers last-seen updates (the CLI's services, built
	// by NewServices alone, have no buffer to flush).
	a.LastSeen = &devices.LastSeen{Store: store, Log: log}
	a.Devices = a.Services.Devices
	a.Devices.Seen = a.LastSeen
	a.background = append(a.background, func(ctx context.Context) { a.LastSeen.Run(ctx, cfg.LastSeenFlushInterval) })
	a.shutdown = append(a.shutdown, a.LastSeen.Flush)
	if cfg.TokenCacheSize > 0 {
		cache := auth.NewCache(store, cfg.TokenCacheSize, log)
		a.Auth = cache
		a.Devices.Revoked = cache.Revoked
		a.background = append(a.background, cache.Run)
	}

	if err := a.Services.AppServices.Load(cfg.AppServiceConfigFiles); err != nil {
		store.Close()
		return nil, err
	}

	a.Keys = a.Services.Keys
	if a.Federation, err = federation.New(ctx, cfg, store, log, a.Keys); err != nil {
		store.Close()
		return nil, err
	}
	// The sender is woken once a device change (and its EDUs) commits;
	// remote users' keys come from the federation cache.
	a.Services.Outbox.Poke = a.Federation.Sender.Poke
	a.Keys.Remote = a.Federation.Lists
	a.background = append(a.background, a.Federation.Background()...)

	// Send-to-device and /sync: messages to other servers go through the
	// outbox (woken with it), incoming ones through the receiver.
	a.Services.ToDevice.Log = log
	a.Federation.Receiver.Handlers = map[string]federation.EDUHandler{todevice.EDUType: a.Services.ToDevice.Receive}
	a.Wake = wake.NewHub(store, log)
	a.Sync = &syncstream.Service{Store: store, Hub: a.Wake, Keys: syncstream.E2EKeyCounts{Keys: a.Keys},
		Sources: []syncstream.Source{
			syncstream.ToDeviceSource{ToDevice: a.Services.ToDevice},
			syncstream.DeviceListSource{Store: store},
			syncstream.AccountDataSource{Since: a.Services.AccountData.SyncEvents},
		}}
	a.background = append(a.background, a.Wake.Run, a.Services.ToDevice.Run)
	a.stopping = append(a.stopping, a.Sync.Stop)

	var observe echo.MiddlewareFunc
	if cfg.MetricsListen != "" {
		if a.metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			store.Close()
			return nil, fmt.Errorf("metrics-listen: %w", err)
		}
		a.Metrics = metrics.New()
		a.registerMetrics()
		observe = a.Metrics.Middleware()
	}

	if cfg.FederationListen != "" {
		if a.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			a.Close()
			return nil, err
		}
		if a.fedLn, err = net.Listen("tcp", cfg.FederationListen); err != nil {
			a.Close()
			return nil, fmt.Errorf("federation-listen: %w", err)
		}
	}

	a.Web = web.New(web.Deps{Store: store, BaseURL: cfg.BaseURL(), ServerName: cfg.ServerName,
		Passwords: a.Services.Accounts, Log: log})
	cs := &csapi.Server{Config: cfg, UIA: a.Services.UIA, Devices: a.Devices, Accounts: a.Services.Accounts, Keys: a.Keys,
		AccountData: a.Services.AccountData, KeyBackup: a.Services.KeyBackup,
		ToDevice: a.Services.ToDevice, Streams: a.Sync, Sessions: a.Services.Sessions,
		AppServices: a.Services.AppServices, OAuth: a.Services.OAuth}
	ss := &ssapi.Server{Fed: a.Federation}

	e, err := server.New(server.Deps{
		Config:     cfg,
		Log:        log,
		Client:     cs,
		Federation: ss,
		Security: map[string]server.SecurityFunc{
			"accessToken":   a.authenticateClient,
			"signedRequest": a.authenticateServer,
		},
		Routes:  a.routes,
		Observe: observe,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	e.Use(requestToken)
	a.Echo = e
	return a, nil
}

// routes registers what the specs do not describe: the UIA fallback pages
// and, with OAuth on, the OAuth 2.0 endpoints and pages.
func (a *App) routes(e *echo.Echo) {
	(&fallback.Handler{Stages: a.Services.UIA, Limits: a.Services.Accounts.Limits, ServerName: a.Config.ServerName}).Register(e)
	mounts := []func(g *echo.Group, s *web.Site){(&accountpage.Handler{Devices: a.Devices, Accounts: a.Services.Accounts,
		UIA: a.Services.UIA}).Mount}
	if a.Services.OAuth != nil {
		(&oauth.Handler{OAuth: a.Services.OAuth, Auth: a.Auth, Log: a.Log}).Mount(e)
		mounts = append(mounts, (&oauth.Pages{OAuth: a.Services.OAuth, Accounts: a.Services.Accounts,
			RegistrationMode: a.Config.Registration}).Mount)
		if ssocompat.Enabled(a.Config) {
			mounts = append(mounts, (&ssocompat.Pages{SSO: &ssocompat.Service{Tokens: a.Services.Sessions, Limits: a.Services.Sessions.Limits}}).Mount)
		}
	} else {
		oauth.MountDisabled(e)
	}
	a.Web.Mount(e, mounts...)
}

// Services are the domain services over one database. The server and the
// admin CLI build them the same way, so an admin change runs the same code
// (and the same device-change hooks) as an HTTP request.
type Services struct {
	Devices  *devices.Core
	UIA      *uia.Engine
	Accounts *accounts.Service
	// Sessions: refresh and login tokens, locks, suspensions, admins.
	Sessions *sessions.Service
	Keys     *e2ekeys.Service
	// Outbox queues the federation EDUs of every device change, in the
	// change's transaction (the hook of Devices).
	Outbox *federation.Outbox
	// ToDevice queues send-to-device messages.
	ToDevice *todevice.Service
	// AccountData and KeyBackup are the user's stores; they go with the
	// account on deactivation.
	AccountData *accountdata.Service
	KeyBackup   *keybackup.Service
	// OAuth is the OAuth 2.0 authorisation server (nil with --auth legacy).
	OAuth *oauth.Service
	// AppServices are the application services' registrations (loaded
	// by New, and by the admin commands that show them).
	AppServices *appservice.Registry
}

// NewServices builds the domain services of cfg on store.
func NewServices(cfg *config.Config, store *storage.Store) *Services {
	creds := &credentials.Checker{Store: store, Hasher: PasswordHasher(cfg), ServerName: cfg.ServerName}
	limits := ratelimit.New(cfg.RateLimit, store)
	outbox := federation.NewOutbox(cfg)
	sv := &Services{
		// A device change also wakes its user's waiting /sync (in this
		// process and, through the database, in every other).
		Devices: &devices.Core{Store: store, Hooks: []devices.ChangeHook{outbox.Hook, syncstream.DeviceListHook}},
		Outbox:  outbox,
		UIA: &uia.Engine{Store: store, Credentials: creds, Limits: limits, TTL: cfg.UIASessionTTL,
			OAuth: uia.NoOAuthSessions{}, AccountPage: cfg.BaseURL() + web.AccountPath},
	}
	sv.Sessions = &sessions.Service{Store: store, Config: cfg, Devices: sv.Devices, UIA: sv.UIA, Limits: limits}
	sv.AppServices = appservice.NewRegistry(cfg.ServerName)
	sv.Accounts = &accounts.Service{Store: store, Config: cfg, Devices: sv.Devices, UIA: sv.UIA,
		Credentials: creds, Limits: limits, Sessions: sv.Sessions, AppServices: sv.AppServices}
	sv.Keys = &e2ekeys.Service{Store: store, Devices: sv.Devices, ServerName: cfg.ServerName}
	sv.ToDevice = &todevice.Service{Store: store, ServerName: cfg.ServerName, Remote: outbox}
	// An account data change wakes the user's waiting /sync.
	sv.AccountData = &accountdata.Service{Store: store, Waker: accountdata.WakerFunc(
		func(ctx context.Context, tx bun.IDB, userID string, _ int64) error {
			return wake.Publish(ctx, tx, userID)
		})}
	sv.KeyBackup = &keybackup.Service{Store: store, Rate: limits}
	if cfg.OAuthEnabled() {
		sv.OAuth = &oauth.Service{Store: store, Config: cfg, Devices: sv.Devices, Sessions: sv.Sessions, Limits: limits}
		// m.oauth user-interactive auth for the devices of OAuth sessions.
		sv.UIA.OAuth = sv.OAuth
	}
	sv.Accounts.OnDeactivate = append(sv.Accounts.OnDeactivate, accountdata.DeleteUser, keybackup.DeleteUser, web.DeleteUser, uia.DeleteApprovals)
	return sv
}

// PasswordHasher hashes new passwords with the configured argon2id
// parameters and pepper.
func PasswordHasher(cfg *config.Config) *passwords.Hasher {
	p := passwords.DefaultParams()
	p.MemoryKiB, p.Iterations, p.Parallelism = cfg.Argon2.MemoryKiB, cfg.Argon2.Iterations, cfg.Argon2.Parallelism
	return passwords.New(p, []byte(cfg.Pepper))
}

// AccessToken extracts the client's access token: the Authorization: Bearer
// header, or the access_token query parameter (matrix-nio uses the latter).
func AccessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

func (a *App) authenticateClient(c echo.Context) error {
	tok := AccessToken(c.Request())
	if tok == "" {
		return matrixerr.MissingToken()
	}
	if reg := a.Services.AppServices.ByToken(tok); reg != nil {
		return a.authenticateAppService(c, reg)
	}
	p, err := a.Auth.Authenticate(c.Request().Context(), tok)
	if err != nil {
		return err
	}
	// A locked account may only log out.
	if err := sessions.Gate(p, isLogout(c.Path())); err != nil {
		return err
	}
	c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
	// Buffered in memory, written in batches (see devices.LastSeen).
	a.LastSeen.Record(p.UserID, p.DeviceID, auth.ClientIP(c.Request().Context()), time.Now())
	return nil
}

// isLogout reports whether route (a route pattern; r0 paths are served as
// v3) is POST /logout or /logout/all, the requests a locked account may
// still make.
func isLogout(route string) bool {
	return route == "/_matrix/client/v3/logout" || route == "/_matrix/client/v3/logout/all"
}

// authenticateServer checks the X-Matrix signature of a federation request
// (over the raw body) and puts the origin server in the request context.
func (a *App) authenticateServer(c echo.Context) error {
	r := c.Request()
	origin, err := a.Federation.Verifier.Verify(r.Context(), r.Header.Get("Authorization"), r.Method, r.RequestURI, server.RawBody(r.Context()))
	if err != nil {
		return err
	}
	c.SetRequest(r.WithContext(federation.WithOrigin(r.Context(), origin)))
	return nil
}

// Serve serves HTTP on ln until ctx is cancelled, then shuts down
// gracefully: in-flight requests finish, then shutdown hooks run.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	for _, f := range a.stopping {
		srv.RegisterOnShutdown(f)
	}
	bgCtx, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, f := range a.background {
		wg.Add(1)
		go func() { defer wg.Done(); f(bgCtx) }()
	}
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	var fedSrv *http.Server
	if a.fedLn != nil {
		fedSrv = &http.Server{
			Handler:           federationOnly(a.Echo),
			TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: a.certs.getCertificate},
			ReadHeaderTimeout: srv.ReadHeaderTimeout,
			ReadTimeout:       srv.ReadTimeout,
			WriteTimeout:      srv.WriteTimeout,
			IdleTimeout:       srv.IdleTimeout,
			MaxHeaderBytes:    srv.MaxHeaderBytes,
		}
		go func() { errc <- fedSrv.ServeTLS(a.fedLn, "", "") }()
	}
	var metricsSrv *http.Server
	if a.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.Metrics.Handler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { errc <- metricsSrv.Serve(a.metricsLn) }()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		a.Log.Warn("shutdown: HTTP server did not drain", "err", err)
	}
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutCtx)
	}
	if fedSrv != nil {
		if err := fedSrv.Shutdown(shutCtx); err != nil {
			a.Log.Warn("shutdown: federation server did not drain", "err", err)
		}
	}
	stopBG()
	wg.Wait()
	for _, f := range a.shutdown {
		if err := f(shutCtx); err != nil {
			a.Log.Error("shutdown hook failed", "err", err)
		}
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// MetricsAddr is the address metrics are served on ("" if they are not).
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// FederationAddr is the address federation is served on over TLS ("" if
// there is no federation listener).
func (a *App) FederationAddr() string {
	if a.fedLn == nil {
		return ""
	}
	return a.fedLn.Addr().String()
}

// registerMetrics adds the gauges of the server's own state.
func (a *App) registerMetrics() {
	m := a.Metrics
	m.GaugeFunc("myelin_password_hashes_running", "Password hashes (argon2id) being computed: at most one per core.",
		func() float64 { r, _ := passwords.HashLoad(); return float64(r) })
	m.GaugeFunc("myelin_password_hashes_waiting", "Password hashes waiting for a core (logins, registrations and password checks queued).",
		func() float64 { _, w := passwords.HashLoad(); return float64(w) })
	if cache, ok := a.Auth.(*auth.Cache); ok {
		m.CounterFunc("myelin_token_cache_misses_total", "Access-token lookups that went to the database.",
			func() float64 { return float64(cache.Misses()) })
		m.GaugeFunc("myelin_token_cache_entries", "Access tokens in this process's cache.",
			func() float64 { return float64(cache.Len()) })
	}
	m.GaugeFunc("myelin_sync_long_polls_waiting", "/sync long polls waiting in this process.",
		func() float64 { return float64(a.Wake.Waiting()) })
	m.GaugeFunc("myelin_federation_outbox_pending", "EDUs (device-list updates, to-device messages) queued for other servers (all processes; NaN if the database did not answer).",
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := a.Store.R.NewSelect().Model((*storage.OutboxEDU)(nil)).Count(ctx)
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		})
}

// Close releases the database (and the metrics listener).
func (a *App) Close() error {
	if a.metricsLn != nil {
		a.metricsLn.Close()
	}
	if a.fedLn != nil {
		a.fedLn.Close()
	}
	return a.Store.Close()
}
