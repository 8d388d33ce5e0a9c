package main

// The /sync figures of issue 14: what 1,000 idle long polls cost the
// server (RSS and CPU), and how soon a to-device message reaches a waiting
// /sync (p50/p99), with one process and, on PostgreSQL, with the sender
// and the receiver on two processes.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
)

const (
	idlePolls      = 1000
	idleMeasure    = 5 * time.Second
	toDeviceRounds = 200
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
		if err := o.idleLongPolls(ctx, backend, p, st, cfg); err != nil {
			return err
		}
	}
	if !o.want("todevice") {
		return nil
	}
	if err := o.toDeviceLatency(backend, "to-device → waiting /sync", p.addr, p.addr, sd); err != nil {
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
	return o.toDeviceLatency(backend, "to-device → /sync on another process", p.addr, p2.addr, sd)
}

// idleLongPolls opens idlePolls long polls of idlePolls devices and
// reports the server's RSS growth and CPU while they wait.
func (o *options) idleLongPolls(ctx context.Context, backend string, p *proc, st *storage.Store, cfg *config.Config) error {
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
	before := p.statusKB("VmRSS")
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
	during := p.statusKB("VmRSS")
	cancel()
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("idle long polls: %d answered early or failed, e.g. %s", len(failed), failed[0])
	}
	name := fmt.Sprintf("%d idle /sync long polls", idlePolls)
	fmt.Printf("%-8s %-6s %-34s RSS +%s (%s → %s), CPU %.2f%% of a core over %s\n", backend, "myelin", name,
		mb(during-before), mb(before), mb(during), 100*cpu.Seconds()/idleMeasure.Seconds(), idleMeasure)
	o.report.single(backend, "myelin", name+" (RSS growth)", 0, during-before)
	return nil
}

// toDeviceLatency measures, toDeviceRounds times, the time from sending a
// to-device message (on sendAddr) to its arrival in the receiver's waiting
// /sync (on pollAddr): @bench's first device receives, its second sends.
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
	lat := make([]time.Duration, 0, toDeviceRounds)
	for round := range toDeviceRounds {
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
		start := time.Now()
		status, resp, err := once(sendAddr, httpRequest("PUT", sendAddr, fmt.Sprintf("/_matrix/client/v3/sendToDevice/m.bench/%s-%s-%d", o.run, url.PathEscape(pollAddr), round), sender, body))
		if err != nil || status != 200 {
			return fmt.Errorf("sendToDevice: %d %s %v", status, resp, err)
		}
		g := <-ch
		if g.err != nil {
			return fmt.Errorf("waiting sync: %v", g.err)
		}
		if len(g.b.ToDevice.Events) != 1 || g.b.ToDevice.Events[0].Content.Seq != round {
			return fmt.Errorf("waiting sync got %+v (device_lists %s) after %v, want message %d", g.b.ToDevice, g.b.DeviceLists, g.at.Sub(start), round)
		}
		lat = append(lat, g.at.Sub(start))
		since = g.b.NextBatch
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	fmt.Printf("%-8s %-6s %-34s p50 %s p99 %s (%d messages, send to arrival)\n", backend, "myelin", name, ms(p50), ms(p99), len(lat))
	o.report.single(backend, "myelin", name+" p99", p99, 0)
	return nil
}
