package main

// The /sync figures of issue 14: what 1,000 idle long polls cost the
// server (RSS and CPU), and how soon a to-device message reaches a waiting
// /sync (p50/p99), with one process and, on PostgreSQL, with the sender
// and the receiver on two processes.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
)

// The names of the two to-device measurements (one process; sender and
// receiver on two processes on one PostgreSQL).
const (
	toDeviceOne = "to-device → waiting /sync"
	toDeviceTwo = "to-device → /sync on another process"
)

const (
	idlePolls   = 1000
	idleMeasure = 5 * time.Second
	// toDeviceRounds is how many messages each latency figure is taken
	// over (-quick: quickRounds).
	toDeviceRounds = 500
	quickRounds    = 100
)

// syncClient is an HTTP client for long polls: one connection each.
func syncClient(n int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, DisableCompression: true}}
}

func getJSON(ctx context.Context, c *http.Client, u, token string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode == 200 {
		err = json.Unmarshal(body, out)
	}
	return resp.StatusCode, err
}

type syncBody struct {
	NextBatch   string          `json:"next_batch"`
	DeviceLists json.RawMessage `json:"device_lists"`
	ToDevice    struct {
		Events []struct {
			Content struct {
				Seq int `json:"seq"`
			} `json:"content"`
		} `json:"events"`
	} `json:"to_device"`
}

func syncURL(addr, since string, timeout time.Duration) string {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if timeout > 0 {
		q.Set("timeout", fmt.Sprint(timeout.Milliseconds()))
	}
	return "http://" + addr + "/_matrix/client/v3/sync?" + q.Encode()
}

// syncScenarios runs the /sync measurements against the running server p
// (and, on PostgreSQL, a second process on the same database).
func (o *options) syncScenarios(ctx context.Context, backend, dsn string, p *proc, st *storage.Store, cfg *config.Config, sd *seeded) error {
	probe := httpRequest("GET", p.addr, "/_matrix/client/v3/sync", sd.Token, nil)
	if why := notImplemented(p.addr, probe); why != "" {
		o.report.skip(backend, "myelin", "/sync", why)
		return nil
	}
	if o.want("longpoll") {
		if err := o.idleLongPolls(ctx, backend, dsn, st, cfg); err != nil {
			return err
		}
	}
	if !o.want("todevice") {
		return nil
	}
	if err := commitFloor(ctx, backend, st, o.rounds()); err != nil {
		return err
	}
	if err := o.toDeviceLatency(backend, toDeviceOne, p.addr, p.addr, sd); err != nil {
		return err
	}
	if backend != "postgres" {
		return nil
	}
	addr2, err := freeAddr()
	if err != nil {
		return err
	}
	argv := append([]string{o.myelin, "serve", "--listen", addr2, "--database", dsn, "--registration", "open", "--rate-limit", "off"}, o.serverArgs...)
	p2, _, err := o.start("myelin", addr2, argv)
	if err != nil {
		return err
	}
	defer p2.stop()
	return o.toDeviceLatency(backend, toDeviceTwo, p.addr, p2.addr, sd)
}

