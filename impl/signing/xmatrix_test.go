package signing

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

const (
	xOrigin = "origin.hs.example.com"
	xDest   = "destination.hs.example.com"
	xURI    = "/_matrix/federation/v1/send/1234?ver=1&x=%20y"
)

var headerRE = regexp.MustCompile(`^X-Matrix origin="origin\.hs\.example\.com",destination="destination\.hs\.example\.com",key="ed25519:1",sig="([A-Za-z0-9+/]{86})"$`)

// independentRequestSig checks sig against the request object built with
// encoding/json and Canonical, independently of SignRequest's own builder.
func independentRequestSig(t *testing.T, pub ed25519.PublicKey, sig []byte, method, uri, origin, dest string, content []byte) bool {
	t.Helper()
	obj := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": dest}
	if len(content) > 0 {
		obj["content"] = json.RawMessage(content)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := Canonical(b)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.Verify(pub, canon, sig)
}

func TestXMatrixRoundTrip(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	bodies := [][]byte{
		nil,
		{},
		[]byte(`{"pdus": [ {"b": 2, "a": "é<>"} ], "origin": "origin.hs.example.com"}`),
		[]byte(deviceKeysJSON),
	}
	for _, body := range bodies {
		h, err := SignRequest(xOrigin, xDest, specKeyID, priv, "PUT", xURI, body)
		if err != nil {
			t.Fatal(err)
		}
		m := headerRE.FindStringSubmatch(h)
		if m == nil {
			t.Fatalf("unexpected header format: %s", h)
		}
		a, err := ParseXMatrix(h)
		if err != nil {
			t.Fatal(err)
		}
		if a.Origin != xOrigin || a.Destination != xDest || a.KeyID != specKeyID || EncodeBase64(a.Sig) != m[1] {
			t.Fatalf("ParseXMatrix(%s) = %+v", h, a)
		}
		if !independentRequestSig(t, pub, a.Sig, "PUT", xURI, xOrigin, xDest, body) {
			t.Errorf("signature does not match independently built request JSON (body %q)", body)
		}
		if err := VerifyRequest(a, pub, xDest, "PUT", xURI, body); err != nil {
			t.Errorf("VerifyRequest: %v", err)
		}
		// Old servers omit destination.
		old := a
		old.Destination = ""
		if err := VerifyRequest(old, pub, xDest, "PUT", xURI, body); err != nil {
			t.Errorf("VerifyRequest without destination: %v", err)
		}
	}
}

func TestXMatrixVerifyFailures(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	body := []byte(`{"edus":[],"pdus":[]}`)
	h, err := SignRequest(xOrigin, xDest, specKeyID, priv, "PUT", xURI, body)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseXMatrix(h)
	if err != nil {
		t.Fatal(err)
	}
	// Reformatted body is fine: content is compared in canonical form.
	if err := VerifyRequest(a, pub, xDest, "PUT", xURI, []byte("{ \"pdus\" : [ ], \"edus\": [] }")); err != nil {
		t.Errorf("reformatted body: %v", err)
	}

	tampered := a
	tampered.Sig = append([]byte(nil), a.Sig...)
	tampered.Sig[0] ^= 0x80
	otherKey := KeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	spoofed := a
	spoofed.Origin = "evil.example.com"
	noDest := a
	noDest.Destination = ""

	cases := []struct {
		name       string
		a          XMatrixAuth
		pub        ed25519.PublicKey
		dest, meth string
		uri        string
		body       []byte
		want       error
	}{
		{"tampered sig", tampered, pub, xDest, "PUT", xURI, body, ErrBadSignature},
		{"wrong key", a, otherKey, xDest, "PUT", xURI, body, ErrBadSignature},
		{"wrong destination", a, pub, "someone.else", "PUT", xURI, body, ErrWrongDestination},
		{"wrong destination, header without one", noDest, pub, "someone.else", "PUT", xURI, body, ErrBadSignature},
		{"spoofed origin", spoofed, pub, xDest, "PUT", xURI, body, ErrBadSignature},
		{"method", a, pub, xDest, "POST", xURI, body, ErrBadSignature},
		{"uri", a, pub, xDest, "PUT", xURI + "&y=1", body, ErrBadSignature},
		{"body changed", a, pub, xDest, "PUT", xURI, []byte(`{"edus":[],"pdus":[1]}`), ErrBadSignature},
		{"body dropped", a, pub, xDest, "PUT", xURI, nil, ErrBadSignature},
		{"body not JSON", a, pub, xDest, "PUT", xURI, []byte(`not json`), ErrInvalidJSON},
		{"short sig", XMatrixAuth{Origin: xOrigin, KeyID: specKeyID, Sig: a.Sig[:10]}, pub, xDest, "PUT", xURI, body, ErrMalformedSignature},
		{"short key", a, pub[:8], xDest, "PUT", xURI, body, ErrInvalidKey},
	}
	for _, c := range cases {
		err := VerifyRequest(c.a, c.pub, c.dest, c.meth, c.uri, c.body)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: VerifyRequest error = %v, want %v", c.name, err, c.want)
		}
	}

	// Tampering with the sig in the header text itself.
	sig := strings.TrimSuffix(strings.SplitN(h, `sig="`, 2)[1], `"`)
	badSig := "A" + sig[1:]
	if badSig == sig {
		badSig = "B" + sig[1:]
	}
	ta, err := ParseXMatrix(strings.Replace(h, sig, badSig, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyRequest(ta, pub, xDest, "PUT", xURI, body); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered header sig: error = %v", err)
	}
}

func TestParseXMatrixTolerant(t *testing.T) {
	sig := EncodeBase64(make([]byte, 64))
	cases := []struct {
		header string
		want   XMatrixAuth
	}{
		{`X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="` + sig + `"`,
			XMatrixAuth{"a.example", "b.example", "ed25519:1", nil}},
		{`x-matrix origin=a.example,key=ed25519:1,sig=` + sig,
			XMatrixAuth{"a.example", "", "ed25519:1", nil}},
		{`  X-MATRIX   Origin="a.example" , Key = "ed25519:1",  SIG="` + sig + `==", destination=b.example  `,
			XMatrixAuth{"a.example", "b.example", "ed25519:1", nil}},
		{`X-Matrix sig="` + sig + `",key="ed25519:1",origin="a.example",unknown="x,y=z",flag=1`,
			XMatrixAuth{"a.example", "", "ed25519:1", nil}},
		{"X-Matrix\torigin=\"a\\\"b\\\\c\",key=\"ed25519:1\",sig=\"" + sig + "\"",
			XMatrixAuth{`a"b\c`, "", "ed25519:1", nil}},
		{`X-Matrix origin="a.example",,key="ed25519:1",sig="` + strings.NewReplacer("+", "-", "/", "_").Replace(sig) + `",`,
			XMatrixAuth{"a.example", "", "ed25519:1", nil}},
	}
	for _, c := range cases {
		a, err := ParseXMatrix(c.header)
		if err != nil {
			t.Errorf("ParseXMatrix(%s): %v", c.header, err)
			continue
		}
		if a.Origin != c.want.Origin || a.Destination != c.want.Destination || a.KeyID != c.want.KeyID || len(a.Sig) != 64 {
			t.Errorf("ParseXMatrix(%s) = %+v, want %+v", c.header, a, c.want)
		}
	}
}

func TestParseXMatrixErrors(t *testing.T) {
	sig := EncodeBase64(make([]byte, 64))
	for _, h := range []string{
		``,
		`X-Matrix`,
		`Bearer abc`,
		`X-Matrixorigin="a",key="k",sig="` + sig + `"`,
		`X-Matrix key="k",sig="` + sig + `"`,
		`X-Matrix origin="a",sig="` + sig + `"`,
		`X-Matrix origin="a",key="k"`,
		`X-Matrix origin="",key="k",sig="` + sig + `"`,
		`X-Matrix origin="a",destination="",key="k",sig="` + sig + `"`,
		`X-Matrix origin="a",key="k",sig="!!!"`,
		`X-Matrix origin="a,key="k",sig="` + sig,
		`X-Matrix origin="a",origin="b",key="k",sig="` + sig + `"`,
		`X-Matrix origin,key="k",sig="` + sig + `"`,
		`X-Matrix origin="a" key="k",sig="` + sig + `"`,
	} {
		if a, err := ParseXMatrix(h); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("ParseXMatrix(%q) = %+v, %v; want ErrMalformedHeader", h, a, err)
		}
	}
}

