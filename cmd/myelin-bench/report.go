package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// targetConc is the concurrency the ratio targets are checked at.
const targetConc = 16

// report prints rows as they are measured and checks the targets at the
// end.
type report struct {
	hashRate map[string]float64       // backend|key|conc → argon2id hashes/s of the server core around that run
	rps      map[string]float64       // backend|server|key|conc
	singles  map[string]time.Duration // backend|name
	idleKB   map[string]int64         // backend|server
	afterKB  map[string]int64         // backend|server: RSS after the load both myelin and Dendrite get
	bcrypt   float64                  // Dendrite's bcrypt-10 hashes/s on the server core (0: not measured)
	skipped  map[string]string        // backend|server|name → why
	pollKB   map[string]int64         // backend: RSS growth with 1,000 idle /sync long polls
	backends []string
}

func newReport() *report {
	return &report{hashRate: map[string]float64{}, rps: map[string]float64{}, singles: map[string]time.Duration{}, idleKB: map[string]int64{}, afterKB: map[string]int64{}, skipped: map[string]string{}, pollKB: map[string]int64{}}
}

func key(parts ...any) string { return fmt.Sprint(parts...) }

func (r *report) printHeader() {
	fmt.Printf("%-8s %-6s %-34s %4s %9s %8s %8s %8s %5s %5s  %s\n", "backend", "server", "scenario", "conc", "req/s", "p50", "p99", "peak RSS", "CPU", "dbCPU", "ratios")
}

func (r *report) seen(backend string) {
	if !slices.Contains(r.backends, backend) {
		r.backends = append(r.backends, backend)
	}
}

// add prints a load run's row: cpu is the server's CPU use over it (1 is
// one core), dbCPU that of its PostgreSQL backends (-1: not measured).
func (r *report) add(backend, server string, s scenario, conc int, res result, peakKB int64, cpu, dbCPU float64) {
	r.seen(backend)
	rps := res.RPS()
	r.rps[key(backend, "|", server, "|", s.key, "|", conc)] = rps
	var notes []string
	ratio := func(base, label string) {
		if b := r.rps[key(backend, "|", base, "|", s.key, "|", conc)]; b > 0 && base != server {
			notes = append(notes, fmt.Sprintf("%.2f×%s", rps/b, label))
		}
	}
	switch {
	case server == "dendrite":
		if m := r.rps[key(backend, "|", "myelin", "|", s.key, "|", conc)]; m > 0 && rps > 0 {
			notes = append(notes, fmt.Sprintf("myelin %.2f×", m/rps))
		}
	case s.key == "whoami" || s.key == "devices":
		ratio("bare", "bare")
		ratio("raw-db", "raw-db")
	case s.key == "login" || s.key == "register":
		if h := r.hashRate[key(backend, "|", s.key, "|", conc)]; h > 0 {
			notes = append(notes, fmt.Sprintf("%.2f×hash-bound", rps/h))
		}
	default:
		ratio("raw-db", "raw-db")
	}
	if res.Errors > 0 {
		codes := slices.Sorted(maps.Keys(res.Status))
		var st []string
		for _, c := range codes {
			st = append(st, fmt.Sprintf("%d×%d", res.Status[c], c))
		}
		notes = append(notes, fmt.Sprintf("ERRORS %d [%s]", res.Errors, strings.Join(st, " ")))
	}
	db := "-"
	if dbCPU >= 0 {
		db = fmt.Sprintf("%.0f%%", 100*dbCPU)
	}
	fmt.Printf("%-8s %-6s %-34s %4d %9.0f %8s %8s %8s %4.0f%% %5s  %s\n", backend, server, s.name, conc, rps,
		ms(res.P50), ms(res.P99), mb(peakKB), 100*cpu, db, strings.Join(notes, " "))
}

// hashed records the hash-bound limit of the run of scenario key at conc:
// the mean of one core's argon2id hash rate measured just before and just
// after it (the cores of a shared machine drift by tens of percent within
// a minute, so one measurement well before the run misstates the ratio).
func (r *report) hashed(backend, scenarioKey string, conc int, before, after float64) {
	r.seen(backend)
	r.hashRate[key(backend, "|", scenarioKey, "|", conc)] = (before + after) / 2
	fmt.Printf("%-8s %-6s %-34s %4d %9.1f  (%.1f before, %.1f after)\n", backend, "-", "argon2id hash (hash-bound limit)", 1,
		(before+after)/2, before, after)
}

