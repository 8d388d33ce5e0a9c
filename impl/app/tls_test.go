package app_test

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func getJSON(t *testing.T, c *http.Client, url string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("GET %s: not JSON: %s", url, raw)
	}
	return resp.StatusCode, body
}

func TestFederationIsServedOverTLSOnItsOwnAddress(t *testing.T) {
	app.SetCertCheckInterval(50 * time.Millisecond)
	dir := t.TempDir()
	cert, key, pool := testenv.SelfSignedCert(t, dir, "fed")
	addr := testenv.FreeAddr(t)
	s := testenv.Start(t, testenv.SQLite, func(c *config.Config) {
		c.ServerName = addr
		c.FederationListen = addr
		c.TLSCert, c.TLSKey = cert, key
	})
	if s.App.FederationAddr() != addr {
		t.Fatalf("federation on %q, want %q", s.App.FederationAddr(), addr)
	}
	client := testenv.TLSClient(pool)
	base := "https://" + addr
	status, doc := getJSON(t, client, base+"/_matrix/key/v2/server")
	if status != 200 || doc["server_name"] != addr {
		t.Fatalf("key document over TLS: %d %v", status, doc)
	}
	// The client API stays on the main listener.
	status, body := getJSON(t, client, base+"/_matrix/client/versions")
	if status != 404 || body["errcode"] != "M_UNRECOGNIZED" {
		t.Fatalf("client API on the federation listener: %d %v", status, body)
	}
	// Plain HTTP is not spoken there.
	if resp, err := http.Get("http://" + addr + "/_matrix/key/v2/server"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the federation listener answered plain HTTP")
		}
	}

	// A renewed certificate is served without a restart; a broken one
	// leaves the previous one in service.
	cert2, key2, pool2 := testenv.SelfSignedCert(t, dir, "renewed")
	mustCopy(t, cert2, cert)
	mustCopy(t, key2, key)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := testenv.TLSClient(pool2).Get(base + "/_matrix/key/v2/server")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if status, _ := getJSON(t, testenv.TLSClient(pool2), base+"/_matrix/key/v2/server"); status != 200 {
		t.Fatalf("a broken certificate file took the listener down: %d", status)
	}
}

func mustCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

func TestBadTLSSettingsStopStartUpWithOneLine(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := testenv.SelfSignedCert(t, dir, "fed")
	_, otherKey, _ := testenv.SelfSignedCert(t, dir, "other")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "tls-cert and tls-key: set both or neither"},
		{[]string{"--tls-cert", cert, "--tls-key", key}, "tls-cert: set federation-listen too"},
		{[]string{"--federation-listen", "127.0.0.1:8448"}, "federation-listen: set tls-cert and tls-key"},
		{[]string{"--federation-listen", "nowhere", "--tls-cert", cert, "--tls-key", key}, `federation-listen: "nowhere" is not host:port`},
		{[]string{"--federation-listen", "127.0.0.1:8008", "--tls-cert", cert, "--tls-key", key}, "federation needs its own address"},
		{[]string{"--federation-listen", "127.0.0.1:8448", "--tls-cert", junk, "--tls-key", key}, "tls-cert/tls-key: "},
		{[]string{"--federation-listen", "127.0.0.1:8448", "--tls-cert", cert, "--tls-key", otherKey}, "tls-cert/tls-key: "},
		{[]string{"--federation-listen", "127.0.0.1:8448", "--tls-cert", filepath.Join(dir, "missing"), "--tls-key", key}, "no such file"},
		{[]string{"--federation-device-list-ttl", "0s"}, "federation-device-list-ttl: 0s is out of range"},
		{[]string{"--federation-device-list-trust", "100ms"}, "federation-device-list-trust: 100ms is out of range"},
	} {
		_, err := config.Load(flag.NewFlagSet("t", flag.ContinueOnError), tc.args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line with %q", tc.args, err, tc.want)
		}
	}
	// The same settings from a YAML file,
	yml := filepath.Join(dir, "myelin.yaml")
	if err := os.WriteFile(yml, []byte("federation_listen: 127.0.0.1:8448\ntls_cert: "+cert+"\ntls_key: "+key+
		"\nfederation_device_list_ttl: 3s\nfederation_device_list_trust: 2h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--config", yml}, func(string) string { return "" })
	if err != nil || c.FederationListen != "127.0.0.1:8448" || c.TLSCert != cert || c.FederationDeviceListTTL != 3*time.Second || c.FederationDeviceListTrust != 2*time.Hour {
		t.Fatalf("settings from YAML: %+v, %v", c, err)
	}
	// and from the environment.
	env := map[string]string{"MYELIN_FEDERATION_LISTEN": "127.0.0.1:8448", "MYELIN_TLS_CERT": cert, "MYELIN_TLS_KEY": key, "MYELIN_FEDERATION_DEVICE_LIST_TTL": "2s"}
	c, err = config.Load(flag.NewFlagSet("t", flag.ContinueOnError), nil, func(k string) string { return env[k] })
	if err != nil || c.FederationListen != "127.0.0.1:8448" || c.TLSKey != key || c.FederationDeviceListTTL != 2*time.Second {
		t.Fatalf("settings from the environment: %+v, %v", c, err)
	}
}
