// Command myelin-bench measures a real myelin process over loopback and
// compares it with two baselines measured in the same run (see
// baselines.go): for each scenario it prints req/s, p50 and p99 latency,
// the server's peak RSS, and ratios; then PASS/FAIL for each target of
// issue 7. `make bench` runs it.
//
// The load generator and the server each get one core: the generator
// re-executes itself under `taskset -c 0`, servers run under
// `taskset -c 1` with GOMAXPROCS=1.
//
//	myelin-bench [-quick] [-strict] [-duration 2s] [-conc 1,16,64] [-backends sqlite,postgres]
//	             [-only login,register] [-server-args "--database-max-conns 8"] [-server-env GOGC=400]
//
// On PostgreSQL on the same machine it also shows the CPU use of the
// database backends serving the server (dbCPU): they are not pinned, and
// the kernel mostly runs them on the server's core.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
)

type options struct {
	myelin     string
	duration   time.Duration
	warmup     time.Duration
	conc       []int
	backends   []string
	postgres   string
	pin        bool
	serverCPU  int
	clientCPU  int
	trials     int // of the single-shot bulk delete
	serverArgs []string
	serverEnv  []string
	verbose    bool
	self       string
	dir        string
	run        string // distinguishes usernames registered by this run
	report     *report
	// dbCPU, on PostgreSQL on this machine, is the CPU time used so far by
	// the database backends serving the server under test (nil on SQLite,
	// whose work is in the server's own CPU).
	dbCPU func() cpuSample
	only  map[string]bool // scenario keys to run; empty: all
	quick bool            // -quick: shorter runs
	// dendrite is the folder of Dendrite's binaries ("": no comparison).
	dendrite string
}

// want reports whether the scenario (or single measurement) with key k is
// to run.
func (o *options) want(k string) bool { return len(o.only) == 0 || o.only[k] }

// wantAny reports whether any of scen is to run.
func (o *options) wantAny(scen []scenario) bool {
	return slices.ContainsFunc(scen, func(s scenario) bool { return o.want(s.key) })
}

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "bare":
			err = runBare(os.Args[2:])
		case "rawdb":
			err = runRawDB(os.Args[2:])
		case "hashrate":
			err = runHashRate(os.Args[2:])
		case "bcryptrate":
			err = runBcryptRate(os.Args[2:])
		case "load":
			err = runLoad(os.Args[2:])
		default:
			os.Exit(bench(os.Args[1:]))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "myelin-bench %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	os.Exit(bench(nil))
}

