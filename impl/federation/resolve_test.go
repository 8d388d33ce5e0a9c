package federation_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
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
	r := &federation.Resolver{Static: map[string]string{"static.test": "http://127.0.0.1:9999/"}, HTTP: client}
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
		fresh := &federation.Resolver{HTTP: client}
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
