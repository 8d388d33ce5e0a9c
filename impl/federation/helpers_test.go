package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func openStore(t *testing.T, b testenv.Backend) *storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), testenv.NewDatabase(t, b), storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// peer is another Matrix server played by the test: it publishes a key
// document (which tests may spoil), signs requests, and hands every other
// request to handle.
type peer struct {
	name  string
	keyID signing.KeyID
	priv  ed25519.PrivateKey
	srv   *httptest.Server

	mu         sync.Mutex
	validUntil time.Time
	badSelfSig bool
	handle     http.HandlerFunc
	keyFetches atomic.Int64
}

func newPeer(t testing.TB, name string) *peer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{name: name, keyID: "ed25519:test1", priv: priv, validUntil: time.Now().Add(time.Hour)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_matrix/key/v2/server") {
			p.keyFetches.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(p.keyDocument(t))
			return
		}
		p.mu.Lock()
		h := p.handle
		p.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *peer) keyDocument(t testing.TB) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	pub := p.priv.Public().(ed25519.PublicKey)
	doc, _ := json.Marshal(map[string]any{
		"server_name":     p.name,
		"valid_until_ts":  p.validUntil.UnixMilli(),
		"verify_keys":     map[string]any{string(p.keyID): map[string]string{"key": signing.EncodeBase64(pub)}},
		"old_verify_keys": map[string]any{},
	})
	signer := p.priv
	if p.badSelfSig {
		_, signer, _ = ed25519.GenerateKey(rand.Reader)
	}
	out, err := signing.SignJSON(p.name, p.keyID, signer, doc)
	if err != nil {
		t.Error(err)
	}
	return out
}

func (p *peer) setHandler(h http.HandlerFunc) {
	p.mu.Lock()
	p.handle = h
	p.mu.Unlock()
}

// do sends a request to base as this peer, signed for destination with
// priv (the peer's own key unless a test forges one).
func (p *peer) do(t *testing.T, base, destination, method, path string, body any, auth func(method, uri string, content []byte) string) testenv.Response {
	t.Helper()
	var content []byte
	if body != nil {
		var err error
		if content, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	if auth == nil {
		auth = func(method, uri string, content []byte) string {
			h, err := signing.SignRequest(p.name, destination, p.keyID, p.priv, method, uri, content)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
	}
	req, err := http.NewRequest(method, base+path, strings.NewReader(string(content)))
	if err != nil {
		t.Fatal(err)
	}
	if h := auth(method, req.URL.RequestURI(), content); h != "" {
		req.Header.Set("Authorization", h)
	}
	req.Header.Set("Content-Type", "application/json")
	return testenv.DoRequest(t, req)
}

func login(t testing.TB, s *testenv.Server, userID, deviceID string) string {
	return testenv.IssueToken(t, s.App.Store, s.App.Devices, userID, deviceID)
}

// cachedDevices is user's device list in store's remote-device cache, as
// "DEVICE=name,…" in device order.
func cachedDevices(ctx context.Context, store *storage.Store, user string) (string, error) {
	var rows []storage.RemoteDevice
	if err := store.R.NewSelect().Model(&rows).Where("user_id = ?", user).Order("device_id").Scan(ctx); err != nil {
		return "", err
	}
	var out []string
	for _, d := range rows {
		n := ""
		if d.DisplayName != nil {
			n = *d.DisplayName
		}
		out = append(out, d.DeviceID+"="+n)
	}
	return strings.Join(out, ","), nil
}
