package mxid

import "testing"

func TestServerNameSplitsAtTheFirstColon(t *testing.T) {
	cases := map[string]string{
		"@alice:example.org":      "example.org",
		"@alice:example.org:8448": "example.org:8448",
		"@a:[::1]:8448":           "[::1]:8448",
	}
	for id, want := range cases {
		if got, ok := ServerName(id); !ok || got != want {
			t.Errorf("ServerName(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
	for _, bad := range []string{"", "alice:example.org", "@:example.org", "@alice", "@alice:", "#room:example.org"} {
		if _, ok := ServerName(bad); ok {
			t.Errorf("ServerName(%q) accepted", bad)
		}
	}
}
