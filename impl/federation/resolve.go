package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target is where to send requests for a server name: a base URL and the
// Host header (which is also the TLS server name).
type Target struct {
	BaseURL string
	Host    string
}

// Resolver finds the base URL of a server: first the static map
// (--federation-resolve), then the specification's server discovery:
// an IP literal or explicit port is used as is; otherwise
// https://NAME/.well-known/matrix/server may delegate to another host[:port];
// otherwise NAME:8448. SRV records are not consulted.
type Resolver struct {
	Static map[string]string
	// HTTP fetches .well-known documents (redirects are followed, as the spec
	// allows). Required unless every server is in Static.
	HTTP *http.Client

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
	if name == "" {
		return "", "", errors.New("empty server name")
	}
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return "", "", fmt.Errorf("bad server name %q", name)
		}
		var rest string
		host, rest = name[:end+1], name[end+1:]
		if rest == "" {
			return host, "", nil
		}
		if rest[0] != ':' {
			return "", "", fmt.Errorf("bad server name %q", name)
		}
		port = rest[1:]
	} else if i := strings.LastIndexByte(name, ':'); i >= 0 {
		host, port = name[:i], name[i+1:]
	} else {
		host = name
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", "", fmt.Errorf("bad server name %q", name)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("bad port in server name %q", name)
		}
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

// discover follows .well-known delegation; any failure falls back to
// NAME:8448, as the specification says.
func (r *Resolver) discover(ctx context.Context, name string) (Target, time.Duration) {
	fallback := direct(name, "", name)
	if r.HTTP == nil {
		return fallback, wellKnownErrorTTL
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+name+"/.well-known/matrix/server", nil)
	if err != nil {
		return fallback, wellKnownErrorTTL
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return fallback, wellKnownErrorTTL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWellKnownBytes))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fallback, wellKnownErrorTTL
	}
	var wk struct {
		Server string `json:"m.server"`
	}
	if json.Unmarshal(body, &wk) != nil || wk.Server == "" {
		return fallback, wellKnownErrorTTL
	}
	host, port, err := splitServerName(wk.Server)
	if err != nil {
		return fallback, wellKnownErrorTTL
	}
	// The delegated name is used as the Host header and TLS name, with or
	// without its port.
	return direct(host, port, wk.Server), wellKnownTTL
}
