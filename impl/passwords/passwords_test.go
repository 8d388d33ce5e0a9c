package passwords

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fastParams keeps tests quick; only TestDefaultParamsRoundTrip and the
// benchmarks use the real defaults.
func fastParams() Params {
	return Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

func mustHash(t testing.TB, h *Hasher, pw string) string {
	t.Helper()
	enc, err := h.Hash(pw)
	if err != nil {
		t.Fatalf("Hash(%q): %v", pw, err)
	}
	return enc
}

func TestDefaultParams(t *testing.T) {
	want := Params{MemoryKiB: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	if got := DefaultParams(); got != want {
		t.Fatalf("DefaultParams() = %+v, want %+v", got, want)
	}
	if err := DefaultParams().Verify(); err != nil {
		t.Fatalf("DefaultParams().Verify() = %v", err)
	}
}

func TestDefaultParamsRoundTrip(t *testing.T) {
	h := New(DefaultParams(), nil)
	enc := mustHash(t, h, "correct horse battery staple")
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected encoding %q", enc)
	}
	ok, rehash, err := h.Verify("correct horse battery staple", enc)
	if err != nil || !ok || rehash {
		t.Fatalf("Verify = (%v, %v, %v), want (true, false, nil)", ok, rehash, err)
	}
}

func TestRoundTrip(t *testing.T) {
	h := New(fastParams(), nil)
	for _, pw := range []string{
		"hunter2",
		"",
		"pässwörd日本",
		"emoji 🔑🗝️ and spaces\tand\nnewlines",
		strings.Repeat("long password ", 100),
	} {
		enc := mustHash(t, h, pw)
		parts := strings.Split(enc, "$")
		if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" || parts[3] != "m=64,t=1,p=1" {
			t.Fatalf("unexpected encoding %q", enc)
		}
		if strings.ContainsAny(parts[4]+parts[5], "=-_") {
			t.Fatalf("encoding %q is not unpadded standard base64", enc)
		}
		if len(parts[4]) != 22 || len(parts[5]) != 43 { // 16 and 32 bytes, unpadded
			t.Fatalf("salt/hash lengths %d/%d in %q", len(parts[4]), len(parts[5]), enc)
		}
		ok, rehash, err := h.Verify(pw, enc)
		if err != nil || !ok || rehash {
			t.Fatalf("Verify(%q) = (%v, %v, %v), want (true, false, nil)", pw, ok, rehash, err)
		}
	}
}

func TestSaltsDiffer(t *testing.T) {
	h := New(fastParams(), nil)
	a, b := mustHash(t, h, "same"), mustHash(t, h, "same")
	if a == b {
		t.Fatalf("two hashes of the same password are identical: %q", a)
	}
}

func TestWrongPassword(t *testing.T) {
	h := New(fastParams(), nil)
	enc := mustHash(t, h, "pässwörd日本")
	for _, pw := range []string{"", "passwörd日本", "pässwörd日", "pässwörd日本 ", "PÄSSWÖRD日本", "pa\u0308sswörd日本" /* NFD */} {
		ok, rehash, err := h.Verify(pw, enc)
		if err != nil || ok || rehash {
			t.Errorf("Verify(%q) = (%v, %v, %v), want (false, false, nil)", pw, ok, rehash, err)
		}
	}
}

func TestNeedsRehashOnParamChange(t *testing.T) {
	old := New(fastParams(), nil)
	enc := mustHash(t, old, "pw")

	variants := map[string]func(*Params){
		"memory":      func(p *Params) { p.MemoryKiB = 128 },
		"iterations":  func(p *Params) { p.Iterations = 2 },
		"parallelism": func(p *Params) { p.Parallelism = 2 },
		"salt length": func(p *Params) { p.SaltLen = 32 },
		"key length":  func(p *Params) { p.KeyLen = 64 },
	}
	for name, mutate := range variants {
		p := fastParams()
		mutate(&p)
		h := New(p, nil)
		ok, rehash, err := h.Verify("pw", enc)
		if err != nil || !ok || !rehash {
			t.Errorf("%s: Verify = (%v, %v, %v), want (true, true, nil)", name, ok, rehash, err)
		}
		// needsRehash must never be reported for a wrong password.
		ok, rehash, err = h.Verify("wrong", enc)
		if err != nil || ok || rehash {
			t.Errorf("%s: Verify(wrong) = (%v, %v, %v), want (false, false, nil)", name, ok, rehash, err)
		}
	}
}

