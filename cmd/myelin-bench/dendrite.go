package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Dendrite beside Myelin: with -dendrite DIR (default MYELIN_TEST_DENDRITE,
// the folder of github.com/matrix-org/dendrite v0.13.8's binaries), the
// SQLite run also measures a Dendrite monolith on SQLite, on the same core
// with GOMAXPROCS=1, loaded with the same shape of data through its own
// client API (@bench with 3 devices; dendriteLoginAccounts accounts for
// the login scenario), and prints the ratios against Myelin.

const (
	dendriteLoginAccounts = 16
	// dendriteBcryptCost is Dendrite's default (its CI config lowers it).
	dendriteBcryptCost = 10
)

// dendriteBins are the binaries the comparison needs.
var dendriteBins = []string{"dendrite", "generate-config", "generate-keys", "create-account"}

// dendriteDir returns the folder of the Dendrite binaries, or "" with the
// reason when there are none.
func dendriteDir(dir string) (string, string) {
	if dir == "" {
		return "", "no Dendrite binaries (set -dendrite or MYELIN_TEST_DENDRITE)"
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		dir = filepath.Dir(dir)
	}
	for _, b := range dendriteBins {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Sprintf("%s not found in %s", b, dir)
		}
	}
	return dir, ""
}

// runDendrite measures Dendrite with SQLite and records it as server
// "dendrite" of the sqlite backend.
func (o *options) runDendrite() error {
	const b = "sqlite"
	dir := filepath.Join(o.dir, "dendrite")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "dendrite.yaml")
	if err := writeDendriteConfig(o.dendrite, dir, conf); err != nil {
		return err
	}
	argv := []string{filepath.Join(o.dendrite, "dendrite"), "-config", conf, "-http-bind-address", addr}
	// The start-up of a fresh database, as myelin's "fresh database" row.
	d, took, err := o.startIn("dendrite", addr, dir, argv)
	if err != nil {
		return err
	}
	defer d.stop()
	o.report.single(b, "dendrite", "dendrite start-up, fresh database", took, 0)
	o.report.idle(b, "dendrite", d)

	base := "http://" + addr
	create := func(local string) error {
		out, err := exec.Command(filepath.Join(o.dendrite, "create-account"), "-config", conf,
			"-username", local, "-password", benchPassword, "-url", base).CombinedOutput()
		if err != nil {
			return fmt.Errorf("dendrite create-account %s: %v: %s", local, err, out)
		}
		return nil
	}
	if err := create("bench"); err != nil {
		return err
	}
	var token, deviceID string
	for i := range 3 {
		tok, dev, err := dendriteLogin(base, "bench")
		if err != nil {
			return err
		}
		if i == 0 {
			token, deviceID = tok, dev
		}
	}
	if o.want("login") {
		for i := range dendriteLoginAccounts {
			if err := create(loginAccount(i)); err != nil {
				return err
			}
		}
	}
	scen := []scenario{
		{name: "GET /devices (3 devices)", key: "devices", req: fixed(httpRequest("GET", addr, "/_matrix/client/v3/devices", token, nil))},
		{name: "GET /account/whoami", key: "whoami", req: fixed(httpRequest("GET", addr, "/_matrix/client/v3/account/whoami", token, nil))},
		{name: "PUT /devices/{id} rename", key: "rename", req: func(w, seq int) []byte {
			return httpRequest("PUT", addr, "/_matrix/client/v3/devices/"+deviceID, token, fmt.Appendf(nil, `{"display_name":"Bench %d-%d"}`, w, seq))
		}},
		{name: "POST /login (bcrypt 10)", key: "login", hashing: true, noHashBound: true, req: func(w, _ int) []byte {
			return httpRequest("POST", addr, "/_matrix/client/v3/login", "",
				fmt.Appendf(nil, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":%q},"password":%q}`, loginAccount(max(w, 0)%dendriteLoginAccounts), benchPassword))
		}},
	}
	o.loadAll(b, "dendrite", d, scen)
	o.report.afterLoad(b, "dendrite", d)
	if o.want("login") {
		if r, err := o.bcryptRate(); err == nil {
			o.report.bcrypt = r
			fmt.Printf("%-8s %-6s %-34s %4d %9.1f\n", b, "-", "bcrypt cost 10 hash (Dendrite's)", 1, r)
		}
	}
	return nil
}

// writeDendriteConfig writes Dendrite's configuration for the benchmark:
// its CI configuration (SQLite files in dir, no rate limits) with
// registration through the shared secret only, its default bcrypt cost,
// and warnings only in the log.
func writeDendriteConfig(bin, dir, conf string) error {
	out, err := exec.Command(filepath.Join(bin, "generate-config"), "-ci", "-dir", dir, "-server", "localhost").Output()
	if err != nil {
		return fmt.Errorf("dendrite generate-config: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		return fmt.Errorf("dendrite config: %w", err)
	}
	set := func(section, k string, v any) error {
		m, ok := cfg[section].(map[string]any)
		if !ok {
			return fmt.Errorf("dendrite config has no %s section", section)
		}
		m[k] = v
		return nil
	}
	for _, s := range []struct {
		section, key string
		v            any
	}{
		{"global", "private_key", filepath.Join(dir, "matrix_key.pem")},
		{"client_api", "registration_disabled", true},
		{"user_api", "bcrypt_cost", dendriteBcryptCost},
	} {
		if err := set(s.section, s.key, s.v); err != nil {
			return err
		}
	}
	cfg["logging"] = []any{map[string]any{"type": "std", "level": "warn"}}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(conf, raw, 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(filepath.Join(bin, "generate-keys"), "-private-key", filepath.Join(dir, "matrix_key.pem")).CombinedOutput(); err != nil {
		return fmt.Errorf("dendrite generate-keys: %v: %s", err, out)
	}
	return nil
}

// dendriteLogin logs local in on a new device.
func dendriteLogin(base, local string) (token, deviceID string, err error) {
	body := fmt.Sprintf(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":%q},"password":%q}`, local, benchPassword)
	resp, err := http.Post(base+"/_matrix/client/v3/login", "application/json", strings.NewReader(body))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var r struct {
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		return "", "", fmt.Errorf("dendrite login %s: %d %v", local, resp.StatusCode, err)
	}
	return r.AccessToken, r.DeviceID, nil
}

// bcryptRate measures Dendrite's password hash (bcrypt, cost 10) on the
// server core, as hashRate does argon2id.
func (o *options) bcryptRate() (float64, error) {
	argv := []string{o.self, "bcryptrate", "-cost", strconv.Itoa(dendriteBcryptCost), "-duration", max(o.duration, hashRateDuration).String()}
	if o.pin {
		argv = append([]string{"taskset", "-c", strconv.Itoa(o.serverCPU)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("bcryptrate: %w", err)
	}
	var r map[string]float64
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("bcryptrate: %w", err)
	}
	return r["hashes_per_second"], nil
}

// runBcryptRate hashes with bcrypt for a while and prints the rate.
func runBcryptRate(args []string) error {
	cost, d := dendriteBcryptCost, 2*time.Second
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-cost":
			cost, _ = strconv.Atoi(args[i+1])
		case "-duration":
			d, _ = time.ParseDuration(args[i+1])
		}
	}
	n, start := 0, time.Now()
	for n == 0 || time.Since(start) < d {
		if _, err := bcrypt.GenerateFromPassword([]byte("correct horse battery staple"), cost); err != nil {
			return err
		}
		n++
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]float64{"hashes_per_second": float64(n) / time.Since(start).Seconds()})
}