func bench(args []string) int {
	fs := flag.NewFlagSet("myelin-bench", flag.ExitOnError)
	o := &options{}
	fs.StringVar(&o.myelin, "myelin", "bin/myelin", "the myelin binary to measure")
	fs.DurationVar(&o.duration, "duration", 1500*time.Millisecond, "measured time of each load run")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each load run")
	concs := fs.String("conc", "1,16,64", "concurrency levels (targets are checked at 16)")
	backends := fs.String("backends", "sqlite,postgres", "databases to run on")
	fs.StringVar(&o.postgres, "postgres", envOr("MYELIN_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL admin DSN (a scratch database is created)")
	quick := fs.Bool("quick", false, "CI mode: short runs at concurrency 16 only")
	fs.BoolVar(&o.pin, "pin", true, "pin generator and server to one core each (needs taskset and 2 cores)")
	fs.IntVar(&o.serverCPU, "server-cpu", 1, "core of the server processes")
	fs.IntVar(&o.clientCPU, "client-cpu", 0, "core of the load generator")
	fs.IntVar(&o.trials, "trials", 3, "repetitions of the 10,000-device delete")
	serverArgs := fs.String("server-args", "", "extra flags for myelin serve (space separated)")
	serverEnv := fs.String("server-env", "", "extra environment of myelin serve, e.g. GOGC=400 (space separated)")
	fs.BoolVar(&o.verbose, "v", false, "show the servers' logs")
	strict := fs.Bool("strict", false, "exit with status 3 when a target fails")
	fs.StringVar(&o.dendrite, "dendrite", os.Getenv("MYELIN_TEST_DENDRITE"), "folder of Dendrite v0.13.8's binaries (dendrite, generate-config, generate-keys, create-account): measure it beside myelin on SQLite")
	only := fs.String("only", "", "run only these scenarios (comma separated keys: devices, whoami, rename, login, register, devices-N, startup, delete, longpoll, todevice)")
	_ = fs.Parse(args)
	o.quick = *quick
	if *quick {
		o.duration, o.warmup, *concs, o.trials = 300*time.Millisecond, 100*time.Millisecond, "16", 1
	}
	for _, c := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "myelin-bench: -conc: %q is not a positive number\n", c)
			return 2
		}
		o.conc = append(o.conc, n)
	}
	o.backends = strings.Split(*backends, ",")
	if *only != "" {
		o.only = map[string]bool{}
		for _, k := range strings.Split(*only, ",") {
			o.only[strings.TrimSpace(k)] = true
		}
	}
	o.serverArgs = strings.Fields(*serverArgs)
	o.serverEnv = strings.Fields(*serverEnv)
	var err error
	if o.self, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "myelin-bench:", err)
		return 1
	}
	if o.myelin, err = filepath.Abs(o.myelin); err != nil {
		fmt.Fprintln(os.Stderr, "myelin-bench:", err)
		return 1
	}
	if _, err := os.Stat(o.myelin); err != nil {
		fmt.Fprintf(os.Stderr, "myelin-bench: %v (run `make build` or pass -myelin)\n", err)
		return 1
	}
	if o.pin {
		if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 && os.Getenv("MYELIN_BENCH_PINNED") == "" {
			fmt.Println("note: not pinning (needs taskset and at least 2 cores); numbers are less comparable")
			o.pin = false
		}
	}
	if o.pin && os.Getenv("MYELIN_BENCH_PINNED") == "" {
		// Re-execute on the generator's core; every thread inherits it.
		cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(o.clientCPU), o.self}, os.Args[1:]...)...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "MYELIN_BENCH_PINNED=1")
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode()
			}
			fmt.Fprintln(os.Stderr, "myelin-bench:", err)
			return 1
		}
		return 0
	}
	if o.pin {
		runtime.GOMAXPROCS(1)
	}
	if o.dir, err = os.MkdirTemp("", "myelin-bench-"); err != nil {
		fmt.Fprintln(os.Stderr, "myelin-bench:", err)
		return 1
	}
	defer os.RemoveAll(o.dir)
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	o.run = hex.EncodeToString(rnd[:])
	o.report = newReport()
	o.header()

	a := config.Defaults().Argon2
	fmt.Printf("argon2id m=%d KiB, t=%d, p=%d (the default), hash-bound limit measured on the server core just before and after each hashing run (measured again if it moved more than 5%%)\n\n",
		a.MemoryKiB, a.Iterations, a.Parallelism)
	o.report.printHeader()
	dendrite, noDendrite := dendriteDir(o.dendrite)
	o.dendrite = dendrite
	for _, b := range o.backends {
		if err := o.runBackend(strings.TrimSpace(b)); err != nil {
			fmt.Fprintf(os.Stderr, "myelin-bench: %s: %v\n", b, err)
			return 1
		}
		if strings.TrimSpace(b) != "sqlite" {
			continue
		}
		if o.dendrite == "" {
			fmt.Printf("SKIP dendrite: %s\n", noDendrite)
		} else if err := o.runDendrite(); err != nil {
			fmt.Fprintf(os.Stderr, "myelin-bench: dendrite: %v\n", err)
			return 1
		}
	}
	if !o.report.targets() && *strict {
		return 3
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (o *options) header() {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("myelin-bench %s on %s: %s, %d cores, %s\n", time.Now().Format(time.RFC3339), host, model, cpuCount(), runtime.Version())
	pin := "not pinned"
	if o.pin {
		pin = fmt.Sprintf("generator on core %d, servers on core %d with GOMAXPROCS=1", o.clientCPU, o.serverCPU)
	}
	fmt.Printf("%s; %s measured after %s warm-up per run\n", pin, o.duration, o.warmup)
}

// cpuCount is the machine's core count (NumCPU only sees our affinity).
func cpuCount() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		z := a
		if ok {
			z, _ = strconv.Atoi(hi)
		}
		n += z - a + 1
	}
	return n
}

