package mxid

import (
	"strings"
	"testing"
)

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

func TestServerNamesFollowTheSpecGrammar(t *testing.T) {
	for _, ok := range []string{"matrix.org", "matrix.org:8448", "localhost", "1.2.3.4", "1.2.3.4:1", "[::1]", "[1234:5678::abcd]:65535", "a-b.c"} {
		if !ValidServerName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "%", "ex ample.org", "exa/mple.org", "a@b", "host:", "host:0", "host:65536", "host:123456", "host:8a", "[::1", "[::1]x", "[1.2.3.4]", "[zz]", ":8448", "host:+1", strings.Repeat("a", 256)} {
		if ValidServerName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSplitServerNameKeepsIPv6Brackets(t *testing.T) {
	for name, want := range map[string][2]string{
		"matrix.org":        {"matrix.org", ""},
		"matrix.org:8448":   {"matrix.org", "8448"},
		"[::1]":             {"[::1]", ""},
		"[2001:db8::1]:443": {"[2001:db8::1]", "443"},
		"1.2.3.4:5":         {"1.2.3.4", "5"},
	} {
		host, port, ok := SplitServerName(name)
		if !ok || host != want[0] || port != want[1] {
			t.Errorf("SplitServerName(%q) = %q, %q, %v; want %q, %q", name, host, port, ok, want[0], want[1])
		}
	}
}