// unstable prints a hashing run that is measured again because the
// hash-bound limit moved too much across it.
func (r *report) unstable(backend, server string, s scenario, conc int, res result, before, after float64) {
	fmt.Printf("%-8s %-6s %-34s %4d %9.0f  discarded: the hash-bound limit moved %.1f → %.1f during the run; measuring again\n",
		backend, server, s.name, conc, res.RPS(), before, after)
}

func (r *report) single(backend, server, name string, took time.Duration, peakKB int64) {
	r.seen(backend)
	r.singles[key(backend, "|", name)] = took
	fmt.Printf("%-8s %-6s %-34s %4s %9s %8s %8s %8s\n", backend, server, name, "", "", ms(took), "", mb(peakKB))
}

func (r *report) idle(backend, server string, p *proc) {
	r.seen(backend)
	time.Sleep(time.Second) // let start-up garbage be collected, as idle means
	kb := p.statusKB("VmRSS")
	r.idleKB[key(backend, "|", server)] = kb
	// File-backed pages are mostly the binary's own text and read-only data
	// (on kernels with large folios nearly all of it is resident), anonymous
	// ones the Go heap, stacks and runtime: the split says which to shrink.
	fmt.Printf("%-8s %-6s %-34s %4s %9s %8s %8s %8s  (file %s, anon %s, shmem %s)\n", backend, server, "idle RSS", "", "", "", "", mb(kb),
		mb(p.statusKB("RssFile")), mb(p.statusKB("RssAnon")), mb(p.statusKB("RssShmem")))
}

// afterLoad records the server's RSS a second after the load shared with
// Dendrite (reads, renames, logins) has run, for both servers alike.
func (r *report) afterLoad(backend, server string, p *proc) {
	time.Sleep(time.Second) // as idle does: the load is over, not still running
	kb := p.statusKB("VmRSS")
	r.afterKB[key(backend, "|", server)] = kb
	fmt.Printf("%-8s %-6s %-34s %4s %9s %8s %8s %8s\n", backend, server, "RSS after the load", "", "", "", "", mb(kb))
}

