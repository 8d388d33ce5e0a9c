package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// runLoad drives one request at a running server and prints the result:
// a way to hold a server under load while profiling it.
//
//	myelin-bench load -addr 127.0.0.1:8008 -path /_matrix/client/v3/account/whoami -token T
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8008", "server address")
	method := fs.String("method", "GET", "request method")
	path := fs.String("path", "/_matrix/client/v3/account/whoami", "request path")
	body := fs.String("body", "", "JSON request body")
	token := fs.String("token", "", "access token")
	conc := fs.Int("conc", 16, "concurrency")
	d := fs.Duration("duration", 10*time.Second, "measured time")
	_ = fs.Parse(args)
	var b []byte
	if *body != "" {
		b = []byte(*body)
	}
	r := load(*addr, *conc, time.Second, *d, fixed(httpRequest(*method, *addr, *path, *token, b)))
	fmt.Printf("%.0f req/s, p50 %s, p99 %s, statuses %v\n", r.RPS(), r.P50, r.P99, r.Status)
	return nil
}

// request builds the bytes of one HTTP/1.1 request; worker and seq let a
// scenario vary bodies (a new device name, a new username) per request.
type request func(worker, seq int) []byte

// fixed is a request that never changes.
func fixed(b []byte) request { return func(int, int) []byte { return b } }

// httpRequest formats a keep-alive HTTP/1.1 request.
func httpRequest(method, host, path, token string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// result is what one load run measured.
type result struct {
	Requests int           // answered in the measured window
	OK       int           // of which 2xx
	Errors   int           // answers outside 2xx, and broken connections
	Status   map[int]int   // answers by status code
	Elapsed  time.Duration // the measured window
	P50, P99 time.Duration
}

// RPS counts successful (2xx) answers only.
func (r result) RPS() float64 { return float64(r.OK) / r.Elapsed.Seconds() }

// load drives addr with conc workers, each on its own keep-alive
// connection sending one request at a time, for warmup (not measured) and
// then d; requests started before the end are waited for but not counted. The client is deliberately minimal (no net/http): on one core it
// must outrun the fastest server it measures.
func load(addr string, conc int, warmup, d time.Duration, req request) result {
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+d)
	type acc struct {
		lat    []time.Duration
		errs   int
		status map[int]int
	}
	accs := make([]acc, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &accs[w]
			a.status = map[int]int{}
			var c *conn
			for seq := 0; ; seq++ {
				t0 := time.Now()
				if !t0.Before(until) {
					break
				}
				if c == nil {
					var err error
					if c, err = dial(addr); err != nil {
						a.errs++
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				status, err := c.roundTrip(req(w, seq))
				t1 := time.Now()
				if err != nil {
					c.Close()
					c = nil
					if !t1.Before(from) {
						a.errs++
					}
					continue
				}
				if c.closing {
					c.Close()
					c = nil
				}
				// Count what completes in the window: a slow request
				// (a login waiting for its hash) started in the
				// warm-up counts when it finishes.
				if t1.Before(from) || t1.After(until) {
					continue
				}
				a.lat = append(a.lat, t1.Sub(t0))
				a.status[status]++
				if status/100 != 2 {
					a.errs++
				}
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	r := result{Elapsed: d, Status: map[int]int{}}
	var all []time.Duration
	for _, a := range accs {
		all = append(all, a.lat...)
		r.Errors += a.errs
		for s, n := range a.status {
			r.Status[s] += n
			if s/100 == 2 {
				r.OK += n
			}
		}
	}
	r.Requests = len(all)
	if len(all) > 0 {
		slices.Sort(all)
		r.P50 = all[len(all)/2]
		r.P99 = all[len(all)*99/100]
	}
	return r
}

// once sends one request on a new connection and returns the status and
// body (for probes and single timed operations).
func once(addr string, req []byte) (int, []byte, error) {
	c, err := dial(addr)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	c.keepBody = true
	status, err := c.roundTrip(req)
	return status, c.body, err
}

type conn struct {
	net.Conn
	br       *bufio.Reader
	keepBody bool
	body     []byte
	closing  bool // the server said Connection: close
}

func dial(addr string) (*conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: nc, br: bufio.NewReaderSize(nc, 16<<10)}, nil
}

var errProtocol = errors.New("malformed HTTP response")

// roundTrip writes req and reads one response: status line, headers, and
// a body framed by Content-Length or chunked encoding.
func (c *conn) roundTrip(req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, errProtocol
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errProtocol
	}
	length, chunked, closing := -1, false, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, errProtocol
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, errProtocol
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		for {
			line, err = c.br.ReadSlice('\n')
			if err != nil {
				return 0, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if err != nil {
				return 0, errProtocol
			}
			if err := c.skip(int(n), 2); err != nil {
				return 0, err
			}
			if n == 0 {
				break
			}
		}
	case length >= 0:
		if err := c.skip(length, 0); err != nil {
			return 0, err
		}
	default:
		return 0, errProtocol
	}
	c.closing = closing
	return status, nil
}

// skip consumes n bytes of body (kept if keepBody) and trailer bytes of
// framing.
func (c *conn) skip(n, trailer int) error {
	if c.keepBody {
		b := make([]byte, n)
		if _, err := io.ReadFull(c.br, b); err != nil {
			return err
		}
		c.body = append(c.body, b...)
		n = 0
	}
	_, err := c.br.Discard(n + trailer)
	return err
}
