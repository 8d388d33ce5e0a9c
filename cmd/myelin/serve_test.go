package main

import (
	"path/filepath"
	"testing"

	"github.com/myelin-hs/myelin/impl/testenv"
)

// Without --public-base-url, the base URL a client discovers is the
// address the server listens on: with --listen 127.0.0.1:0, the port the
// system chose, not 0.
func TestServeOnPortZeroAdvertisesItsRealPortInWellKnown(t *testing.T) {
	p := testenv.StartProcess(t, testenv.BuildMyelin(t), "--database", filepath.Join(t.TempDir(), "myelin.db"))
	r := testenv.Do(t, p.URL, "GET", "/.well-known/matrix/client", "", nil)
	testenv.WantStatus(t, r, 200)
	hs, _ := r.Body["m.homeserver"].(map[string]any)
	if got := hs["base_url"]; got != p.URL {
		t.Fatalf("m.homeserver.base_url = %v, want the address the server listens on, %s", got, p.URL)
	}
}
