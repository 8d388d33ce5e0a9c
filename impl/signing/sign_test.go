package signing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Test key from the specification appendix ("JSON signing" test vectors).
const (
	specSeed       = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	specKeyID      = KeyID("ed25519:1")
	specServerName = "domain"
)

func specKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	seed, err := DecodeBase64(specSeed)
	if err != nil {
		t.Fatal(err)
	}
	return KeyFromSeed(seed)
}

var specSigningExamples = []struct{ in, want string }{
	{`{}`, `{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}`},
	{`{
    "one": 1,
    "two": "Two"
}`, `{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}`},
}

func TestSpecSigningVectors(t *testing.T) {
	priv := specKey(t)
	if got, want := EncodeBase64(priv.Public().(ed25519.PublicKey)), "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"; got != want {
		t.Errorf("public key = %s, want %s", got, want)
	}
	for _, c := range specSigningExamples {
		got, err := SignJSON(specServerName, specKeyID, priv, []byte(c.in))
		if err != nil {
			t.Fatalf("SignJSON(%s): %v", c.in, err)
		}
		if string(got) != c.want {
			t.Errorf("SignJSON(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
		pub := priv.Public().(ed25519.PublicKey)
		if err := VerifyJSON(specServerName, specKeyID, pub, []byte(c.want)); err != nil {
			t.Errorf("VerifyJSON(%s): %v", c.want, err)
		}
	}
}

func TestBase64(t *testing.T) {
	// Examples from the specification appendix "Unpadded Base64".
	for _, c := range []struct{ in, want string }{
		{"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"},
		{"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
	} {
		if got := EncodeBase64([]byte(c.in)); got != c.want {
			t.Errorf("EncodeBase64(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, enc := range []string{c.want, c.want + strings.Repeat("=", (4-len(c.want)%4)%4)} {
			got, err := DecodeBase64(enc)
			if err != nil || string(got) != c.in {
				t.Errorf("DecodeBase64(%q) = %q, %v; want %q", enc, got, err, c.in)
			}
		}
	}
	raw := []byte{0xfb, 0xff, 0xbf, 0xfe}
	for _, enc := range []string{"+/+//g", "+/+//g==", "-_-__g", "-_-__g==", "+_-/_g"} {
		got, err := DecodeBase64(enc)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("DecodeBase64(%q) = %x, %v; want %x", enc, got, err, raw)
		}
	}
	for _, bad := range []string{"!!!!", "Zm9v Yg", "Z", "Zm9vY===", "Zm=9v"} {
		if got, err := DecodeBase64(bad); err == nil {
			t.Errorf("DecodeBase64(%q) = %x, want error", bad, got)
		}
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	for _, in := range []string{deviceKeysJSON, signedEventJSON, `{"a":[1,2,{"b":"c"}]}`} {
		signed, err := SignJSON("example.org", "ed25519:key1", priv, []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if canon, _ := Canonical(signed); !bytes.Equal(canon, signed) {
			t.Errorf("SignJSON output is not canonical: %s", signed)
		}
		if err := VerifyJSON("example.org", "ed25519:key1", pub, signed); err != nil {
			t.Errorf("VerifyJSON: %v\n%s", err, signed)
		}
		// Reformatting the signed JSON does not affect verification.
		var v any
		if err := json.Unmarshal(signed, &v); err != nil {
			t.Fatal(err)
		}
		pretty, _ := json.MarshalIndent(v, "", "   ")
		if err := VerifyJSON("example.org", "ed25519:key1", pub, pretty); err != nil {
			t.Errorf("VerifyJSON(reformatted): %v", err)
		}
	}
}

func decodeObject(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func TestSignPreservesUnsignedAndSignatures(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	other := KeyFromSeed(bytes.Repeat([]byte{7}, 32))
	otherPub := other.Public().(ed25519.PublicKey)

	in := []byte(`{"z":1,"unsigned":{"age": 5, "b":[ ]},"a":"x"}`)
	first, err := SignJSON("other.example", "ed25519:o", other, in)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := SignJSON("example.org", "ed25519:1", priv, first)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeObject(t, signed)
	if string(m["unsigned"]) != `{"age":5,"b":[]}` {
		t.Errorf("unsigned = %s", m["unsigned"])
	}
	if err := VerifyJSON("example.org", "ed25519:1", pub, signed); err != nil {
		t.Error(err)
	}
	if err := VerifyJSON("other.example", "ed25519:o", otherPub, signed); err != nil {
		t.Errorf("existing signature lost: %v", err)
	}

	// Both signatures are over the same payload, so the result equals
	// signing in the opposite order.
	alt1, _ := SignJSON("example.org", "ed25519:1", priv, in)
	alt2, _ := SignJSON("other.example", "ed25519:o", other, alt1)
	if !bytes.Equal(signed, alt2) {
		t.Errorf("signing order matters:\n%s\n%s", signed, alt2)
	}

	// A second key of the same server is merged; re-signing with the same
	// key replaces the signature with an identical one.
	second := KeyFromSeed(bytes.Repeat([]byte{9}, 32))
	both, err := SignJSON("example.org", "ed25519:2", second, signed)
	if err != nil {
		t.Fatal(err)
	}
	var sigs map[string]map[string]string
	if err := json.Unmarshal(decodeObject(t, both)["signatures"], &sigs); err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 2 || len(sigs["example.org"]) != 2 || len(sigs["other.example"]) != 1 {
		t.Errorf("signatures = %v", sigs)
	}
	for _, id := range []KeyID{"ed25519:1", "ed25519:2"} {
		k := pub
		if id == "ed25519:2" {
			k = second.Public().(ed25519.PublicKey)
		}
		if err := VerifyJSON("example.org", id, k, both); err != nil {
			t.Errorf("VerifyJSON(%s): %v", id, err)
		}
	}
	again, _ := SignJSON("example.org", "ed25519:2", second, both)
	if !bytes.Equal(again, both) {
		t.Errorf("re-signing changed output:\n%s\n%s", both, again)
	}

	// Unsigned data and extra signatures may change without invalidating.
	var obj map[string]any
	_ = json.Unmarshal(signed, &obj)
	obj["unsigned"] = map[string]any{"age": 99999, "new": true}
	obj["signatures"].(map[string]any)["third.example"] = map[string]any{"ed25519:x": "AAAA"}
	changed, _ := json.Marshal(obj)
	if err := VerifyJSON("example.org", "ed25519:1", pub, changed); err != nil {
		t.Errorf("changing unsigned/signatures broke verification: %v", err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	signed, err := SignJSON("example.org", "ed25519:1", priv, []byte(signedEventJSON))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(signed, &obj); err != nil {
		t.Fatal(err)
	}
	tamper := func(f func(map[string]any)) []byte {
		var c map[string]any
		_ = json.Unmarshal(signed, &c)
		f(c)
		b, _ := json.Marshal(c)
		return b
	}
	cases := []struct {
		name string
		in   []byte
	}{
		{"changed value", tamper(func(m map[string]any) { m["depth"] = 13 })},
		{"changed nested", tamper(func(m map[string]any) { m["content"].(map[string]any)["body"] = "Hello" })},
		{"added member", tamper(func(m map[string]any) { m["extra"] = nil })},
		{"removed member", tamper(func(m map[string]any) { delete(m, "prev_events") })},
		{"renamed key", []byte(strings.Replace(string(signed), `"sender"`, `"Sender"`, 1))},
	}
	for _, c := range cases {
		if err := VerifyJSON("example.org", "ed25519:1", pub, c.in); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: VerifyJSON error = %v, want ErrBadSignature", c.name, err)
		}
	}
	wrongKey := KeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	if err := VerifyJSON("example.org", "ed25519:1", wrongKey, signed); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: error = %v, want ErrBadSignature", err)
	}
	// Flip one bit of the signature.
	sig := strings.Split(strings.Split(string(signed), `"ed25519:1":"`)[1], `"`)[0]
	raw, _ := DecodeBase64(sig)
	raw[10] ^= 1
	bad := strings.Replace(string(signed), sig, EncodeBase64(raw), 1)
	if err := VerifyJSON("example.org", "ed25519:1", pub, []byte(bad)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("flipped bit: error = %v, want ErrBadSignature", err)
	}
	// URL-safe / padded signatures are accepted.
	urlSafe := strings.NewReplacer("+", "-", "/", "_").Replace(sig) + "=="
	if err := VerifyJSON("example.org", "ed25519:1", pub, []byte(strings.Replace(string(signed), sig, urlSafe, 1))); err != nil {
		t.Errorf("url-safe padded signature: %v", err)
	}
}

func TestVerifyErrors(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"no signatures", `{"a":1}`, ErrMissingSignature},
		{"other server only", `{"signatures":{"other":{"ed25519:1":"AAAA"}}}`, ErrMissingSignature},
		{"other key only", `{"signatures":{"domain":{"ed25519:2":"AAAA"}}}`, ErrMissingSignature},
		{"signatures not object", `{"signatures":[]}`, ErrMalformedSignature},
		{"server entry not object", `{"signatures":{"domain":"x"}}`, ErrMalformedSignature},
		{"signature not string", `{"signatures":{"domain":{"ed25519:1":1}}}`, ErrMalformedSignature},
		{"signature not base64", `{"signatures":{"domain":{"ed25519:1":"!!!"}}}`, ErrMalformedSignature},
		{"signature too short", `{"signatures":{"domain":{"ed25519:1":"AAAA"}}}`, ErrMalformedSignature},
		{"not an object", `["signatures"]`, ErrNotObject},
		{"string", `"x"`, ErrNotObject},
		{"invalid JSON", `{"signatures":`, ErrInvalidJSON},
		{"float", `{"a":1.5,"signatures":{}}`, ErrNonInteger},
	}
	for _, c := range cases {
		err := VerifyJSON("domain", "ed25519:1", pub, []byte(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: VerifyJSON error = %v, want %v", c.name, err, c.want)
		}
	}
	if err := VerifyJSON("domain", "ed25519:1", pub[:31], []byte(specSigningExamples[0].want)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short public key: error = %v", err)
	}
}

func TestSignErrors(t *testing.T) {
	priv := specKey(t)
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"array", `[]`, ErrNotObject},
		{"null", `null`, ErrNotObject},
		{"invalid", `{"a":`, ErrInvalidJSON},
		{"float", `{"a":0.5}`, ErrNonInteger},
		{"signatures not object", `{"signatures":"x"}`, ErrMalformedSignature},
		{"server entry not object", `{"signatures":{"domain":[]}}`, ErrMalformedSignature},
	}
	for _, c := range cases {
		_, err := SignJSON("domain", "ed25519:1", priv, []byte(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: SignJSON error = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := SignJSON("domain", "ed25519:1", priv[:32], []byte(`{}`)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short private key: error = %v", err)
	}
	if _, err := SignJSON("bad\xff", "ed25519:1", priv, []byte(`{}`)); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("invalid UTF-8 server name: error = %v", err)
	}
}

// Server names and key IDs that need escaping still sort and verify.
func TestSignEscapedNames(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	in := []byte(`{"signatures":{"a":{"k":"x"},"z":{"k":"y"}}}`)
	signed, err := SignJSON("\"q\\", "ed25519:\n", priv, in)
	if err != nil {
		t.Fatal(err)
	}
	if canon, _ := Canonical(signed); !bytes.Equal(canon, signed) {
		t.Errorf("not canonical: %s", signed)
	}
	if !strings.HasPrefix(string(signed), `{"signatures":{"\"q\\":{"ed25519:\n":"`) {
		t.Errorf("unexpected layout: %s", signed)
	}
	if err := VerifyJSON("\"q\\", "ed25519:\n", pub, signed); err != nil {
		t.Error(err)
	}
}