// idleLongPolls opens idlePolls long polls of idlePolls devices on a
// myelin process of its own (started for this, so no earlier scenario's
// heap hides or inflates the polls' cost) and reports the server's RSS
// growth and CPU while they wait, with the Go runtime's view of it (from
// the process's /metrics): heap in use, goroutine stacks and goroutines.
func (o *options) idleLongPolls(ctx context.Context, backend, dsn string, st *storage.Store, cfg *config.Config) error {
	var toks []string
	err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		user := "@poll" + o.run + ":" + cfg.ServerName
		if err := addUser(ctx, tx, user, "x"); err != nil {
			return err
		}
		var err error
		_, toks, err = addDevices(ctx, tx, user, "P", idlePolls)
		return err
	})
	if err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	argv := append([]string{o.myelin, "serve", "--listen", addr, "--metrics-listen", metricsAddr, "--database", dsn,
		"--registration", "open", "--rate-limit", "off"}, o.serverArgs...)
	p, _, err := o.start("myelin", addr, argv)
	if err != nil {
		return err
	}
	defer p.stop()
	c := syncClient(idlePolls)
	defer c.CloseIdleConnections()
	since := make([]string, len(toks))
	for i, tok := range toks {
		var b syncBody
		if status, err := getJSON(ctx, c, syncURL(p.addr, "", 0), tok, &b); err != nil || status != 200 {
			return fmt.Errorf("initial sync: %d %v", status, err)
		}
		since[i] = b.NextBatch
	}
	time.Sleep(time.Second) // the initial syncs' garbage
	// The CPU the server uses with no poll waiting (its background work:
	// wake-up and token-cache polling, last-seen flushes), for comparison.
	idleCPU0 := p.cpuTime()
	time.Sleep(idleMeasure)
	idleCPU := p.cpuTime() - idleCPU0
	before, rt0 := p.statusKB("VmRSS"), goRuntime(metricsAddr)
	pollCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for i, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := getJSON(pollCtx, c, syncURL(p.addr, since[i], 45*time.Second), tok, nil)
			if pollCtx.Err() == nil && (err != nil || status != 200) {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%d %v", status, err))
				mu.Unlock()
			}
		}()
	}
	time.Sleep(3 * time.Second) // all connected and waiting
	cpu0 := p.cpuTime()
	time.Sleep(idleMeasure)
	cpu := p.cpuTime() - cpu0
	during, rt := p.statusKB("VmRSS"), goRuntime(metricsAddr)
	cancel()
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("idle long polls: %d answered early or failed, e.g. %s", len(failed), failed[0])
	}
	name := fmt.Sprintf("%d idle /sync long polls", idlePolls)
	fmt.Printf("%-8s %-6s %-34s RSS +%s (%s → %s), CPU %.2f%% of a core over %s (%.2f%% with none waiting)\n", backend, "myelin", name,
		mb(during-before), mb(before), mb(during), 100*cpu.Seconds()/idleMeasure.Seconds(), idleMeasure, 100*idleCPU.Seconds()/idleMeasure.Seconds())
	fmt.Printf("%-8s %-6s %-34s heap in use +%s, goroutine stacks +%s, goroutines +%.0f (target: RSS < +50MB, CPU ~0%%)\n", backend, "myelin", "",
		mb(int64(rt["go_memstats_heap_inuse_bytes"]-rt0["go_memstats_heap_inuse_bytes"])/1024),
		mb(int64(rt["go_memstats_stack_inuse_bytes"]-rt0["go_memstats_stack_inuse_bytes"])/1024),
		rt["go_goroutines"]-rt0["go_goroutines"])
	o.report.single(backend, "myelin", name+" (RSS growth)", 0, during-before)
	o.report.pollKB[backend] = during - before
	return nil
}

// commitFloor prints the latency of the smallest durable write on the
// database: a one-row insert committed by this process, n times. A
// send-to-device commits one transaction before it is answered, so this
// is the floor under the to-device figures (on PostgreSQL, mostly the WAL
// flush of the commit, which the machine's disk decides).
func commitFloor(ctx context.Context, backend string, st *storage.Store, n int) error {
	if _, err := st.DB.ExecContext(ctx, "CREATE TABLE bench_commit_floor (n INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("commit floor: %w", err)
	}
	defer st.DB.ExecContext(ctx, "DROP TABLE bench_commit_floor") //nolint:errcheck
	took := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO bench_commit_floor (n) VALUES (?)", i)
			return err
		})
		if err != nil {
			return fmt.Errorf("commit floor: %w", err)
		}
		took = append(took, time.Since(start))
		time.Sleep(2 * time.Millisecond)
	}
	slices.Sort(took)
	fmt.Printf("%-8s %-6s %-34s p50 %s p99 %s (floor: a one-row insert and commit, %d times)\n", backend, "db", "one durable commit", ms(pctl(took, 50)), ms(pctl(took, 99)), len(took))
	return nil
}

// pctl is the p-th percentile of sorted d.
func pctl(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }

// goRuntime reads the go_* gauges of a myelin process's /metrics (empty
// when unreachable).
func goRuntime(metricsAddr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "go_") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// rounds is the number of messages of each latency figure.
func (o *options) rounds() int {
	if o.quick {
		return quickRounds
	}
	return toDeviceRounds
}

