package app

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// certReloader serves the certificate of a PEM certificate and key file
// pair, loaded again when either file changes (checked at most every
// certCheckInterval), so a renewed certificate is used without a restart.
// A pair that fails to load keeps the previous one in service.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

var certCheckInterval = 10 * time.Second

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.reload(); err != nil {
		return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
	}
	return r, nil
}

// fileStamp identifies the current contents of both files.
func (r *certReloader) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return b.String()
}

func (r *certReloader) reload() error {
	stamp := r.fileStamp()
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp, r.checked = &c, stamp, time.Now()
	return nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= certCheckInterval {
		r.checked = time.Now()
		if r.fileStamp() != r.stamp {
			if err := r.reload(); err != nil {
				r.log.Warn("tls: the changed certificate does not load; serving the previous one", "cert", r.certFile, "err", err)
			} else {
				r.log.Info("tls: certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// federationOnly lets through the paths other servers use (the federation
// API, the key API and server discovery); the client API stays on the
// main listener.
func federationOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/_matrix/federation/") || strings.HasPrefix(p, "/_matrix/key/") ||
			p == "/.well-known/matrix/server" {
			next.ServeHTTP(w, r)
			return
		}
		e := matrixerr.Unrecognized(http.StatusNotFound, "Only the federation API is served on this address")
		body, _ := json.Marshal(e.Body())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(e.Status)
		_, _ = w.Write(body)
	})
}