// TestReferenceVector checks interoperability with the Argon2 reference
// implementation (phc-winner-argon2 test vector, also used by RustCrypto's
// argon2 crate): "password" with salt "somesalt", m=65536, t=2, p=1.
func TestReferenceVector(t *testing.T) {
	t.Parallel()
	const ref = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	h := New(fastParams(), nil)
	ok, rehash, err := h.Verify("password", ref)
	if err != nil || !ok || !rehash {
		t.Fatalf("Verify(reference) = (%v, %v, %v), want (true, true, nil)", ok, rehash, err)
	}
	if ok, _, _ := h.Verify("passwore", ref); ok {
		t.Fatal("reference hash accepted a wrong password")
	}
	// With a pepper the preimage changes, so the unpeppered reference must
	// not verify.
	if ok, _, _ := New(fastParams(), []byte("pepper")).Verify("password", ref); ok {
		t.Fatal("peppered hasher accepted an unpeppered hash")
	}
}

func TestPepper(t *testing.T) {
	peppered := New(fastParams(), []byte("server secret pepper"))
	enc := mustHash(t, peppered, "pässwörd日本")

	if ok, _, err := peppered.Verify("pässwörd日本", enc); err != nil || !ok {
		t.Fatalf("same pepper: ok=%v err=%v", ok, err)
	}
	if ok, _, err := New(fastParams(), []byte("other pepper")).Verify("pässwörd日本", enc); err != nil || ok {
		t.Fatalf("different pepper: ok=%v err=%v, want false, nil", ok, err)
	}
	if ok, _, err := New(fastParams(), nil).Verify("pässwörd日本", enc); err != nil || ok {
		t.Fatalf("no pepper: ok=%v err=%v, want false, nil", ok, err)
	}
	// And the other way round: an unpeppered hash does not verify with a pepper.
	plain := mustHash(t, New(fastParams(), nil), "pässwörd日本")
	if ok, _, err := peppered.Verify("pässwörd日本", plain); err != nil || ok {
		t.Fatalf("unpeppered hash with pepper: ok=%v err=%v, want false, nil", ok, err)
	}
	// An empty pepper means no pepper.
	if ok, _, err := New(fastParams(), []byte{}).Verify("pässwörd日本", plain); err != nil || !ok {
		t.Fatalf("empty pepper: ok=%v err=%v, want true, nil", ok, err)
	}
}

func TestPepperIsCopied(t *testing.T) {
	pepper := []byte("pepper")
	h := New(fastParams(), pepper)
	enc := mustHash(t, h, "pw")
	pepper[0] = 'X'
	if ok, _, err := h.Verify("pw", enc); err != nil || !ok {
		t.Fatalf("mutating caller's pepper slice affected the Hasher: ok=%v err=%v", ok, err)
	}
}

func TestBcryptGenerated(t *testing.T) {
	h := New(fastParams(), []byte("pepper is ignored for bcrypt"))
	for _, pw := range []string{"hunter2", "pässwörd日本", ""} {
		raw, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		enc := string(raw)
		// x/crypto writes $2a$; $2b$ and $2y$ are the same algorithm for
		// passwords under 255 bytes, differing only in the prefix.
		for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
			e := prefix + enc[4:]
			ok, rehash, err := h.Verify(pw, e)
			if err != nil || !ok || !rehash {
				t.Errorf("Verify(%q, %s) = (%v, %v, %v), want (true, true, nil)", pw, e, ok, rehash, err)
			}
			ok, rehash, err = h.Verify(pw+"x", e)
			if err != nil || ok || rehash {
				t.Errorf("Verify(wrong, %s) = (%v, %v, %v), want (false, false, nil)", e, ok, rehash, err)
			}
		}
	}
}

