package federation_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/myelin-hs/myelin/impl/federation"
)

func TestServerNamesResolveByTheSpecRules(t *testing.T) {
	var fetches atomic.Int64
	var wellKnown atomic.Pointer[string] // served for example.com
	delegate := func(body string) { wellKnown.Store(&body) }
	delegate(`{"m.server":"delegated.example.com:4443"}`)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if r.Host != "example.com" || r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(*wellKnown.Load()))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed TLS handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	// Every name "resolves" to the test server, whose certificate is valid
	// for example.com only; the other names fail TLS like a missing server.
	client := srv.Client()
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	dns := newDNSServer(t) // no SRV records: every name falls through to :8448
	r := &federation.Resolver{Static: map[string]string{"static.test": "http://127.0.0.1:9999/"}, HTTP: client, LookupSRV: dns.lookupSRV()}
	cases := []struct{ name, base, host string }{
		{"static.test", "http://127.0.0.1:9999", "127.0.0.1:9999"},
		{"1.2.3.4", "https://1.2.3.4:8448", "1.2.3.4"},
		{"[::1]:8449", "https://[::1]:8449", "[::1]:8449"},
		{"matrix.example.org:1234", "https://matrix.example.org:1234", "matrix.example.org:1234"},
		{"example.com", "https://delegated.example.com:4443", "delegated.example.com:4443"},
		{"example.net", "https://example.net:8448", "example.net"}, // TLS fails: no delegation
		{"nowhere.example", "https://nowhere.example:8448", "nowhere.example"},
	}
	for _, c := range cases {
		got, err := r.Resolve(context.Background(), c.name)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got.BaseURL != c.base || got.Host != c.host {
			t.Errorf("%s → %+v, want %s with Host %s", c.name, got, c.base, c.host)
		}
	}
	before := fetches.Load()
	if _, err := r.Resolve(context.Background(), "example.com"); err != nil || fetches.Load() != before {
		t.Fatalf("the .well-known answer was not cached (%v)", err)
	}
	for body, want := range map[string]string{
		`{"m.server":"delegated.example.net"}`: "https://delegated.example.net:8448",
		`{"m.server":"10.0.0.1"}`:              "https://10.0.0.1:8448",
		`{"m.server":5}`:                       "https://example.com:8448",
		`not json`:                             "https://example.com:8448",
	} {
		delegate(body)
		fresh := &federation.Resolver{HTTP: client, LookupSRV: dns.lookupSRV()}
		if got, err := fresh.Resolve(context.Background(), "example.com"); err != nil || got.BaseURL != want {
			t.Errorf(".well-known %s → %+v (%v), want %s", body, got, err, want)
		}
	}
	for _, bad := range []string{"", "host/path", "host:0", "host:99999", "[::1"} {
		if _, err := r.Resolve(context.Background(), bad); err == nil {
			t.Errorf("%q resolved", bad)
		}
	}
}

