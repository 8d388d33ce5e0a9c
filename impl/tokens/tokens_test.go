package tokens

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
)

const draws = 10000

var (
	accessTokenRE = regexp.MustCompile(`^myl_[A-Za-z0-9_-]{43}$`)
	deviceIDRE    = regexp.MustCompile(`^[A-Z]{10}$`)
	sessionIDRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{24}$`)
	// The Matrix localpart grammar, plus our own stricter shape.
	matrixLocalpartRE = regexp.MustCompile(`^[a-z0-9._=\-/]+$`)
	localpartRE       = regexp.MustCompile(`^[a-z][a-z0-9]{11}$`)
)

// checkUnique draws n values from gen, checks each against re and checks
// that none repeats.
func checkUnique(t *testing.T, name string, gen func() string, re *regexp.Regexp) {
	t.Helper()
	seen := make(map[string]struct{}, draws)
	for range draws {
		s := gen()
		if !re.MatchString(s) {
			t.Fatalf("%s: %q does not match %s", name, s, re)
		}
		if _, dup := seen[s]; dup {
			t.Fatalf("%s: duplicate value %q after %d draws", name, s, len(seen))
		}
		seen[s] = struct{}{}
	}
}

func TestAccessToken(t *testing.T) {
	tok := NewAccessToken()
	if len(tok) != AccessTokenLen || AccessTokenLen != 47 {
		t.Fatalf("len(%q) = %d, AccessTokenLen = %d, want 47", tok, len(tok), AccessTokenLen)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(tok, "myl_"))
	if err != nil || len(raw) != 32 {
		t.Fatalf("token body %q does not decode to 32 bytes: %d, %v", tok, len(raw), err)
	}
	checkUnique(t, "NewAccessToken", NewAccessToken, accessTokenRE)
}

func TestRefreshLikeToken(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		nbytes int
		length int
	}{
		{"", 16, 22},
		{"myr_", 32, 4 + 43},
		{"syt_", 33, 4 + 44},
		{"x", 64, 1 + 86},
		{"long_prefix_", 100, 12 + 134},
	} {
		tok := NewRefreshLikeToken(tc.prefix, tc.nbytes)
		if len(tok) != tc.length || !strings.HasPrefix(tok, tc.prefix) {
			t.Errorf("NewRefreshLikeToken(%q, %d) = %q (len %d), want prefix and len %d", tc.prefix, tc.nbytes, tok, len(tok), tc.length)
			continue
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(tok[len(tc.prefix):])
		if err != nil || len(raw) != tc.nbytes {
			t.Errorf("NewRefreshLikeToken(%q, %d) = %q: body decodes to %d bytes, %v", tc.prefix, tc.nbytes, tok, len(raw), err)
		}
	}
	re := regexp.MustCompile(`^myr_[A-Za-z0-9_-]{43}$`)
	checkUnique(t, "NewRefreshLikeToken", func() string { return NewRefreshLikeToken("myr_", 32) }, re)
}

func TestRefreshLikeTokenTooShortPanics(t *testing.T) {
	for _, n := range []int{-1, 0, 1, MinTokenBytes - 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewRefreshLikeToken(_, %d) did not panic", n)
				}
			}()
			NewRefreshLikeToken("p_", n)
		}()
	}
}

func TestDeviceID(t *testing.T) {
	checkUnique(t, "NewDeviceID", NewDeviceID, deviceIDRE)
}

// TestDeviceIDDistribution is a sanity check, not a statistical test suite:
// every letter appears, in every position, with roughly equal frequency.
func TestDeviceIDDistribution(t *testing.T) {
	var counts [26]int
	var perPos [DeviceIDLen][26]int
	for range draws {
		id := NewDeviceID()
		for i := range len(id) {
			counts[id[i]-'A']++
			perPos[i][id[i]-'A']++
		}
	}
	total := draws * DeviceIDLen
	expected := float64(total) / 26 // ~3846
	for i, c := range counts {
		// The standard deviation is ~60; allow a very generous ±15%
		// (~9.6 sigma) so this never flakes but still catches gross bias.
		if c == 0 || float64(c) < expected*0.85 || float64(c) > expected*1.15 {
			t.Errorf("letter %c appeared %d times, expected about %.0f", 'A'+i, c, expected)
		}
	}
	for pos := range perPos {
		for i, c := range perPos[pos] {
			if c == 0 {
				t.Errorf("letter %c never appeared at position %d", 'A'+i, pos)
			}
		}
	}
}

func TestSessionID(t *testing.T) {
	if id := NewSessionID(); len(id) != SessionIDLen || SessionIDLen != 24 {
		t.Fatalf("len(%q) = %d, want 24", id, len(id))
	}
	checkUnique(t, "NewSessionID", NewSessionID, sessionIDRE)
}

func TestRandomLocalpart(t *testing.T) {
	seen := make(map[string]struct{}, draws)
	var chars [256]bool
	for range draws {
		lp := RandomLocalpart()
		if !matrixLocalpartRE.MatchString(lp) || !localpartRE.MatchString(lp) {
			t.Fatalf("RandomLocalpart() = %q does not match %s / %s", lp, matrixLocalpartRE, localpartRE)
		}
		if _, dup := seen[lp]; dup {
			t.Fatalf("duplicate localpart %q", lp)
		}
		seen[lp] = struct{}{}
		for i := 1; i < len(lp); i++ {
			chars[lp[i]] = true
		}
	}
	for _, c := range []byte(localpartAlphabet) {
		if !chars[c] {
			t.Errorf("character %q never appeared in a localpart", c)
		}
	}
}

func TestSamplerAlphabets(t *testing.T) {
	// Every character of an alphabet is reachable and nothing else is
	// produced, including for an alphabet that divides 256 exactly.
	for _, alphabet := range []string{upperAlphabet, localpartAlphabet, "01", "0123456789abcdef", "abc"} {
		var s sampler
		seen := map[byte]int{}
		for range 2000 {
			c := s.pick(alphabet)
			if !strings.Contains(alphabet, string(c)) {
				t.Fatalf("pick(%q) returned %q", alphabet, c)
			}
			seen[c]++
		}
		if len(seen) != len(alphabet) {
			t.Errorf("pick(%q) produced only %d distinct characters", alphabet, len(seen))
		}
	}
}

func TestHashToken(t *testing.T) {
	// FIPS 180-2 / NIST test vectors for SHA-256.
	for _, tc := range []struct{ in, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	} {
		h := HashToken(tc.in)
		if got := h.String(); got != tc.want {
			t.Errorf("HashToken(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if h != HashToken(tc.in) {
			t.Errorf("HashToken(%q) is not stable", tc.in)
		}
	}
	tok := NewAccessToken()
	if HashToken(tok) != Hash(sha256.Sum256([]byte(tok))) {
		t.Fatal("HashToken differs from sha256.Sum256")
	}
	if HashToken(tok) == HashToken(NewAccessToken()) {
		t.Fatal("different tokens hash equal")
	}
}

func TestParseHash(t *testing.T) {
	h := HashToken(NewAccessToken())
	s := h.String()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Fatalf("String() = %q, want 64 lowercase hex characters", s)
	}
	got, err := ParseHash(s)
	if err != nil || got != h {
		t.Fatalf("ParseHash(%q) = %v, %v; want %v", s, got, err, h)
	}
	if got, err := ParseHash(strings.ToUpper(s)); err != nil || got != h {
		t.Fatalf("ParseHash(upper) = %v, %v; want %v", got, err, h)
	}
	for _, bad := range []string{
		"",
		s[:63],
		s + "0",
		s[:62],
		"g" + s[1:],
		" " + s[1:],
		s[:32] + "-" + s[33:],
		strings.Repeat("0", 128),
	} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("ParseHash(%q) error = %v, want ErrInvalidHash", bad, err)
		}
	}
}

func TestEqual(t *testing.T) {
	a := NewAccessToken()
	b := strings.Clone(a)
	if !Equal(a, b) {
		t.Fatal("Equal(a, copy of a) = false")
	}
	if !Equal("", "") {
		t.Fatal(`Equal("", "") = false`)
	}
	for _, other := range []string{"", a[:len(a)-1], a + "x", NewAccessToken(), a[:10] + "X" + a[11:]} {
		if other == a {
			continue
		}
		if Equal(a, other) || Equal(other, a) {
			t.Errorf("Equal(%q, %q) = true", a, other)
		}
	}
}

func BenchmarkNewAccessToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewAccessToken()
	}
}

func BenchmarkHashToken(b *testing.B) {
	tok := NewAccessToken()
	b.ReportAllocs()
	for b.Loop() {
		_ = HashToken(tok)
	}
}

func BenchmarkNewDeviceID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewDeviceID()
	}
}