// hashRate runs the hash-bound measurement on the server core.
func (o *options) hashRate() (float64, error) {
	a := config.Defaults().Argon2
	d := max(o.duration, hashRateDuration)
	argv := []string{o.self, "hashrate", "-m", fmt.Sprint(a.MemoryKiB), "-t", fmt.Sprint(a.Iterations), "-p", fmt.Sprint(a.Parallelism), "-duration", d.String()}
	if o.pin {
		argv = append([]string{"taskset", "-c", strconv.Itoa(o.serverCPU)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("hashrate: %w", err)
	}
	var r map[string]float64
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("hashrate: %w", err)
	}
	return r["hashes_per_second"], nil
}

// database returns a DSN for a scratch database called name of backend b
// (or "" if PostgreSQL is unreachable) and a function that removes it.
func (o *options) database(b, name string) (string, func(), error) {
	switch b {
	case "sqlite":
		return filepath.Join(o.dir, name+".db"), func() {}, nil
	case "postgres":
		admin, err := sql.Open("pgx", o.postgres)
		if err != nil {
			return "", nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := admin.PingContext(ctx); err != nil {
			admin.Close()
			return "", func() {}, nil
		}
		name = "myelin_bench_" + o.run + "_" + name
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			admin.Close()
			return "", nil, err
		}
		u, err := url.Parse(o.postgres)
		if err != nil {
			admin.Close()
			return "", nil, err
		}
		u.Path = "/" + name
		return u.String(), func() {
			_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			admin.Close()
		}, nil
	}
	return "", nil, fmt.Errorf("unknown backend %q (sqlite or postgres)", b)
}

func (o *options) runBackend(b string) error {
	ctx := context.Background()
	dsn, cleanup, err := o.database(b, "bench")
	if err != nil {
		return err
	}
	defer cleanup()
	if dsn == "" {
		fmt.Printf("SKIP %s: not reachable at %s (set MYELIN_TEST_POSTGRES)\n", b, o.postgres)
		return nil
	}
	cfg := config.Defaults()
	cfg.Database = dsn
	st, err := storage.Open(ctx, dsn, storage.Options{MaxConns: cfg.DatabaseMaxConns})
	if err != nil {
		return err
	}
	defer st.Close()
	o.dbCPU = nil
	if b == "postgres" {
		// The servers' connections carry an application name, so that
		// their backends can be told from the seeding connections.
		u, err := url.Parse(dsn)
		if err != nil {
			return err
		}
		q := u.Query()
		q.Set("application_name", benchAppName)
		u.RawQuery = q.Encode()
		dsn = u.String()
		o.dbCPU = func() cpuSample { return backendsCPU(ctx, st) }
	}
	sd, err := seed(ctx, st, &cfg)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fixture := filepath.Join(o.dir, b+"-bare.json")
	raw, _ := json.Marshal(sd.Bare)
	if err := os.WriteFile(fixture, raw, 0o600); err != nil {
		return err
	}
	reads := func(addr string) []scenario {
		return []scenario{
			{name: "GET /devices (3 devices)", key: "devices", req: fixed(httpRequest("GET", addr, "/_matrix/client/v3/devices", sd.Token, nil))},
			{name: "GET /account/whoami", key: "whoami", req: fixed(httpRequest("GET", addr, "/_matrix/client/v3/account/whoami", sd.Token, nil))},
		}
	}

	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if o.wantAny(reads(addr)) {
		bare, _, err := o.start("bare", addr, []string{o.self, "bare", "-listen", addr, "-fixture", fixture})
		if err != nil {
			return err
		}
		o.report.idle(b, "bare", bare)
		o.loadAll(b, "bare", bare, reads(addr))
		bare.stop()
	}

	if o.wantAny(append(reads(addr), o.sizeScenarios(addr, sd)...)) {
		rawdb, _, err := o.start("raw-db", addr, []string{o.self, "rawdb", "-listen", addr, "-database", dsn, "-database-max-conns", fmt.Sprint(cfg.DatabaseMaxConns)})
		if err != nil {
			return err
		}
		o.report.idle(b, "raw-db", rawdb)
		o.loadAll(b, "raw-db", rawdb, append(reads(addr), o.sizeScenarios(addr, sd)...))
		rawdb.stop()
	}

	if o.want("startup") {
		if err := o.startup(b, dsn); err != nil {
			return err
		}
	}
	argv := append([]string{o.myelin, "serve", "--listen", addr, "--database", dsn, "--registration", "open", "--rate-limit", "off"}, o.serverArgs...)
	my, took, err := o.start("myelin", addr, argv)
	if err != nil {
		return err
	}
	defer my.stop()
	o.report.single(b, "myelin", "start-up, existing database", took, 0)
	o.report.idle(b, "myelin", my)
	scen := append(reads(addr),
		scenario{name: "PUT /devices/{id} rename", key: "rename", req: func(w, seq int) []byte {
			return httpRequest("PUT", addr, "/_matrix/client/v3/devices/"+sd.DeviceID, sd.Token, fmt.Appendf(nil, `{"display_name":"Bench %d-%d"}`, w, seq))
		}},
		scenario{name: "POST /login", key: "login", hashing: true, req: func(w, _ int) []byte {
			return httpRequest("POST", addr, "/_matrix/client/v3/login", "",
				fmt.Appendf(nil, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":%q},"password":%q}`, loginAccount(max(w, 0)%loginAccounts), benchPassword))
		}},
	)
	o.loadAll(b, "myelin", my, scen)
	// The RSS after the load Dendrite gets too (the comparison's).
	o.report.afterLoad(b, "myelin", my)
	o.loadAll(b, "myelin", my, append([]scenario{{name: "POST /register (open)", key: "register", hashing: true, req: o.registerRequest(addr, b)}},
		o.sizeScenarios(addr, sd)...))
	if err := o.syncScenarios(ctx, b, dsn, my, st, &cfg, sd); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if !o.want("delete") {
		return nil
	}
	return o.bulkDelete(ctx, b, my, st, &cfg, sd)
}

// scenario is one kind of request, run at each concurrency.
type scenario struct {
	name string
	key  string // compares rows of different servers
	req  request
	// hashing scenarios do one argon2id hash per request (tens a second):
	// at concurrency 64 a request waits over a second for its turn, so
	// they warm up and are measured for longer.
	hashing bool
	// noHashBound: a hashing scenario whose hash is not argon2id (Dendrite's
	// bcrypt), measured once without the hash-bound limit around it.
	noHashBound bool
}

const (
	hashingWarmup   = 2 * time.Second
	hashingDuration = 3 * time.Second
	// hashRateDuration is each of the two hash-rate measurements around a
	// hashing run.
	hashRateDuration = 1500 * time.Millisecond
)

func (o *options) sizeScenarios(addr string, sd *seeded) []scenario {
	var out []scenario
	for _, n := range sizes {
		out = append(out, scenario{name: fmt.Sprintf("GET /devices (%d devices)", n), key: fmt.Sprintf("devices-%d", n),
			req: fixed(httpRequest("GET", addr, "/_matrix/client/v3/devices", sd.BySize[n], nil))})
	}
	return out
}

func (o *options) registerRequest(addr, backend string) request {
	return func(w, seq int) []byte {
		body := fmt.Appendf(nil, `{"username":"r%s%s_%d_%d_%d","password":%q,"auth":{"type":"m.login.dummy"}}`,
			o.run, backend[:2], time.Now().UnixNano()%1e9, w, seq, benchPassword)
		return httpRequest("POST", addr, "/_matrix/client/v3/register", "", body)
	}
}

// loadAll runs each scenario at each concurrency against p, skipping those
// the server does not implement (yet).
func (o *options) loadAll(backend, server string, p *proc, scen []scenario) {
	for _, s := range scen {
		if !o.want(s.key) {
			continue
		}
		if why := notImplemented(p.addr, s.req(-1, 0)); why != "" {
			o.report.skip(backend, server, s.name, why)
			continue
		}
		w, d := o.warmup, o.duration
		if s.hashing {
			w, d = max(w, hashingWarmup), max(d, hashingDuration)
		}
		for _, c := range o.conc {
			if !s.hashing || s.noHashBound {
				r, u := o.measure(p, s, c, w, d)
				o.report.add(backend, server, s, c, r, p.statusKB("VmHWM"), u[0], u[1])
				continue
			}
			// The hash-bound limit of a hashing run is measured on the
			// server core right before and after it (the server is idle
			// then), so both see the same machine. A shared machine's cores
			// change speed by tens of percent within a minute: a run during
			// which the limit moved more than maxHashDrift measured the
			// machine, not the server, and is measured again.
			for attempt := 1; ; attempt++ {
				before, err := o.hashRate()
				if err != nil {
					o.report.skip(backend, server, s.name, err.Error())
					break
				}
				r, u := o.measure(p, s, c, w, d)
				after, err := o.hashRate()
				if err != nil {
					o.report.skip(backend, server, s.name, err.Error())
					break
				}
				if drift := math.Abs(after-before) / ((after + before) / 2); drift > maxHashDrift && attempt < maxHashAttempts {
					o.report.unstable(backend, server, s, c, r, before, after)
					continue
				}
				o.report.hashed(backend, s.key, c, before, after)
				o.report.add(backend, server, s, c, r, p.statusKB("VmHWM"), u[0], u[1])
				break
			}
		}
	}
}

const (
	// maxHashDrift is how far (relative) the hash-bound limit may move
	// between the measurements before and after a hashing run.
	maxHashDrift = 0.05
	// maxHashAttempts bounds the measurements of one hashing run; the
	// last one counts whatever the drift.
	maxHashAttempts = 3
)

// measure runs scenario s at concurrency c against p: w of warm-up, then d
// measured. It also returns the CPU use (1 = one core) of the server and of
// its database backends (-1: not measured) over the measured window.
func (o *options) measure(p *proc, s scenario, c int, w, d time.Duration) (result, [2]float64) {
	p.resetPeak()
	cpu := make(chan [2]float64, 1)
	go func() {
		time.Sleep(w)
		t0, c0, db0 := time.Now(), p.cpuTime(), o.sampleDB()
		time.Sleep(d)
		el := float64(time.Since(t0))
		u := [2]float64{float64(p.cpuTime()-c0) / el, -1}
		if db0 != nil {
			u[1] = float64(o.sampleDB().since(db0)) / el
		}
		cpu <- u
	}()
	r := load(p.addr, c, w, d, s.req)
	return r, <-cpu
}

// notImplemented probes an endpoint once and says why it is to be skipped
// ("" if it works): 501, or 404/405 M_UNRECOGNIZED, as Myelin answers for
// operations not built yet.
func notImplemented(addr string, req []byte) string {
	status, body, err := once(addr, req)
	if err != nil {
		return "probe failed: " + err.Error()
	}
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(body, &e)
	if status == 501 || (status == 404 || status == 405) && e.Errcode == "M_UNRECOGNIZED" {
		return fmt.Sprintf("endpoint not implemented (%d %s)", status, e.Errcode)
	}
	return ""
}

// startup measures start-up to the first served request on a fresh
// database (migrations included), the median of three.
func (o *options) startup(backend, dsn string) error {
	var times []time.Duration
	for i := range 3 {
		fresh, cleanup, err := o.database(backend, fmt.Sprintf("fresh%d", i))
		if err != nil {
			return err
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		p, took, err := o.start("myelin", addr, []string{o.myelin, "serve", "--listen", addr, "--database", fresh})
		if err != nil {
			cleanup()
			return err
		}
		p.stop()
		cleanup()
		times = append(times, took)
	}
	slices.Sort(times)
	o.report.single(backend, "myelin", "start-up, fresh database", times[1], 0)
	return nil
}

// bulkDelete times POST /delete_devices with bulkDevices devices, with
// m.login.password user-interactive auth in the same request (a one-stage
// flow needs no prior session), or a session if the server asks for one.
func (o *options) bulkDelete(ctx context.Context, backend string, p *proc, st *storage.Store, cfg *config.Config, sd *seeded) error {
	name := fmt.Sprintf("POST /delete_devices (%d devices)", bulkDevices)
	auth := map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "bulk"}, "password": benchPassword}
	post := func(ids []string) (int, []byte, time.Duration, error) {
		body, _ := json.Marshal(map[string]any{"devices": ids, "auth": auth})
		t0 := time.Now()
		status, resp, err := once(p.addr, httpRequest("POST", p.addr, "/_matrix/client/v3/delete_devices", sd.BulkToken, body))
		return status, resp, time.Since(t0), err
	}
	if why := notImplemented(p.addr, httpRequest("POST", p.addr, "/_matrix/client/v3/delete_devices", sd.BulkToken, []byte(`{"devices":[]}`))); why != "" {
		o.report.skip(backend, "myelin", name, why)
		return nil
	}
	var times []time.Duration
	for round := range o.trials {
		ids, err := seedBulk(ctx, st, cfg, round)
		if err != nil {
			return err
		}
		p.resetPeak()
		status, resp, took, err := post(ids)
		if err == nil && status == 401 {
			var uia struct {
				Session string `json:"session"`
			}
			if json.Unmarshal(resp, &uia) == nil && uia.Session != "" {
				auth["session"] = uia.Session
				var again time.Duration
				status, resp, again, err = post(ids)
				took += again
			}
		}
		if err != nil || status != 200 {
			o.report.skip(backend, "myelin", name, fmt.Sprintf("answered %d %s (%v)", status, resp, err))
			return nil
		}
		n, err := st.R.NewSelect().Model((*storage.Device)(nil)).Where("user_id = ?", "@bulk:"+cfg.ServerName).Count(ctx)
		if err != nil || n != 1 {
			return fmt.Errorf("after %s: %d devices left (%v), want 1", name, n, err)
		}
		times = append(times, took)
	}
	slices.Sort(times)
	o.report.single(backend, "myelin", name, times[len(times)/2], p.statusKB("VmHWM"))
	return nil
}