func TestSRVRecordsFindTheServerWhileTLSAndHostStayTheServerName(t *testing.T) {
	var wellKnown atomic.Pointer[string]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/matrix/server":
			body := wellKnown.Load()
			if body == nil || r.Host != "example.com" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(*body))
		case "/probe":
			_, _ = w.Write([]byte(r.Host))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	// Every connection reaches the test server (its certificate is valid
	// for example.com only); the addresses asked for are recorded.
	var mu sync.Mutex
	var dialed []string
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	client := &http.Client{Transport: federation.WithSRV(tr)}
	dns := newDNSServer(t)
	dns.srv("_matrix-fed._tcp.example.com", "matrix.example.com", 8443)
	dns.srv("_matrix._tcp.old.example.com", "legacy.example.com", 8444)
	dns.srv("_matrix-fed._tcp.delegated.example.org", "target.example.org", 8445)
	dns.srv("_matrix-fed._tcp.none.example.com", ".", 0)
	dns.srv("_matrix-fed._tcp.zero.example.com", "matrix.example.com", 0)
	ctx := context.Background()
	resolve := func(name string) federation.Target {
		t.Helper()
		got, err := (&federation.Resolver{HTTP: client, LookupSRV: dns.lookupSRV()}).Resolve(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return got
	}

	// No .well-known (404): the SRV record says where; Host and TLS name
	// stay example.com.
	got := resolve("example.com")
	want := federation.Target{BaseURL: "https://example.com:8443", Host: "example.com", Addr: "matrix.example.com:8443"}
	if got != want {
		t.Fatalf("example.com → %+v, want %+v", got, want)
	}
	req, err := got.NewRequest(ctx, http.MethodGet, "/probe", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request to the SRV target: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	last := dialed[len(dialed)-1]
	mu.Unlock()
	if resp.StatusCode != 200 || string(body) != "example.com" || last != "matrix.example.com:8443" {
		t.Fatalf("answer %d with Host %q, connected to %s: want 200 with Host example.com, connected to the SRV target", resp.StatusCode, body, last)
	}

	// The deprecated _matrix._tcp record when there is no _matrix-fed one
	// (.well-known fails here: the certificate is not old.example.com's).
	if got, want := resolve("old.example.com"), (federation.Target{BaseURL: "https://old.example.com:8444", Host: "old.example.com", Addr: "legacy.example.com:8444"}); got != want {
		t.Errorf("old.example.com → %+v, want %+v", got, want)
	}
	// A "." target means no service there: the default port.
	if got, want := resolve("none.example.com"), (federation.Target{BaseURL: "https://none.example.com:8448", Host: "none.example.com"}); got != want {
		t.Errorf("none.example.com → %+v, want %+v", got, want)
	}
	if got, want := resolve("zero.example.com"), (federation.Target{BaseURL: "https://zero.example.com:8448", Host: "zero.example.com"}); got != want {
		t.Errorf("zero.example.com (SRV port 0) → %+v, want %+v", got, want)
	}
	// Delegation to a name without a port: that name's SRV record, with
	// the delegated name as Host.
	body2 := `{"m.server":"delegated.example.org"}`
	wellKnown.Store(&body2)
	if got, want := resolve("example.com"), (federation.Target{BaseURL: "https://delegated.example.org:8445", Host: "delegated.example.org", Addr: "target.example.org:8445"}); got != want {
		t.Errorf("example.com delegated → %+v, want %+v", got, want)
	}
	// Delegation with a port: no SRV lookup.
	body3 := `{"m.server":"delegated.example.org:9000"}`
	wellKnown.Store(&body3)
	before := len(dns.questions())
	if got, want := resolve("example.com"), (federation.Target{BaseURL: "https://delegated.example.org:9000", Host: "delegated.example.org:9000"}); got != want {
		t.Errorf("example.com delegated with port → %+v, want %+v", got, want)
	}
	if asked := dns.questions()[before:]; len(asked) != 0 {
		t.Errorf("SRV looked up for a delegation with a port: %v", asked)
	}
}

// FuzzResolvedServerNamesAreHTTPSHosts feeds arbitrary server names (they
// come from remote users' IDs and requests): resolving never panics, and
// what resolves is an https URL of just a host and port, with a Host
// header.
func FuzzResolvedServerNamesAreHTTPSHosts(f *testing.F) {
	for _, s := range []string{"example.com", "example.com:8448", "[::1]:8448", "1.2.3.4", "[::1", "a:b:c", "", "host:99999", "ex ample.com", "exa/mple.com:1"} {
		f.Add(s)
	}
	r := &federation.Resolver{LookupSRV: func(context.Context, string, string, string) (string, []*net.SRV, error) {
		return "", nil, errors.New("no DNS in this test")
	}}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := r.Resolve(context.Background(), name)
		if err != nil {
			return
		}
		u, err := url.Parse(got.BaseURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Port() == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			t.Fatalf("%q resolved to %+v (%v)", name, got, err)
		}
		if got.Host == "" || strings.ContainsAny(got.Host, "/?#@ \r\n") {
			t.Fatalf("%q resolved with Host %q", name, got.Host)
		}
	})
}
