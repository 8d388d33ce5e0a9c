package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/myelin-hs/myelin/impl/signing"
)

// Client sends federation requests signed with X-Matrix authorization.
type Client struct {
	Identity *Identity
	Resolver *Resolver
	HTTP     *http.Client
}

// maxResponseBytes bounds what is read from a remote server.
const maxResponseBytes = 8 << 20

// RemoteError is a non-2xx answer from a remote server.
type RemoteError struct {
	Status  int
	ErrCode string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("remote answered %d %s %s", e.Status, e.ErrCode, e.Message)
}

// Retryable reports whether the request may succeed later: rate limits,
// server errors, timeouts, and 401 (the remote may not yet have been able
// to fetch our keys).
func (e *RemoteError) Retryable() bool {
	switch {
	case e.Status >= 500, e.Status == http.StatusTooManyRequests,
		e.Status == http.StatusRequestTimeout, e.Status == http.StatusUnauthorized:
		return true
	}
	return false
}

// Do sends a signed request to destination. path is the request URI (path
// and query, already escaped); body (if not nil) is sent as JSON; a 2xx JSON
// answer is decoded into out (if not nil).
func (c *Client) Do(ctx context.Context, method, destination, path string, body, out any) error {
	var content []byte
	if body != nil {
		var err error
		if content, err = json.Marshal(body); err != nil {
			return err
		}
	}
	t, err := c.Resolver.Resolve(ctx, destination)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", destination, err)
	}
	var rd io.Reader
	if content != nil {
		rd = bytes.NewReader(content)
	}
	req, err := t.NewRequest(ctx, method, path, rd)
	if err != nil {
		return err
	}
	key, err := c.Identity.Current(ctx)
	if err != nil {
		return err
	}
	auth, err := signing.SignRequest(c.Identity.ServerName, destination, key.ID, key.Priv, method, req.URL.RequestURI(), content)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	if content != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		re := &RemoteError{Status: resp.StatusCode}
		var me struct {
			ErrCode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(raw, &me) == nil {
			re.ErrCode, re.Message = me.ErrCode, me.Error
		}
		return re
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s on %s: bad JSON answer: %w", method, path, destination, err)
	}
	return nil
}

// NewHTTPClient returns the HTTP client used for federation: bounded
// timeouts, TLS verified as usual, SRV targets connected to (WithSRV).
func NewHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: WithSRV(tr), Timeout: 60 * time.Second}
}
