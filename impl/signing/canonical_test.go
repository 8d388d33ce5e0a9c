package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// Canonical JSON examples from the specification appendix, byte for byte
// (https://spec.matrix.org/v1.9/appendices/#canonical-json), with the input
// formatting of the spec.
var specCanonicalExamples = []struct{ in, want string }{
	{`{}`, `{}`},
	{`{
    "one": 1,
    "two": "Two"
}`, `{"one":1,"two":"Two"}`},
	{`{
    "b": "2",
    "a": "1"
}`, `{"a":"1","b":"2"}`},
	{`{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`},
	{`{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}`, `{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
	{`{
    "a": "日本語"
}`, `{"a":"日本語"}`},
	{`{
    "本": 2,
    "日": 1
}`, `{"日":1,"本":2}`},
	{`{
    "a": "\u65E5"
}`, `{"a":"日"}`},
	{`{
    "a": null
}`, `{"a":null}`},
}

func TestCanonicalSpecExamples(t *testing.T) {
	for _, c := range specCanonicalExamples {
		got, err := Canonical([]byte(c.in))
		if err != nil {
			t.Errorf("Canonical(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

// The spec's last example is {"a": -0, "b": 1e10} -> {"a":0,"b":10000000000}:
// negative zero is normalised and a number written with an exponent or a
// fraction is accepted when it is an exact integer. Real fractions and
// values beyond 2**53-1 are still refused.
func TestCanonicalSpecNegativeZeroAndExponent(t *testing.T) {
	got, err := Canonical([]byte("{\n    \"a\": -0,\n    \"b\": 1e10\n}"))
	if err != nil || string(got) != `{"a":0,"b":10000000000}` {
		t.Fatalf("Canonical = %s, %v; want {\"a\":0,\"b\":10000000000}", got, err)
	}
	ok := map[string]string{"1.0": "1", "-2.50e1": "-25", "0.0e5": "0", "1E+2": "100", "120e-1": "12", "9007199254740991.0": "9007199254740991"}
	for in, want := range ok {
		got, err := Canonical([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"1.5", "1e-1", "12e-2"} {
		if _, err := Canonical([]byte(in)); !errors.Is(err, ErrNonInteger) {
			t.Errorf("Canonical(%s) error = %v, want ErrNonInteger", in, err)
		}
	}
	for _, in := range []string{"1e16", "9007199254740992.0", "1e99999"} {
		if _, err := Canonical([]byte(in)); !errors.Is(err, ErrIntegerRange) {
			t.Errorf("Canonical(%s) error = %v, want ErrIntegerRange", in, err)
		}
	}
}

func TestCanonicalStrings(t *testing.T) {
	// Every control character, via \u escapes, in the spec grammar's forms.
	var in, want strings.Builder
	in.WriteString(`"`)
	want.WriteString(`"`)
	for c := 0; c < 0x20; c++ {
		fmt.Fprintf(&in, `\u%04X`, c)
	}
	want.WriteString(`\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f` +
		`\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f`)
	in.WriteString(`"`)
	want.WriteString(`"`)

	cases := []struct{ in, want string }{
		{in.String(), want.String()},
		{`"\b\f\n\r\t"`, `"\b\f\n\r\t"`},
		{`"\"\\\/"`, `"\"\\/"`},
		{`"\u0022\u005c\u005C\u002F"`, `"\"\\\\/"`},
		{`"<script>&amp;</script>"`, `"<script>&amp;</script>"`},
		{`"\u003c\u003e\u0026"`, `"<>&"`},
		{`"\u007f"`, "\"\x7f\""},
		{"\"\x7f\"", "\"\x7f\""},
		{`"\u2028\u2029"`, "\"\u2028\u2029\""},
		{`"\u00e9\u00C9"`, `"éÉ"`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"\uD83D\uDE00"`, `"😀"`},
		{`"😀"`, `"😀"`},
		{`"\ufffd"`, "\"\ufffd\""},
		{"\"\uFFFD\"", "\"\uFFFD\""},
		{`"\u0000"`, `"\u0000"`},
		{`""`, `""`},
		{`"plain ascii 123 !#$%"`, `"plain ascii 123 !#$%"`},
		{`"mixed \t日本\u8a9e\n"`, `"mixed \t日本語\n"`},
	}
	for _, c := range cases {
		got, err := Canonical([]byte(c.in))
		if err != nil {
			t.Errorf("Canonical(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

func TestCanonicalKeyOrder(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"ab":1,"a":2,"":3}`, `{"":3,"a":2,"ab":1}`},
		{`{"b":1,"B":2,"a":3,"A":4,"_":5,"1":6}`, `{"1":6,"A":4,"B":2,"_":5,"a":3,"b":1}`},
		// Ordering is by the decoded key, not its escaped form: "\n" (0x0a)
		// sorts before "\"" (0x22) although "\\n" > "\\\"".
		{`{"\"":1,"\n":2}`, `{"\n":2,"\"":1}`},
		{`{"a":1,"\\":2,"Z":3,"]":4}`, `{"Z":3,"\\":2,"]":4,"a":1}`},
		{`{"\u0001":1,"\u0000":2," ":3}`, `{"\u0000":2,"\u0001":1," ":3}`},
		// Escaped and unescaped spellings of keys are sorted by value.
		{`{"\u0062":1,"\u0061":2}`, `{"a":2,"b":1}`},
		// Code point order, not UTF-16 order: U+FF61 < U+1F600.
		{`{"😀":1,"｡":2}`, `{"｡":2,"😀":1}`},
		{`{"é":1,"z":2,"日":3,"e":4}`, `{"e":4,"z":2,"é":1,"日":3}`},
		// Nested objects are sorted independently; arrays keep their order.
		{`{"z":{"y":[3,1,2],"x":{"b":0,"a":0}},"a":[{"d":1,"c":2}]}`,
			`{"a":[{"c":2,"d":1}],"z":{"x":{"a":0,"b":0},"y":[3,1,2]}}`},
	}
	for _, c := range cases {
		got, err := Canonical([]byte(c.in))
		if err != nil {
			t.Errorf("Canonical(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

func TestCanonicalLargeObjectSort(t *testing.T) {
	// More members than the insertion sort threshold.
	var in strings.Builder
	in.WriteString("{")
	for i := 99; i >= 0; i-- {
		k := fmt.Sprintf("k%d", (i*37)%100)
		if i != 99 {
			in.WriteString(", ")
		}
		fmt.Fprintf(&in, "%q: %d", k, i)
	}
	in.WriteString("}")
	got, err := Canonical([]byte(in.String()))
	if err != nil {
		t.Fatal(err)
	}
	if want := refCanonicalString(t, in.String()); string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var m map[string]int
	if err := json.Unmarshal(got, &m); err != nil || len(m) != 100 {
		t.Fatalf("output does not decode to 100 members: %v", err)
	}
}

func TestCanonicalValues(t *testing.T) {
	cases := []struct{ in, want string }{
		{` { "a" : [ 1 , -2 , true , false , null , "x" , { } , [ ] ] } `, `{"a":[1,-2,true,false,null,"x",{},[]]}`},
		{"\t\r\n[\n]\n", `[]`},
		{`"top"`, `"top"`},
		{`42`, `42`},
		{`-42`, `-42`},
		{`0`, `0`},
		{`-0`, `0`},
		{`true`, `true`},
		{`null`, `null`},
		{`9007199254740991`, `9007199254740991`},
		{`-9007199254740991`, `-9007199254740991`},
		{`[0,-0,10,-10]`, `[0,0,10,-10]`},
		{`{"a":{"b":{"c":{}}}}`, `{"a":{"b":{"c":{}}}}`},
	}
	for _, c := range cases {
		got, err := Canonical([]byte(c.in))
		if err != nil {
			t.Errorf("Canonical(%q): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestCanonicalErrors(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	okDeep := strings.Repeat(`{"a":`, MaxDepth-1) + "[]" + strings.Repeat("}", MaxDepth-1)
	if _, err := Canonical([]byte(okDeep)); err != nil {
		t.Errorf("nesting of MaxDepth rejected: %v", err)
	}
	cases := []struct {
		in   string
		want error
	}{
		{``, ErrInvalidJSON},
		{`   `, ErrInvalidJSON},
		{`{`, ErrInvalidJSON},
		{`}`, ErrInvalidJSON},
		{`{"a"}`, ErrInvalidJSON},
		{`{"a":}`, ErrInvalidJSON},
		{`{"a":1,}`, ErrInvalidJSON},
		{`{"a":1 "b":2}`, ErrInvalidJSON},
		{`{a:1}`, ErrInvalidJSON},
		{`{'a':1}`, ErrInvalidJSON},
		{`{1:1}`, ErrInvalidJSON},
		{`[1,]`, ErrInvalidJSON},
		{`[1 2]`, ErrInvalidJSON},
		{`[`, ErrInvalidJSON},
		{`{"a":1}x`, ErrInvalidJSON},
		{`{"a":1}{}`, ErrInvalidJSON},
		{`tru`, ErrInvalidJSON},
		{`nul`, ErrInvalidJSON},
		{`True`, ErrInvalidJSON},
		{`NaN`, ErrInvalidJSON},
		{`-`, ErrInvalidJSON},
		{`-a`, ErrInvalidJSON},
		{`+1`, ErrInvalidJSON},
		{`01`, ErrInvalidJSON},
		{`-01`, ErrInvalidJSON},
		{`1a`, ErrInvalidJSON},
		{`"abc`, ErrInvalidJSON},
		{`"abc\"`, ErrInvalidJSON},
		{`"\x"`, ErrInvalidJSON},
		{`"\u12"`, ErrInvalidJSON},
		{`"\u12G4"`, ErrInvalidJSON},
		{"\"a\nb\"", ErrInvalidJSON},
		{"\"a\tb\"", ErrInvalidJSON},
		{"\"\x00\"", ErrInvalidJSON},
		{"\xef\xbb\xbf{}", ErrInvalidJSON}, // BOM
		{"\"\x80\"", ErrInvalidUTF8},
		{"\"\xc3\"", ErrInvalidUTF8},
		{"\"\xc0\xaf\"", ErrInvalidUTF8},     // overlong '/'
		{"\"\xed\xa0\x80\"", ErrInvalidUTF8}, // UTF-8 encoded surrogate
		{"\"\xf4\x90\x80\x80\"", ErrInvalidUTF8},
		{"{\"\xff\":1}", ErrInvalidUTF8},
		{`"\ud800"`, ErrInvalidUTF8},
		{`"\udc00"`, ErrInvalidUTF8},
		{`"\ud800\u0041"`, ErrInvalidUTF8},
		{`"\ud800\ud800"`, ErrInvalidUTF8},
		{`"\ud800x"`, ErrInvalidUTF8},
		{`1.5`, ErrNonInteger},
		{`1e-5`, ErrNonInteger},
		{`{"a":0.1}`, ErrNonInteger},
		{`9007199254740992`, ErrIntegerRange},
		{`-9007199254740992`, ErrIntegerRange},
		{`18446744073709551616`, ErrIntegerRange},
		{`123456789012345678901234567890`, ErrIntegerRange},
		{`{"a":1,"a":2}`, ErrDuplicateKey},
		{`{"b":1,"a":1,"b":2}`, ErrDuplicateKey},
		{`{"a":1,"\u0061":2}`, ErrDuplicateKey},
		{`{"x":{"a":[],"a":{}}}`, ErrDuplicateKey},
		{deep, ErrTooDeep},
	}
	for _, c := range cases {
		got, err := Canonical([]byte(c.in))
		if err == nil {
			t.Errorf("Canonical(%q) = %s, want error %v", c.in, got, c.want)
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("Canonical(%q) error = %v, want %v", c.in, err, c.want)
		}
		var ce *CanonicalError
		if !errors.As(err, &ce) {
			t.Errorf("Canonical(%q) error %T is not *CanonicalError", c.in, err)
		}
		if json.Valid([]byte(c.in)) == (c.want == ErrInvalidJSON) && c.want != ErrInvalidUTF8 {
			t.Errorf("test case %q: json.Valid disagrees with expectation %v", c.in, c.want)
		}
	}
}

// The canonical output of canonical JSON is itself.
func TestCanonicalIdempotent(t *testing.T) {
	for _, c := range specCanonicalExamples {
		once, _ := Canonical([]byte(c.in))
		twice, err := Canonical(once)
		if err != nil || !bytes.Equal(once, twice) {
			t.Errorf("not idempotent: %s -> %s (%v)", once, twice, err)
		}
	}
}

func TestCanonicalMatchesReference(t *testing.T) {
	for _, in := range []string{deviceKeysJSON, signedEventJSON} {
		got, err := Canonical([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if want := refCanonicalString(t, in); string(got) != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

func TestCanonicalAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool is randomised under the race detector")
	}
	in := []byte(deviceKeysJSON)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Canonical(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("Canonical allocates %v times per call, want 1", allocs)
	}
}

// refCanonicalString is an independent, slow implementation of canonical
// JSON built on encoding/json, used to cross-check Canonical.
func refCanonicalString(t testing.TB, in string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(in))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	var b strings.Builder
	refEncode(t, &b, v)
	return b.String()
}

func refEncode(t testing.TB, b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		r, ok := new(big.Rat).SetString(string(v))
		if mant, _, _ := strings.Cut(strings.ToLower(string(v)), "e"); !ok && strings.Trim(mant, "-0.") == "" {
			r, ok = new(big.Rat), true // zero with an exponent too large for big.Rat
		}
		if !ok || !r.IsInt() {
			t.Fatalf("reference: non-integer %s", v)
		}
		b.WriteString(r.Num().String())
	case string:
		b.WriteByte('"')
		for _, r := range v {
			switch {
			case r == '"':
				b.WriteString(`\"`)
			case r == '\\':
				b.WriteString(`\\`)
			case r == '\b':
				b.WriteString(`\b`)
			case r == '\f':
				b.WriteString(`\f`)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteString(`\t`)
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			refEncode(t, b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys) // byte-wise == code point order for valid UTF-8
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			refEncode(t, b, k)
			b.WriteByte(':')
			refEncode(t, b, v[k])
		}
		b.WriteByte('}')
	default:
		t.Fatalf("reference: unexpected %T", v)
	}
}

func FuzzCanonical(f *testing.F) {
	for _, c := range specCanonicalExamples {
		f.Add([]byte(c.in))
	}
	for _, s := range []string{
		deviceKeysJSON, signedEventJSON,
		`{"\"":1,"\n":2,"\u0000":[-0,1,"\ud83d\ude00"]}`,
		`[1.5]`, `{"a":1,"a":2}`, `"\ud800"`, "\"\xff\"", `9007199254740992`,
		`{"😀":1,"｡":2,"\u00e9":3,"e\u0301":4}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonical(in)
		if err != nil {
			if errors.Is(err, ErrInvalidJSON) && json.Valid(in) {
				t.Fatalf("Canonical rejected valid JSON %q as invalid: %v", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("Canonical accepted invalid JSON %q", in)
		}
		if !json.Valid(out) {
			t.Fatalf("Canonical(%q) = %q is not valid JSON", in, out)
		}
		if !utf8.Valid(out) {
			t.Fatalf("Canonical(%q) = %q is not valid UTF-8", in, out)
		}
		if len(out) > len(in) && !bytes.ContainsAny(in, "eE") { // 1e10 grows
			t.Fatalf("Canonical(%q) = %q is longer than its input", in, out)
		}
		again, err := Canonical(out)
		if err != nil {
			t.Fatalf("Canonical(Canonical(%q)) failed: %v", in, err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
		if want := refCanonicalString(t, string(in)); string(out) != want {
			t.Fatalf("Canonical(%q) = %q, reference %q", in, out, want)
		}
	})
}