// Synapse-style $2b$12$ hashes. There is no Python bcrypt in the test
// environment, so these were generated once with
// bcrypt.GenerateFromPassword(pw, 12) and the $2a$ prefix rewritten to the
// $2b$ that Python's bcrypt (and so Synapse) emits; the algorithm is
// identical for these inputs.
const (
	// password "correct horse battery staple", no Synapse pepper.
	synapseHash = "$2b$12$/M3TYvrJurfRySqUuhD3RefhVV.PWkShF.Z8tsOvlDtPzau55vra2"
	// password "hunter2" with Synapse password_config.pepper
	// "synapse-pepper", which Synapse appends to the password.
	synapsePepperedHash = "$2b$12$L0U92W7j39F23/2YHvUsyeKdx5rMTc2EIH66/Xd0hLI3KOr90uJfi"
)

func TestBcryptSynapseLiteral(t *testing.T) {
	if testing.Short() {
		t.Skip("bcrypt cost 12 is slow")
	}
	t.Parallel()
	h := New(fastParams(), []byte("our pepper is not applied to bcrypt"))
	tests := []struct {
		name, password, hash string
		ok                   bool
	}{
		{"correct", "correct horse battery staple", synapseHash, true},
		// The Synapse pepper is the caller's business: the password is
		// verified as given, so the caller appends the Synapse pepper.
		{"synapse pepper appended", "hunter2" + "synapse-pepper", synapsePepperedHash, true},
		{"synapse pepper missing (wrong password)", "hunter2", synapsePepperedHash, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ok, rehash, err := h.Verify(tc.password, tc.hash)
			if err != nil || ok != tc.ok || rehash != tc.ok {
				t.Fatalf("Verify(%q, %s) = (%v, %v, %v), want (%v, %v, nil)", tc.password, tc.hash, ok, rehash, err, tc.ok, tc.ok)
			}
		})
	}
}

// The classic PHP documentation example, password "rasmuslerdorf".
func TestBcrypt2yReference(t *testing.T) {
	t.Parallel()
	const phpHash = "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a"
	ok, rehash, err := New(fastParams(), nil).Verify("rasmuslerdorf", phpHash)
	if err != nil || !ok || !rehash {
		t.Fatalf("Verify = (%v, %v, %v), want (true, true, nil)", ok, rehash, err)
	}
}

