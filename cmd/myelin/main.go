// Command myelin is the Myelin account-and-device server for Matrix.
//
//	myelin [serve] [flags]      run the server (the default)
//	myelin user …               manage accounts (see `myelin help`)
//	myelin device …             manage devices
//	myelin registration-token … manage registration tokens
//	myelin keys rotate          rotate the federation signing key
//	myelin appservice list      show the registered application services
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/passwords"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commands maps a subcommand to its implementation. Admin commands work on
// the same database as the server, also while it runs.
var commands = map[string]func(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error{}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" {
		usage(stderr)
		return 0
	}
	if cmd != "serve" && commands[cmd] == nil {
		fmt.Fprintf(stderr, "myelin: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("myelin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Configuration flags may stand anywhere among an admin command's own
	// arguments; serve takes flags only.
	cfgArgs, rest := args, []string(nil)
	if cmd != "serve" {
		cfgArgs, rest = config.SplitArgs(args)
	}
	cfg, err := config.Load(fs, cfgArgs, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "myelin: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "serve" {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "myelin: unexpected argument %q: a command comes first (myelin COMMAND [flags])\n", fs.Arg(0))
			usage(stderr)
			return 2
		}
		if err := serve(ctx, cfg, stderr); err != nil {
			fmt.Fprintf(stderr, "myelin: %v\n", err)
			return 1
		}
		return 0
	}
	if err := commands[cmd](ctx, cfg, append(fs.Args(), rest...), stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "myelin %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: myelin [serve] [flags]
       myelin user create|passwd|deactivate|list|login-token|threepid …
       myelin device list|rename|delete …
       myelin registration-token create|list|delete …
       myelin keys rotate
       myelin appservice list
Run 'myelin serve -h' for the flags; every flag also reads MYELIN_<NAME>.
`)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// reloadOnHUP re-reads the application services' registration files on
// every SIGHUP (a bad file is logged and the loaded ones kept).
func reloadOnHUP(a *app.App, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				if err := a.ReloadAppServices(); err != nil {
					log.Error("SIGHUP: application services not reloaded", "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

func serve(ctx context.Context, cfg *config.Config, stderr io.Writer) error {
	start := time.Now()
	logOut := newLogBuffer(stderr)
	defer logOut.Close()
	log := newLogger(cfg, logOut)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	// Loading the embedded specs leaves megabytes of garbage; hand it back
	// to the OS now rather than when the scavenger gets round to it.
	debug.FreeOSMemory()
	// The parsed specs are a large graph of pointers that every garbage
	// collection marks again, while a request leaves only a few KiB of
	// garbage: with Go's default (GOGC=100) the collector ran every few
	// hundred requests, and GET /account/whoami served 32–36k/s on one core.
	// GOGC=200 serves 42–45k/s (400: 46–47k/s) for a higher peak during
	// login bursts, where each hash in progress holds 19 MiB: 105 MB instead
	// of 84 MB on one core (400: 144 MB). An operator's GOGC wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	// A login burst leaves the heap goal sized for the hashes that were in
	// progress (19 MiB each); hand that memory back once the burst is over
	// instead of holding it until the runtime's periodic collection.
	passwords.OnQuiet(debug.FreeOSMemory)
	defer passwords.OnQuiet(nil)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	// Without --public-base-url, .well-known advertises cfg.Listen: make it
	// the address actually bound (port 0 picks one). Nothing reads it
	// before Serve starts handling requests.
	cfg.Listen = ln.Addr().String()
	log.Info("myelin listening", "addr", ln.Addr().String(), "server_name", cfg.ServerName,
		"database", a.Store.Dialect, "registration", cfg.Registration, "startup", time.Since(start).Round(time.Millisecond))
	if m := a.MetricsAddr(); m != "" {
		log.Info("metrics at http://" + m + "/metrics")
	}
	if f := a.FederationAddr(); f != "" {
		log.Info("federation listening (TLS)", "addr", f, "cert", cfg.TLSCert)
	}
	_ = logOut.Flush()
	stopHUP := reloadOnHUP(a, log)
	defer stopHUP()
	return a.Serve(ctx, ln)
}
