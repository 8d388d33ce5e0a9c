package main

// The two baselines the benchmark compares Myelin with, each run as its
// own process on the server core:
//
//   - bare: Echo, a bearer token looked up in a Go map, the same JSON
//     answered from memory (what the framework alone can do);
//   - raw-db: Echo, the same token lookup and device query through bun on
//     the same database, and nothing else (what the data access costs).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/storage"
)

// device is one entry of GET /devices.
type device struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name"`
	LastSeenIP  *string `json:"last_seen_ip"`
	LastSeenTS  *int64  `json:"last_seen_ts"`
}

type devicesBody struct {
	Devices []device `json:"devices"`
}

type whoamiBody struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	IsGuest  bool   `json:"is_guest"`
}

// bareFixture is what the bare baseline holds in memory for each token.
type bareFixture map[string]struct {
	Whoami  whoamiBody  `json:"whoami"`
	Devices devicesBody `json:"devices"`
}

func bearer(c echo.Context) string {
	h := c.Request().Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return h[7:]
	}
	return ""
}

var errUnknownToken = echo.NewHTTPError(http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"})

func baselineEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/_matrix/client/versions", func(c echo.Context) error {
		return c.JSON(200, map[string][]string{"versions": {"v1.11"}})
	})
	return e
}

func runBare(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	fixture := fs.String("fixture", "", "JSON file: token → answers")
	_ = fs.Parse(args)
	raw, err := os.ReadFile(*fixture)
	if err != nil {
		return err
	}
	var fx bareFixture
	if err := json.Unmarshal(raw, &fx); err != nil {
		return err
	}
	e := baselineEcho()
	e.GET("/_matrix/client/v3/account/whoami", func(c echo.Context) error {
		f, ok := fx[bearer(c)]
		if !ok {
			return errUnknownToken
		}
		return c.JSON(200, f.Whoami)
	})
	e.GET("/_matrix/client/v3/devices", func(c echo.Context) error {
		f, ok := fx[bearer(c)]
		if !ok {
			return errUnknownToken
		}
		return c.JSON(200, f.Devices)
	})
	return serveUntilSignal(e, *listen)
}

func runRawDB(args []string) error {
	fs := flag.NewFlagSet("rawdb", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	dsn := fs.String("database", "", "database")
	conns := fs.Int("database-max-conns", 4, "pool size, as Myelin's")
	_ = fs.Parse(args)
	st, err := storage.Open(context.Background(), *dsn, storage.Options{MaxConns: *conns})
	if err != nil {
		return err
	}
	defer st.Close()
	tokens := &auth.DBAuthenticator{Store: st}
	e := baselineEcho()
	e.GET("/_matrix/client/v3/account/whoami", func(c echo.Context) error {
		p, err := tokens.Authenticate(c.Request().Context(), bearer(c))
		if err != nil {
			return errUnknownToken
		}
		return c.JSON(200, whoamiBody{UserID: p.UserID, DeviceID: p.DeviceID, IsGuest: p.IsGuest})
	})
	e.GET("/_matrix/client/v3/devices", func(c echo.Context) error {
		ctx := c.Request().Context()
		p, err := tokens.Authenticate(ctx, bearer(c))
		if err != nil {
			return errUnknownToken
		}
		var rows []storage.Device
		if err := st.R.NewSelect().Model(&rows).Column("device_id", "display_name", "last_seen_ip", "last_seen_ts").
			Where("user_id = ?", p.UserID).Order("last_seen_ts DESC").Scan(ctx); err != nil {
			return err
		}
		body := devicesBody{Devices: make([]device, len(rows))}
		for i, r := range rows {
			body.Devices[i] = device{DeviceID: r.DeviceID, DisplayName: r.DisplayName, LastSeenIP: r.LastSeenIP, LastSeenTS: r.LastSeenTS}
		}
		return c.JSON(200, body)
	})
	return serveUntilSignal(e, *listen)
}

func serveUntilSignal(e *echo.Echo, listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The http.Server settings of app.Serve: the comparison is of what
	// runs inside the handler, not of connection timeouts.
	srv := &http.Server{Addr: listen, Handler: e, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// runHashRate prints how many argon2id hashes per second one core makes
// with the given parameters, through the same Hasher the server uses.
func runHashRate(args []string) error {
	fs := flag.NewFlagSet("hashrate", flag.ExitOnError)
	m := fs.Uint("m", 19456, "memory KiB")
	t := fs.Uint("t", 2, "iterations")
	p := fs.Uint("p", 1, "parallelism")
	d := fs.Duration("duration", 2*time.Second, "how long to hash")
	_ = fs.Parse(args)
	params := passwords.DefaultParams()
	params.MemoryKiB, params.Iterations, params.Parallelism = uint32(*m), uint32(*t), uint8(*p)
	h := passwords.New(params, nil)
	n, start := 0, time.Now()
	for n == 0 || time.Since(start) < *d {
		if _, err := h.Hash("correct horse battery staple"); err != nil {
			return err
		}
		n++
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]float64{"hashes_per_second": float64(n) / time.Since(start).Seconds()})
}