func TestMalformed(t *testing.T) {
	h := New(fastParams(), nil)
	good := mustHash(t, h, "pw")
	parts := strings.Split(good, "$") // "", argon2id, v=19, params, salt, hash
	join := func(p ...string) string { return strings.Join(p, "$") }
	bc, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	goodBcrypt := string(bc)

	tests := []struct {
		name    string
		encoded string
		want    error
	}{
		{"empty", "", ErrUnsupportedHash},
		{"plaintext", "pw", ErrUnsupportedHash},
		{"argon2i", strings.Replace(good, "argon2id", "argon2i", 1), ErrUnsupportedHash},
		{"argon2d", strings.Replace(good, "argon2id", "argon2d", 1), ErrUnsupportedHash},
		{"uppercase scheme", strings.Replace(good, "argon2id", "ARGON2ID", 1), ErrUnsupportedHash},
		{"sha512crypt", "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/", ErrUnsupportedHash},
		{"bcrypt 2x", "$2x$" + goodBcrypt[4:], ErrUnsupportedHash},
		{"prefix only", "$argon2id$", ErrMalformedHash},
		{"missing version", join("", "argon2id", parts[3], parts[4], parts[5]), ErrMalformedHash},
		{"version 16", join("", "argon2id", "v=16", parts[3], parts[4], parts[5]), ErrMalformedHash},
		{"version garbage", join("", "argon2id", "v=x", parts[3], parts[4], parts[5]), ErrMalformedHash},
		{"truncated after params", join("", "argon2id", parts[2], parts[3]), ErrMalformedHash},
		{"truncated after salt", join("", "argon2id", parts[2], parts[3], parts[4]), ErrMalformedHash},
		{"empty hash", join("", "argon2id", parts[2], parts[3], parts[4], ""), ErrMalformedHash},
		{"short hash", join("", "argon2id", parts[2], parts[3], parts[4], parts[5][:10]), ErrMalformedHash},
		{"truncated mid-hash", good[:len(good)-2], ErrMalformedHash}, // 41 base64 chars is never valid
		{"extra field", good + "$", ErrMalformedHash},
		{"bad base64 salt", join("", "argon2id", parts[2], parts[3], "!!!!"+parts[4][4:], parts[5]), ErrMalformedHash},
		{"bad base64 hash", join("", "argon2id", parts[2], parts[3], parts[4], parts[5][:40]+"*"+parts[5][41:]), ErrMalformedHash},
		{"padded base64", good + "=", ErrMalformedHash},
		{"url base64", join("", "argon2id", parts[2], parts[3], parts[4], strings.NewReplacer("+", "-", "/", "_").Replace(parts[5])+"-_"), ErrMalformedHash},
		{"salt too short", join("", "argon2id", parts[2], parts[3], "c2FsdA", parts[5]), ErrMalformedHash},
		{"params missing p", join("", "argon2id", parts[2], "m=64,t=1", parts[4], parts[5]), ErrMalformedHash},
		{"params reordered", join("", "argon2id", parts[2], "t=1,m=64,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params extra", join("", "argon2id", parts[2], "m=64,t=1,p=1,x=1", parts[4], parts[5]), ErrMalformedHash},
		{"params spaces", join("", "argon2id", parts[2], "m=64, t=1, p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params empty value", join("", "argon2id", parts[2], "m=,t=1,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params negative", join("", "argon2id", parts[2], "m=64,t=-1,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params t=0", join("", "argon2id", parts[2], "m=64,t=0,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params p=0", join("", "argon2id", parts[2], "m=64,t=1,p=0", parts[4], parts[5]), ErrMalformedHash},
		{"params p=256", join("", "argon2id", parts[2], "m=4096,t=1,p=256", parts[4], parts[5]), ErrMalformedHash},
		{"params m<8p", join("", "argon2id", parts[2], "m=15,t=1,p=2", parts[4], parts[5]), ErrMalformedHash},
		{"params m huge", join("", "argon2id", parts[2], "m=4294967295,t=1,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params m overflow", join("", "argon2id", parts[2], "m=4294967296,t=1,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"params t huge", join("", "argon2id", parts[2], "m=64,t=100000,p=1", parts[4], parts[5]), ErrMalformedHash},
		{"huge salt", join("", "argon2id", parts[2], parts[3], strings.Repeat("A", 1<<20), parts[5]), ErrMalformedHash},
		{"bcrypt truncated", goodBcrypt[:59], ErrMalformedHash},
		{"bcrypt too long", goodBcrypt + "a", ErrMalformedHash},
		{"bcrypt prefix only", "$2b$", ErrMalformedHash},
		{"bcrypt bad cost", "$2b$x4" + goodBcrypt[6:], ErrMalformedHash},
		{"bcrypt cost too low", "$2b$03" + goodBcrypt[6:], ErrMalformedHash},
		{"bcrypt cost too high", "$2b$31" + goodBcrypt[6:], ErrMalformedHash},
		{"bcrypt missing separator", "$2b$04x" + goodBcrypt[7:], ErrMalformedHash},
		{"bcrypt bad char", goodBcrypt[:30] + "!" + goodBcrypt[31:], ErrMalformedHash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, rehash, err := h.Verify("pw", tc.encoded)
			if ok || rehash {
				t.Errorf("Verify(%q) = (%v, %v, _), want (false, false, _)", tc.encoded, ok, rehash)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify(%q) error = %v, want %v", tc.encoded, err, tc.want)
			}
		})
	}

	// Sanity: the unmodified inputs the table was built from are fine.
	if ok, _, err := h.Verify("pw", good); !ok || err != nil {
		t.Fatalf("good argon2id hash: ok=%v err=%v", ok, err)
	}
	if ok, _, err := h.Verify("pw", goodBcrypt); !ok || err != nil {
		t.Fatalf("good bcrypt hash: ok=%v err=%v", ok, err)
	}
}

// FuzzVerify makes sure arbitrary input never panics.
func FuzzVerify(f *testing.F) {
	h := New(fastParams(), nil)
	f.Add(mustHash(f, h, "pw"))
	f.Add("$2b$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, s string) {
		// Keep the fuzzer away from legitimately expensive parameters.
		if p, err := ParseParams(s); err == nil && (p.MemoryKiB > 1024 || p.Iterations > 2) {
			t.Skip()
		}
		_, _, _ = h.Verify("pw", s)
	})
}

func TestParseParams(t *testing.T) {
	tests := []struct {
		encoded string
		want    Params
	}{
		{
			"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
			Params{MemoryKiB: 65536, Iterations: 2, Parallelism: 1, SaltLen: 8, KeyLen: 32},
		},
		{
			"$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			DefaultParams(),
		},
		{
			"$argon2id$v=19$m=2097152,t=7,p=255$" + strings.Repeat("A", 43) + "$" + strings.Repeat("A", 86),
			Params{MemoryKiB: 2097152, Iterations: 7, Parallelism: 255, SaltLen: 32, KeyLen: 64},
		},
	}
	for _, tc := range tests {
		got, err := ParseParams(tc.encoded)
		if err != nil {
			t.Errorf("ParseParams(%q): %v", tc.encoded, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseParams(%q) = %+v, want %+v", tc.encoded, got, tc.want)
		}
	}

	// Parsing our own output yields our parameters.
	p := Params{MemoryKiB: 96, Iterations: 3, Parallelism: 2, SaltLen: 24, KeyLen: 48}
	enc := mustHash(t, New(p, nil), "pw")
	if got, err := ParseParams(enc); err != nil || got != p {
		t.Fatalf("ParseParams(own hash) = %+v, %v; want %+v", got, err, p)
	}

	if _, err := ParseParams("$2b$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"); !errors.Is(err, ErrUnsupportedHash) {
		t.Fatalf("ParseParams(bcrypt) error = %v, want ErrUnsupportedHash", err)
	}
}

func TestParamsVerify(t *testing.T) {
	ok := fastParams()
	tests := []struct {
		name   string
		mutate func(*Params)
		valid  bool
		substr string
	}{
		{"fast", func(*Params) {}, true, ""},
		{"minimum memory", func(p *Params) { p.MemoryKiB = 8 }, true, ""},
		{"memory 8p", func(p *Params) { p.Parallelism = 4; p.MemoryKiB = 32 }, true, ""},
		{"memory below 8p", func(p *Params) { p.Parallelism = 4; p.MemoryKiB = 31 }, false, "memory"},
		{"memory zero", func(p *Params) { p.MemoryKiB = 0 }, false, "memory"},
		{"memory max", func(p *Params) { p.MemoryKiB = MaxMemoryKiB }, true, ""},
		{"memory above max", func(p *Params) { p.MemoryKiB = MaxMemoryKiB + 1 }, false, "memory"},
		{"iterations zero", func(p *Params) { p.Iterations = 0 }, false, "iterations"},
		{"iterations above max", func(p *Params) { p.Iterations = MaxIterations + 1 }, false, "iterations"},
		{"parallelism zero", func(p *Params) { p.Parallelism = 0 }, false, "parallelism"},
		{"parallelism 255", func(p *Params) { p.Parallelism = 255; p.MemoryKiB = 8 * 255 }, true, ""},
		{"salt short", func(p *Params) { p.SaltLen = 7 }, false, "salt"},
		{"salt long", func(p *Params) { p.SaltLen = MaxSaltLen + 1 }, false, "salt"},
		{"key short", func(p *Params) { p.KeyLen = 15 }, false, "key"},
		{"key long", func(p *Params) { p.KeyLen = MaxKeyLen + 1 }, false, "key"},
	}
	for _, tc := range tests {
		p := ok
		tc.mutate(&p)
		err := p.Verify()
		if tc.valid {
			if err != nil {
				t.Errorf("%s: Verify(%+v) = %v, want nil", tc.name, p, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidParams) || !strings.Contains(err.Error(), tc.substr) {
			t.Errorf("%s: Verify(%+v) = %v, want ErrInvalidParams mentioning %q", tc.name, p, err, tc.substr)
		}
	}
}

func TestHashRejectsInvalidParams(t *testing.T) {
	p := fastParams()
	p.Iterations = 0
	if _, err := New(p, nil).Hash("pw"); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("Hash with t=0: err = %v, want ErrInvalidParams", err)
	}
	// DummyVerify must still not panic with invalid params.
	New(p, nil).DummyVerify("pw")
}

func TestDummyVerify(t *testing.T) {
	h := New(fastParams(), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { h.DummyVerify("whatever") })
	}
	wg.Wait()
	if h.dummy == "" {
		t.Fatal("dummy hash was not computed")
	}
	p, err := ParseParams(h.dummy)
	if err != nil || p != h.Params() {
		t.Fatalf("dummy hash params = %+v, %v; want %+v", p, err, h.Params())
	}
}

func TestConcurrentUse(t *testing.T) {
	h := New(fastParams(), []byte("pepper"))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			pw := strings.Repeat("x", i)
			enc, err := h.Hash(pw)
			if err != nil {
				t.Error(err)
				return
			}
			if ok, _, err := h.Verify(pw, enc); !ok || err != nil {
				t.Errorf("Verify: ok=%v err=%v", ok, err)
			}
			h.DummyVerify(pw)
		})
	}
	wg.Wait()
}

func BenchmarkHashDefault(b *testing.B) {
	h := New(DefaultParams(), nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Hash("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyDefault(b *testing.B) {
	h := New(DefaultParams(), nil)
	enc := mustHash(b, h, "correct horse battery staple")
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := h.Verify("correct horse battery staple", enc); !ok || err != nil {
			b.Fatalf("ok=%v err=%v", ok, err)
		}
	}
}

// quietCalls installs a quiet hook that records when it ran and what
// HashLoad said then; it is removed when the test ends.
func quietCalls(t *testing.T) func() []quietCall {
	t.Helper()
	var mu sync.Mutex
	var calls []quietCall
	OnQuiet(func() {
		r, w := HashLoad()
		mu.Lock()
		calls = append(calls, quietCall{at: time.Now(), running: r, waiting: w})
		mu.Unlock()
	})
	t.Cleanup(func() { OnQuiet(nil) })
	return func() []quietCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]quietCall(nil), calls...)
	}
}

type quietCall struct {
	at               time.Time
	running, waiting int
}

func TestQuietHookRunsOnceWhenALoginBurstEndsAndNotWhileHashesRun(t *testing.T) {
	calls := quietCalls(t)
	h := New(Params{MemoryKiB: 4096, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}, nil)
	// A stream of hashes whose gaps are shorter than QuietAfter, each
	// step a burst of more hashes than there are slots.
	var end time.Time
	for step := 0; step < 6; step++ {
		var wg sync.WaitGroup
		for i := 0; i < 3*cap(hashSlots); i++ {
			wg.Add(1)
			go func() { defer wg.Done(); mustHash(t, h, "pw") }()
		}
		wg.Wait()
		end = time.Now()
		time.Sleep(QuietAfter / 3)
	}
	if got := calls(); len(got) != 0 {
		t.Fatalf("hook ran %d times while hashing went on, first at %v before the end", len(got), end.Sub(got[0].at))
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(calls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * QuietAfter) // a second call would come by now
	got := calls()
	if len(got) != 1 {
		t.Fatalf("hook ran %d times after the burst, want once", len(got))
	}
	if got[0].running != 0 || got[0].waiting != 0 {
		t.Fatalf("hook ran with %d hashes running and %d waiting", got[0].running, got[0].waiting)
	}
	if d := got[0].at.Sub(end); d < QuietAfter {
		t.Fatalf("hook ran %v after the last hash, want at least QuietAfter (%v) of quiet", d, QuietAfter)
	}
}

func TestQuietHookRunsAtMostOncePerSecond(t *testing.T) {
	calls := quietCalls(t)
	h := New(fastParams(), nil)
	start := time.Now()
	// Single hashes spaced wider than QuietAfter: each would arm the hook.
	for time.Since(start) < 1500*time.Millisecond {
		mustHash(t, h, "pw")
		time.Sleep(QuietAfter + QuietAfter/2)
	}
	time.Sleep(quietEvery + QuietAfter)
	got := calls()
	if len(got) < 2 || len(got) > 3 {
		t.Fatalf("hook ran %d times in %v of spaced hashes, want 2 or 3 (once per second)", len(got), time.Since(start))
	}
	for i := 1; i < len(got); i++ {
		if d := got[i].at.Sub(got[i-1].at); d < quietEvery-10*time.Millisecond {
			t.Fatalf("hook ran twice %v apart, want at least %v", d, quietEvery)
		}
	}
}