func TestSignRequestErrors(t *testing.T) {
	priv := specKey(t)
	cases := []struct {
		name         string
		origin, dest string
		key          KeyID
		priv         ed25519.PrivateKey
		body         []byte
		want         error
	}{
		{"bad key", xOrigin, xDest, specKeyID, priv[:10], nil, ErrInvalidKey},
		{"empty origin", "", xDest, specKeyID, priv, nil, ErrMalformedHeader},
		{"empty destination", xOrigin, "", specKeyID, priv, nil, ErrMalformedHeader},
		{"header injection", xOrigin + "\r\nX-Evil: 1", xDest, specKeyID, priv, nil, ErrMalformedHeader},
		{"float body", xOrigin, xDest, specKeyID, priv, []byte(`{"a":1.5}`), ErrNonInteger},
		{"invalid body", xOrigin, xDest, specKeyID, priv, []byte(`{`), ErrInvalidJSON},
	}
	for _, c := range cases {
		_, err := SignRequest(c.origin, c.dest, c.key, c.priv, "GET", "/x", c.body)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: SignRequest error = %v, want %v", c.name, err, c.want)
		}
	}
	// Values with quotes are escaped and survive a parse.
	h, err := SignRequest(`we"ird\`, xDest, specKeyID, priv, "GET", "/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseXMatrix(h)
	if err != nil || a.Origin != `we"ird\` {
		t.Fatalf("ParseXMatrix(%s) = %+v, %v", h, a, err)
	}
	if err := VerifyRequest(a, priv.Public().(ed25519.PublicKey), xDest, "GET", "/x", nil); err != nil {
		t.Error(err)
	}
}

// FuzzParseXMatrix feeds arbitrary Authorization headers (every remote
// server can send one): the parser must never panic, and what it accepts
// must have the required parameters.
func FuzzParseXMatrix(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	h, err := SignRequest("origin.example", "dest.example", "ed25519:k1", priv, "GET", "/_matrix/federation/v1/version", nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{h, `X-Matrix origin=a,key="ed25519:1",sig="AAAA"`, `x-matrix  ORIGIN = "a\"b" , key=k , sig=AA== ,x=y`, `X-Matrix origin="`, "X-Matrix ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		a, err := ParseXMatrix(header)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("ParseXMatrix(%q): error %v does not wrap ErrMalformedHeader", header, err)
			}
			return
		}
		if a.Origin == "" || a.KeyID == "" || len(a.Sig) == 0 {
			t.Fatalf("ParseXMatrix(%q) accepted %+v", header, a)
		}
	})
}
