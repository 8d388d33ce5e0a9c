package credentials_test

import (
	"testing"

	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

func TestNormalizeUserIDLowerCasesLocalpartsOfThisServerOnly(t *testing.T) {
	for in, want := range map[string]string{
		"Alice":              "@alice:example.org",
		"@Alice:example.org": "@alice:example.org",
		"@alice:EXAMPLE.org": "@alice:example.org",
		"@Alice:other.org":   "@Alice:other.org",
		"@nocolon":           "@nocolon",
	} {
		if got := credentials.NormalizeUserID(in, "example.org"); got != want {
			t.Errorf("NormalizeUserID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseReadsIdentifierThenLegacyFields(t *testing.T) {
	cases := []struct {
		name                            string
		identifier                      map[string]any
		user, medium, address, password string
		want                            credentials.Identifier
		errcode                         string
	}{
		{"m.id.user", map[string]any{"type": "m.id.user", "user": "alice"}, "ignored", "", "", "pw", credentials.Identifier{User: "alice"}, ""},
		{"m.id.thirdparty", map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "", "", "", "pw", credentials.Identifier{Medium: "email", Address: "a@b.c"}, ""},
		{"legacy user", nil, "alice", "", "", "pw", credentials.Identifier{User: "alice"}, ""},
		{"legacy 3PID", nil, "", "email", "a@b.c", "pw", credentials.Identifier{Medium: "email", Address: "a@b.c"}, ""},
		{"nothing", nil, "", "", "", "pw", credentials.Identifier{}, "M_MISSING_PARAM"},
		{"medium without address", nil, "", "email", "", "pw", credentials.Identifier{}, "M_MISSING_PARAM"},
		{"m.id.user without user", map[string]any{"type": "m.id.user"}, "", "", "", "pw", credentials.Identifier{}, "M_MISSING_PARAM"},
		{"unknown identifier", map[string]any{"type": "m.id.phone", "country": "GB", "phone": "1"}, "", "", "", "pw", credentials.Identifier{}, "M_UNKNOWN"},
		{"no password", nil, "alice", "", "", "", credentials.Identifier{}, "M_MISSING_PARAM"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := credentials.Parse(c.identifier, c.user, c.medium, c.address, c.password)
			if c.errcode != "" {
				if me, ok := matrixerr.As(err); !ok || me.Code != c.errcode {
					t.Fatalf("want %s, got %v", c.errcode, err)
				}
				return
			}
			if err != nil || p.Identifier != c.want || p.Password != c.password {
				t.Fatalf("got %+v %v", p, err)
			}
		})
	}
}

func TestCanonicalAddressLowerCasesEmailAndKeepsAnMSISDNsDigits(t *testing.T) {
	if got := credentials.CanonicalAddress("email", " Alice@Example.ORG "); got != "alice@example.org" {
		t.Errorf("email: %q", got)
	}
	for _, in := range []string{"447700900001", "+447700900001", " +44 7700 900-001 ", "+44 (7700) 900.001"} {
		if got := credentials.CanonicalAddress("msisdn", in); got != "447700900001" {
			t.Errorf("msisdn %q: %q", in, got)
		}
	}
}
