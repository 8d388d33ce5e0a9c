package appservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodYAML = `id: bridge
url: http://127.0.0.1:29318
as_token: as-secret
hs_token: hs-secret
sender_localpart: _bridge_bot
rate_limited: false
io.element.msc4190: true
namespaces:
  users:
    - exclusive: true
      regex: '@_bridge_.*:example\.org'
    - exclusive: false
      regex: '@shared_.*'
  aliases: []
  rooms: []
`

func TestABadRegistrationFileIsOneLineNamingTheFileAndField(t *testing.T) {
	cases := []struct{ name, from, to, field string }{
		{"no id", "id: bridge\n", "", "id:"},
		{"bad url", "url: http://127.0.0.1:29318", "url: ftp:/x", "url:"},
		{"no as_token", "as_token: as-secret\n", "", "as_token:"},
		{"no hs_token", "hs_token: hs-secret\n", "", "hs_token:"},
		{"same tokens", "hs_token: hs-secret", "hs_token: as-secret", "hs_token:"},
		{"bad sender", "sender_localpart: _bridge_bot", "sender_localpart: Bad Bot", "sender_localpart:"},
		{"bad regex", `regex: '@shared_.*'`, `regex: '@shared_(['`, "namespaces.users[1].regex:"},
		{"empty regex", `regex: '@shared_.*'`, `regex: ''`, "namespaces.users[1].regex:"},
		{"not yaml", "namespaces:", "namespaces: [", "not a registration file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("/etc/bridge.yaml", []byte(strings.Replace(goodYAML, c.from, c.to, 1)), "example.org")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "appservice-config /etc/bridge.yaml: ") || !strings.Contains(msg, c.field) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q does not name the file and %s on one line", msg, c.field)
			}
		})
	}
}

func TestNamespacesMatchFromTheStartAndExclusivityIsPerNamespace(t *testing.T) {
	r, err := Parse("f", []byte(goodYAML), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if r.Sender != "@_bridge_bot:example.org" || !r.Exclusive(r.Sender) {
		t.Fatalf("sender %q not its own exclusively", r.Sender)
	}
	for _, c := range []struct {
		user              string
		in, exclusiveUser bool
	}{
		{"@_bridge_alice:example.org", true, true},
		{"@shared_bob:example.org", true, false},
		{"@x_bridge_alice:example.org", false, false}, // no match from the start
		{"@alice:example.org", false, false},
	} {
		if r.InNamespace(c.user) != c.in || r.Exclusive(c.user) != c.exclusiveUser {
			t.Errorf("%s: in=%v exclusive=%v, want %v %v", c.user, r.InNamespace(c.user), r.Exclusive(c.user), c.in, c.exclusiveUser)
		}
	}
}

func TestRegistrationsSharingAnIDTokenOrSenderAreRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.yaml", goodYAML)
	for _, c := range []struct{ name, yaml, field string }{
		{"id", strings.NewReplacer("as-secret", "as2", "hs-secret", "hs2", "_bridge_bot", "bot2").Replace(goodYAML), "id:"},
		{"as_token", strings.NewReplacer("id: bridge", "id: b2", "hs-secret", "hs2", "_bridge_bot", "bot2").Replace(goodYAML), "as_token:"},
		{"sender", strings.NewReplacer("id: bridge", "id: b2", "as-secret", "as2", "hs-secret", "hs2").Replace(goodYAML), "sender_localpart:"},
	} {
		b := write(c.name+".yaml", c.yaml)
		reg := NewRegistry("example.org")
		err := reg.Load([]string{a, b})
		if err == nil || !strings.Contains(err.Error(), b) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("duplicate %s: %v", c.name, err)
		}
		if reg.Any() {
			t.Errorf("duplicate %s: a refused set was loaded", c.name)
		}
	}
	reg := NewRegistry("example.org")
	if err := reg.Load([]string{a}); err != nil {
		t.Fatal(err)
	}
	if reg.ByToken("as-secret") == nil || reg.ByToken("as-secreT") != nil || reg.ByToken("hs-secret") != nil || reg.ByToken("") != nil {
		t.Fatal("ByToken does not find exactly the as_token")
	}
}