func (r *report) skip(backend, server, name, why string) {
	r.seen(backend)
	r.skipped[key(backend, "|", server, "|", name)] = why
	fmt.Printf("%-8s %-6s %-34s SKIP: %s\n", backend, server, name, why)
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func mb(kb int64) string {
	if kb <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMB", float64(kb)/1024)
}

// targets prints PASS/FAIL for each target of issue 7 and reports whether
// none failed. A target whose inputs were not measured is SKIPped.
func (r *report) targets() bool {
	fmt.Println("\ntargets (ratios at concurrency 16):")
	ok := true
	check := func(backend, what string, measured bool, pass bool, detail string) {
		verdict := "PASS"
		switch {
		case !measured:
			verdict, detail = "SKIP", "not measured"
		case !pass:
			verdict, ok = "FAIL", false
		}
		fmt.Printf("  %-4s %-8s %-44s %s\n", verdict, backend, what, detail)
	}
	for _, b := range r.backends {
		get := func(server, k string) float64 { return r.rps[key(b, "|", server, "|", k, "|", targetConc)] }
		my, bare := get("myelin", "whoami"), get("bare", "whoami")
		check(b, "GET /account/whoami ≥ 0.6 × bare", my > 0 && bare > 0, my >= 0.6*bare, ratioText(my, bare, "bare"))
		my, raw := get("myelin", "devices"), get("raw-db", "devices")
		check(b, "GET /devices ≥ 0.9 × raw-db", my > 0 && raw > 0, my >= 0.9*raw, ratioText(my, raw, "raw-db"))
		login := get("myelin", "login")
		h := r.hashRate[key(b, "|", "login", "|", targetConc)]
		check(b, "POST /login ≥ 0.9 × hash-bound", login > 0 && h > 0, login >= 0.9*h, ratioText(login, h, "hash-bound"))
		pass, measured, detail := r.linear(b)
		check(b, "GET /devices cost grows linearly", measured, pass, detail)
		idle := r.idleKB[key(b, "|", "myelin")]
		check(b, "idle RSS < 30 MB", idle > 0, idle < 30*1024, mb(idle))
		// Issue 14's /sync figures.
		polls, measured := r.pollKB[b]
		check(b, "1,000 idle /sync long polls < +50 MB RSS", measured, polls < 50*1024, "+"+mb(polls))
		names := []string{toDeviceOne}
		if b == "postgres" {
			names = append(names, toDeviceTwo) // two processes share a database only there
		}
		for _, name := range names {
			p99 := r.singles[key(b, "|", name+" p99")]
			check(b, name+" p99 < 10 ms", p99 > 0, p99 < 10*time.Millisecond, ms(p99))
		}
		if b == "sqlite" {
			st := r.singles[key(b, "|", "start-up, fresh database")]
			check(b, "start-up to first request < 300 ms", st > 0, st < 300*time.Millisecond, ms(st))
			del := r.singles[key(b, "|", fmt.Sprintf("POST /delete_devices (%d devices)", bulkDevices))]
			check(b, "POST /delete_devices 10,000 < 1 s", del > 0, del < time.Second, ms(del))
			r.dendriteTargets(b, check)
		}
	}
	return ok
}

func ratioText(a, b float64, label string) string {
	if a <= 0 || b <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f × %s (%.0f vs %.0f /s)", a/b, label, a, b)
}

// linear compares the marginal cost per listed device between 100 and
// 1,000 devices with that up to 100: super-linear growth (a per-device
// query, a sort gone quadratic) shows as a much higher cost per device at
// 1,000. The time per request is 1/throughput on the server's one core.
func (r *report) linear(backend string) (pass, measured bool, detail string) {
	t := map[int]float64{}
	for _, n := range sizes {
		rps := r.rps[key(backend, "|", "myelin", "|", fmt.Sprintf("devices-%d", n), "|", targetConc)]
		if rps <= 0 {
			return false, false, ""
		}
		t[n] = 1e6 / rps // µs per request
	}
	per := func(a, b int) float64 { return (t[b] - t[a]) / float64(b-a) }
	low, high := per(1, 100), per(100, 1000)
	detail = fmt.Sprintf("%.0f µs fixed; per device %.2f µs (1→100), %.2f µs (100→1000)", t[1], low, high)
	if raw := r.rps[key(backend, "|", "raw-db", "|", "devices-1000", "|", targetConc)]; raw > 0 {
		raw1 := r.rps[key(backend, "|", "raw-db", "|", "devices-1", "|", targetConc)]
		if raw1 > 0 {
			detail += fmt.Sprintf("; raw-db %.2f µs", (1e6/raw-1e6/raw1)/999)
		}
	}
	return high <= 2*max(low, 0.05), true, detail
}

// dendriteTargets checks myelin against Dendrite measured in the same run
// (issue 18): twice its req/s on GET /devices and whoami, half its RSS idle
// and after the same load; renames and logins are printed for information
// (logins hash differently: argon2id 19 MiB against bcrypt 10).
func (r *report) dendriteTargets(b string, check func(backend, what string, measured, pass bool, detail string)) {
	if r.idleKB[key(b, "|", "dendrite")] == 0 {
		return
	}
	get := func(server, k string) float64 { return r.rps[key(b, "|", server, "|", k, "|", targetConc)] }
	for _, t := range []struct{ k, what string }{{"devices", "GET /devices"}, {"whoami", "GET /account/whoami"}} {
		my, d := get("myelin", t.k), get("dendrite", t.k)
		check(b, t.what+" ≥ 2 × Dendrite", my > 0 && d > 0, my >= 2*d, ratioText(my, d, "Dendrite"))
	}
	for _, t := range []struct {
		m    map[string]int64
		what string
	}{{r.idleKB, "idle RSS ≤ ½ Dendrite's"}, {r.afterKB, "RSS after the same load ≤ ½ Dendrite's"}} {
		my, d := t.m[key(b, "|", "myelin")], t.m[key(b, "|", "dendrite")]
		check(b, t.what, my > 0 && d > 0, 2*my <= d, mb(my)+" vs "+mb(d))
	}
	if my, d := get("myelin", "rename"), get("dendrite", "rename"); my > 0 && d > 0 {
		fmt.Printf("  %-4s %-8s %-44s %s\n", "INFO", b, "PUT /devices/{id} against Dendrite", ratioText(my, d, "Dendrite"))
	}
	if my, d := get("myelin", "login"), get("dendrite", "login"); my > 0 && d > 0 {
		detail := ratioText(my, d, "Dendrite")
		if h := r.hashRate[key(b, "|", "login", "|", targetConc)]; h > 0 && r.bcrypt > 0 {
			detail += fmt.Sprintf("; hash rates on one core: argon2id %.1f/s, bcrypt-10 %.1f/s", h, r.bcrypt)
		}
		fmt.Printf("  %-4s %-8s %-44s %s\n", "INFO", b, "POST /login against Dendrite (by design)", detail)
	}
	if st, d := r.singles[key(b, "|", "start-up, fresh database")], r.singles[key(b, "|", "dendrite start-up, fresh database")]; st > 0 && d > 0 {
		fmt.Printf("  %-4s %-8s %-44s %s vs %s\n", "INFO", b, "start-up against Dendrite (fresh database)", ms(st), ms(d))
	}
}
