package testenv

import (
	"testing"
	"time"
)

// RevocationDelay bounds how long a server takes to refuse a token revoked
// by another process (the admin CLI, another server on the same
// database): the token cache promises less than a second (see impl/auth).
// The revoking process itself refuses it at once.
const RevocationDelay = time.Second

// WantTokenRefusedWithin polls GET /account/whoami at base with token until
// it answers 401 M_UNKNOWN_TOKEN, and fails if it still answers 200 more
// than limit after since (when the revocation committed).
func WantTokenRefusedWithin(t testing.TB, base, token string, since time.Time, limit time.Duration) {
	t.Helper()
	for {
		r := Do(t, base, "GET", "/_matrix/client/v3/account/whoami", token, nil)
		if r.Status != 200 {
			WantError(t, r, 401, "M_UNKNOWN_TOKEN")
			return
		}
		if time.Since(since) > limit {
			t.Fatalf("revoked token still accepted %s after the revocation committed", time.Since(since).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