// toDeviceLatency measures, o.rounds() times, the time from sending a
// to-device message (on sendAddr) to its arrival in the receiver's waiting
// /sync (on pollAddr): @bench's first device receives, its second sends.
// Sender and receiver are goroutines of this process, so both ends are
// timed on one clock; each keeps its own connection open (as clients do),
// and one message is in flight at a time, a few milliseconds after the
// receiver's poll began waiting, so the rate stays moderate (well under
// 100 messages a second) and the server's core is never saturated. Also
// shown: how long the send itself took (PUT to its 200), and the rest, the
// wake-up and the woken poll's answer.
func (o *options) toDeviceLatency(backend, name, sendAddr, pollAddr string, sd *seeded) error {
	ctx := context.Background()
	c := syncClient(4)
	defer c.CloseIdleConnections()
	receiver, sender := sd.Token, sd.Tokens[1]
	var b syncBody
	if status, err := getJSON(ctx, c, syncURL(pollAddr, "", 0), receiver, &b); err != nil || status != 200 {
		return fmt.Errorf("initial sync: %d %v", status, err)
	}
	since := b.NextBatch
	sc, err := dial(sendAddr)
	if err != nil {
		return err
	}
	defer sc.Close()
	sc.keepBody = true
	lat := make([]time.Duration, 0, o.rounds())
	sends := make([]time.Duration, 0, o.rounds())
	after := make([]time.Duration, 0, o.rounds())
	for round := range o.rounds() {
		type got struct {
			b   syncBody
			at  time.Time
			err error
		}
		ch := make(chan got, 1)
		go func() {
			var b syncBody
			status, err := getJSON(ctx, c, syncURL(pollAddr, since, 20*time.Second), receiver, &b)
			if err == nil && status != 200 {
				err = fmt.Errorf("status %d", status)
			}
			ch <- got{b, time.Now(), err}
		}()
		time.Sleep(10 * time.Millisecond) // the poll is waiting
		body := fmt.Appendf(nil, `{"messages":{%q:{%q:{"seq":%d}}}}`, sd.UserID, sd.DeviceID, round)
		req := httpRequest("PUT", sendAddr, fmt.Sprintf("/_matrix/client/v3/sendToDevice/m.bench/%s-%s-%d", o.run, url.PathEscape(pollAddr), round), sender, body)
		start := time.Now()
		status, err := sc.roundTrip(req)
		sent := time.Now()
		if err != nil || status != 200 {
			return fmt.Errorf("sendToDevice: %d %s %v", status, sc.body, err)
		}
		g := <-ch
		if g.err != nil {
			return fmt.Errorf("waiting sync: %v", g.err)
		}
		if len(g.b.ToDevice.Events) != 1 || g.b.ToDevice.Events[0].Content.Seq != round {
			return fmt.Errorf("waiting sync got %+v (device_lists %s) after %v, want message %d", g.b.ToDevice, g.b.DeviceLists, g.at.Sub(start), round)
		}
		lat = append(lat, g.at.Sub(start))
		sends = append(sends, sent.Sub(start))
		after = append(after, g.at.Sub(sent))
		since = g.b.NextBatch
	}
	slices.Sort(lat)
	slices.Sort(sends)
	slices.Sort(after)
	pct := pctl
	p50, p99 := pct(lat, 50), pct(lat, 99)
	fmt.Printf("%-8s %-6s %-34s p50 %s p99 %s max %s (%d messages, send to arrival; target p99 < 10ms)\n", backend, "myelin", name, ms(p50), ms(p99), ms(lat[len(lat)-1]), len(lat))
	fmt.Printf("%-8s %-6s %-34s the send answered in p50 %s p99 %s; the poll answered after it in p50 %s p99 %s\n", backend, "myelin", "",
		ms(pct(sends, 50)), ms(pct(sends, 99)), ms(pct(after, 50)), ms(pct(after, 99)))
	o.report.single(backend, "myelin", name+" p99", p99, 0)
	return nil
}
