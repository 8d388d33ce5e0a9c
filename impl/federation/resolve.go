package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/myelin-hs/myelin/impl/mxid"
)

// Target is where to send requests for a server name: a base URL (whose
// host is also the TLS server name), the Host header, and, for a server
// found through an SRV record, the address to connect to instead of the
// base URL's host.
type Target struct {
	BaseURL string
	Host    string
	Addr    string
}

// NewRequest builds a request to path on t; the client must be one of
// NewHTTPClient or WithSRV, which connect to t.Addr when it is set.
func (t Target) NewRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	if t.Addr != "" {
		ctx = context.WithValue(ctx, dialAddrKey{}, t.Addr)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	req.Host = t.Host
	return req, nil
}

type dialAddrKey struct{}

// WithSRV wraps base so that a request built by Target.NewRequest for an
// SRV target connects to that target, with TLS still verified for the
// server name. Such requests get their own connection pool, so a
// connection to an SRV target never serves a request meant for the host
// itself (a later .well-known lookup, say).
func WithSRV(base *http.Transport) http.RoundTripper {
	srv := base.Clone()
	dial := srv.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	srv.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a, ok := ctx.Value(dialAddrKey{}).(string); ok {
			addr = a
		}
		return dial(ctx, network, addr)
	}
	return srvTransport{direct: base, srv: srv}
}

type srvTransport struct{ direct, srv *http.Transport }

func (t srvTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ok := req.Context().Value(dialAddrKey{}).(string); ok {
		return t.srv.RoundTrip(req)
	}
	return t.direct.RoundTrip(req)
}

// Resolver finds where a server is: first the static map
// (--federation-resolve), then the specification's server discovery: an
// IP literal or explicit port is used as is; otherwise
// https://NAME/.well-known/matrix/server may delegate to another
// host[:port]; a host without a port (NAME itself when there is no
// delegation) is looked up as an SRV record, _matrix-fed._tcp and then the
// deprecated _matrix._tcp; otherwise HOST:8448.
type Resolver struct {
	Static map[string]string
	// HTTP fetches .well-known documents (redirects are followed, as the spec
	// allows). Required unless every server is in Static.
	HTTP *http.Client
	// LookupSRV looks up SRV records (nil: net.DefaultResolver.LookupSRV).
	LookupSRV func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)

	mu    sync.Mutex
	cache map[string]cachedTarget
}

type cachedTarget struct {
	t       Target
	expires time.Time
}

const (
	wellKnownTTL      = 24 * time.Hour
	wellKnownErrorTTL = 10 * time.Minute
	maxWellKnownBytes = 64 << 10
)

// splitServerName splits a server name into host and port ("" if none).
// IPv6 literals keep their brackets.
func splitServerName(name string) (host, port string, err error) {
	host, port, ok := mxid.SplitServerName(name)
	if !ok {
		return "", "", fmt.Errorf("bad server name %q", name)
	}
	return host, port, nil
}

func isIPLiteral(host string) bool {
	return net.ParseIP(strings.Trim(host, "[]")) != nil
}

// Resolve returns where to reach serverName.
func (r *Resolver) Resolve(ctx context.Context, serverName string) (Target, error) {
	if base, ok := r.Static[serverName]; ok {
		u, err := url.Parse(base)
		if err != nil {
			return Target{}, err
		}
		return Target{BaseURL: strings.TrimRight(base, "/"), Host: u.Host}, nil
	}
	host, port, err := splitServerName(serverName)
	if err != nil {
		return Target{}, err
	}
	if isIPLiteral(host) || port != "" {
		return direct(host, port, serverName), nil
	}
	r.mu.Lock()
	c, ok := r.cache[serverName]
	r.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.t, nil
	}
	t, ttl := r.discover(ctx, serverName)
	r.mu.Lock()
	if r.cache == nil || len(r.cache) > 10000 {
		r.cache = map[string]cachedTarget{}
	}
	r.cache[serverName] = cachedTarget{t: t, expires: time.Now().Add(ttl)}
	r.mu.Unlock()
	return t, nil
}

func direct(host, port, hostHeader string) Target {
	if port == "" {
		port = "8448"
	}
	return Target{BaseURL: "https://" + net.JoinHostPort(strings.Trim(host, "[]"), port), Host: hostHeader}
}

// discover follows .well-known delegation, then SRV records, as the
// specification orders them; what fails falls through to the next step.
func (r *Resolver) discover(ctx context.Context, name string) (Target, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	delegated, ok := r.wellKnown(ctx, name)
	if !ok {
		return r.srvOrDefault(ctx, name), wellKnownErrorTTL
	}
	host, port, err := splitServerName(delegated)
	if err != nil {
		return r.srvOrDefault(ctx, name), wellKnownErrorTTL
	}
	// The delegated name is used as the Host header and TLS name, with or
	// without its port.
	if isIPLiteral(host) || port != "" {
		return direct(host, port, delegated), wellKnownTTL
	}
	return r.srvOrDefault(ctx, host), wellKnownTTL
}

// wellKnown fetches NAME's /.well-known/matrix/server and returns its
// m.server.
func (r *Resolver) wellKnown(ctx context.Context, name string) (string, bool) {
	if r.HTTP == nil {
		return "", false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+name+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", false
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWellKnownBytes))
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", false
	}
	var wk struct {
		Server string `json:"m.server"`
	}
	if json.Unmarshal(body, &wk) != nil || wk.Server == "" {
		return "", false
	}
	return wk.Server, true
}

// srvOrDefault finds host (a hostname without a port) through its SRV
// records, _matrix-fed._tcp first and then the deprecated _matrix._tcp,
// or else at host:8448. Either way the Host header and the TLS name are
// host itself.
func (r *Resolver) srvOrDefault(ctx context.Context, host string) Target {
	lookup := r.LookupSRV
	if lookup == nil {
		lookup = net.DefaultResolver.LookupSRV
	}
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, addrs, err := lookup(ctx, service, "tcp", host)
		if err != nil || len(addrs) == 0 {
			continue
		}
		// The records come sorted by priority and shuffled by weight; a
		// lone "." target says the service is not offered (port 0 could
		// not be connected to either).
		target := strings.TrimSuffix(addrs[0].Target, ".")
		if target == "" || addrs[0].Port == 0 {
			break
		}
		port := strconv.Itoa(int(addrs[0].Port))
		return Target{BaseURL: "https://" + net.JoinHostPort(host, port), Host: host, Addr: net.JoinHostPort(target, port)}
	}
	return direct(host, "", host)
}
