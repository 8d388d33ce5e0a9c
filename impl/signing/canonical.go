// Package signing implements Matrix canonical JSON, JSON object signing and
// verification, and X-Matrix federation request authentication, as described
// in the Matrix specification appendix "Signing JSON"
// (https://spec.matrix.org/v1.9/appendices/#signing-json) and the
// server-server "Request Authentication" section.
//
// Only the standard library is used; signatures are ed25519.
package signing

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Errors reported by [Canonical]. They are wrapped in a *[CanonicalError] that
// carries the input offset; test for them with errors.Is.
var (
	// ErrInvalidJSON reports input that is not well-formed JSON.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrInvalidUTF8 reports a string that is not valid UTF-8, or a \u
	// escape that encodes an unpaired UTF-16 surrogate.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrNonInteger reports a number with a fraction or an exponent.
	// Canonical JSON permits integers only.
	ErrNonInteger = errors.New("non-integer number (fraction or exponent) not permitted")
	// ErrIntegerRange reports an integer outside [-(2**53)+1, (2**53)-1].
	ErrIntegerRange = errors.New("integer out of range [-(2**53)+1, (2**53)-1]")
	// ErrDuplicateKey reports an object that contains the same key twice
	// (after unescaping). Such input has no unambiguous canonical form.
	ErrDuplicateKey = errors.New("duplicate object key")
	// ErrTooDeep reports input nested deeper than MaxDepth.
	ErrTooDeep = errors.New("JSON nested too deeply")
)

// MaxDepth is the maximum nesting depth of arrays and objects that
// [Canonical] accepts.
const MaxDepth = 1024

// maxSafeInt is (2**53)-1, the largest integer canonical JSON allows.
const maxSafeInt = 1<<53 - 1

// CanonicalError is the error type returned by [Canonical] for bad input.
type CanonicalError struct {
	Offset int    // byte offset into the input where the problem was found
	Err    error  // one of the Err* sentinels above
	Detail string // optional human readable detail
}

func (e *CanonicalError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("signing: canonical JSON: %v: %s at offset %d", e.Err, e.Detail, e.Offset)
	}
	return fmt.Sprintf("signing: canonical JSON: %v at offset %d", e.Err, e.Offset)
}

func (e *CanonicalError) Unwrap() error { return e.Err }

// Canonical re-encodes the JSON value in as Matrix canonical JSON: object
// keys sorted by Unicode code point (byte-wise on UTF-8), no insignificant
// whitespace, non-ASCII characters as raw UTF-8, only '"', '\\' and control
// characters below U+0020 escaped (as \b \f \n \r \t or \u00xx), and numbers
// restricted to integers in [-(2**53)+1, (2**53)-1] written without
// exponent, fraction or sign of negative zero.
//
// Any JSON value is accepted at the top level. Input that is not valid JSON,
// contains invalid UTF-8 or unpaired surrogate escapes, non-integer numbers,
// out-of-range integers or duplicate object keys is rejected with a
// *[CanonicalError].
//
// Note: the specification's example {"a": -0, "b": 1e10} is handled only in
// part: -0 is normalised to 0, but 1e10 is rejected, because exponent
// notation denotes a float and floats are not permitted (this matches
// Synapse's strict canonical JSON checks and Ruma).
func Canonical(in []byte) ([]byte, error) {
	// Canonical output is never longer than the input: whitespace is
	// dropped, escapes only ever get shorter or stay the same, and integers
	// lose at most a sign. So one allocation of len(in) always suffices.
	return appendCanonical(make([]byte, 0, len(in)), in)
}

// appendCanonical appends the canonical encoding of in to dst.
func appendCanonical(dst, in []byte) ([]byte, error) {
	s := statePool.Get().(*state)
	s.in = in
	s.pos = 0
	s.depth = 0
	s.out = dst
	err := s.document()
	out := s.out
	s.release()
	if err != nil {
		return nil, err
	}
	return out, nil
}

// member records where one object member was written in state.out.
type member struct {
	start  int  // offset of the key's opening quote
	keyEnd int  // offset just after the key's closing quote
	end    int  // offset just after the member's value
	esc    bool // the canonical key contains a backslash escape
}

type state struct {
	in      []byte
	pos     int
	out     []byte
	depth   int
	members []member // stack of members of all open objects
	tmp     []byte   // scratch space for reordering object members
}

var statePool = sync.Pool{New: func() any { return new(state) }}

func (s *state) release() {
	s.in = nil
	s.out = nil
	s.members = s.members[:0]
	if cap(s.tmp) > 64<<10 {
		s.tmp = nil
	}
	if cap(s.members) > 4096 {
		s.members = nil
	}
	statePool.Put(s)
}

func (s *state) fail(err error, detail string) error {
	return &CanonicalError{Offset: s.pos, Err: err, Detail: detail}
}

func (s *state) unexpected() error {
	if s.pos >= len(s.in) {
		return s.fail(ErrInvalidJSON, "unexpected end of input")
	}
	return s.fail(ErrInvalidJSON, fmt.Sprintf("unexpected character %q", s.in[s.pos]))
}

func (s *state) skipWS() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *state) document() error {
	if err := s.value(); err != nil {
		return err
	}
	s.skipWS()
	if s.pos != len(s.in) {
		return s.fail(ErrInvalidJSON, "trailing data after JSON value")
	}
	return nil
}

func (s *state) value() error {
	s.skipWS()
	if s.pos >= len(s.in) {
		return s.unexpected()
	}
	switch c := s.in[s.pos]; c {
	case '{':
		return s.object()
	case '[':
		return s.array()
	case '"':
		_, err := s.str()
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return s.number()
		}
		return s.unexpected()
	}
}

func (s *state) literal(lit string) error {
	if len(s.in)-s.pos < len(lit) || string(s.in[s.pos:s.pos+len(lit)]) != lit {
		return s.fail(ErrInvalidJSON, "invalid literal")
	}
	s.pos += len(lit)
	s.out = append(s.out, lit...)
	return nil
}

func (s *state) number() error {
	in := s.in
	start := s.pos
	i := start
	neg := false
	if in[i] == '-' {
		neg = true
		i++
	}
	digitsStart := i
	switch {
	case i >= len(in):
		s.pos = i
		return s.unexpected()
	case in[i] == '0':
		i++
	case in[i] >= '1' && in[i] <= '9':
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return s.fail(ErrInvalidJSON, "invalid number")
	}
	digits := in[digitsStart:i]
	if i < len(in) && (in[i] == '.' || in[i] == 'e' || in[i] == 'E') {
		// The appendix's own example turns 1e10 into 10000000000: a
		// fraction or exponent is accepted when the value is an exact
		// integer, and written out in plain digits.
		var err error
		digits, i, err = s.exactInteger(digits, i)
		if err != nil {
			return err
		}
	}
	// (2**53)-1 has 16 decimal digits.
	if len(digits) > 16 {
		return s.fail(ErrIntegerRange, "")
	}
	var v uint64
	for _, d := range digits {
		v = v*10 + uint64(d-'0')
	}
	if v > maxSafeInt {
		return s.fail(ErrIntegerRange, "")
	}
	s.pos = i
	if v == 0 {
		// Covers -0, which must not appear in canonical JSON.
		s.out = append(s.out, '0')
		return nil
	}
	if neg {
		s.out = append(s.out, '-')
	}
	s.out = append(s.out, digits...)
	return nil
}

// exactInteger parses the fraction and exponent after the integer digits
// at in[i:] and returns the plain decimal digits of the value, or
// ErrNonInteger when it is not a whole number.
func (s *state) exactInteger(intDigits []byte, i int) ([]byte, int, error) {
	in := s.in
	var frac []byte
	if i < len(in) && in[i] == '.' {
		i++
		start := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == start {
			s.pos = i
			return nil, 0, s.fail(ErrInvalidJSON, "invalid number")
		}
		frac = in[start:i]
	}
	exp := 0
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		eneg := false
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			eneg = in[i] == '-'
			i++
		}
		start := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			if exp < 10000 {
				exp = exp*10 + int(in[i]-'0')
			}
			i++
		}
		if i == start {
			s.pos = i
			return nil, 0, s.fail(ErrInvalidJSON, "invalid number")
		}
		if eneg {
			exp = -exp
		}
	}
	mant := make([]byte, 0, len(intDigits)+len(frac))
	mant = append(mant, intDigits...)
	mant = append(mant, frac...)
	for len(mant) > 0 && mant[0] == '0' {
		mant = mant[1:]
	}
	if len(mant) == 0 {
		return []byte{'0'}, i, nil
	}
	e := exp - len(frac)
	if e < 0 {
		cut := -e
		if cut > len(mant) {
			return nil, 0, s.fail(ErrNonInteger, "")
		}
		for _, d := range mant[len(mant)-cut:] {
			if d != '0' {
				return nil, 0, s.fail(ErrNonInteger, "")
			}
		}
		mant = mant[:len(mant)-cut]
	} else if e > 0 {
		if len(mant)+e > 16 {
			return nil, 0, s.fail(ErrIntegerRange, "")
		}
		for range e {
			mant = append(mant, '0')
		}
	}
	return mant, i, nil
}

func (s *state) array() error {
	s.depth++
	if s.depth > MaxDepth {
		return s.fail(ErrTooDeep, "")
	}
	s.pos++ // '['
	s.out = append(s.out, '[')
	s.skipWS()
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		s.out = append(s.out, ']')
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.skipWS()
		if s.pos >= len(s.in) {
			return s.unexpected()
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
			s.out = append(s.out, ',')
			continue
		case ']':
			s.pos++
			s.out = append(s.out, ']')
			s.depth--
			return nil
		default:
			return s.unexpected()
		}
	}
}

func (s *state) object() error {
	s.depth++
	if s.depth > MaxDepth {
		return s.fail(ErrTooDeep, "")
	}
	s.pos++ // '{'
	s.out = append(s.out, '{')
	objStart := len(s.out)
	base := len(s.members)
	s.skipWS()
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		s.out = append(s.out, '}')
		s.depth--
		return nil
	}
	for {
		s.skipWS()
		if s.pos >= len(s.in) || s.in[s.pos] != '"' {
			if s.pos < len(s.in) {
				return s.fail(ErrInvalidJSON, "expected string object key")
			}
			return s.unexpected()
		}
		start := len(s.out)
		esc, err := s.str()
		if err != nil {
			return err
		}
		keyEnd := len(s.out)
		s.skipWS()
		if s.pos >= len(s.in) || s.in[s.pos] != ':' {
			return s.unexpected()
		}
		s.pos++
		s.out = append(s.out, ':')
		if err := s.value(); err != nil {
			return err
		}
		s.members = append(s.members, member{start: start, keyEnd: keyEnd, end: len(s.out), esc: esc})
		s.skipWS()
		if s.pos >= len(s.in) {
			return s.unexpected()
		}
		c := s.in[s.pos]
		if c == ',' {
			s.pos++
			s.out = append(s.out, ',')
			continue
		}
		if c != '}' {
			return s.unexpected()
		}
		break
	}
	// s.pos is at the closing '}'.
	if err := s.sortMembers(base, objStart); err != nil {
		return err
	}
	s.members = s.members[:base]
	s.pos++
	s.out = append(s.out, '}')
	s.depth--
	return nil
}

// key returns the canonical encoding of m's key without quotes.
func (s *state) key(m member) []byte { return s.out[m.start+1 : m.keyEnd-1] }

func (s *state) cmp(a, b member) int {
	if !a.esc && !b.esc {
		return bytes.Compare(s.key(a), s.key(b))
	}
	return compareCanonicalKeys(s.key(a), s.key(b))
}

// sortMembers puts the members of the object whose members start at
// s.members[base] and whose body starts at s.out[objStart] into canonical
// order, rejecting duplicate keys.
func (s *state) sortMembers(base, objStart int) error {
	ms := s.members[base:]
	n := len(ms)
	if n < 2 {
		return nil
	}
	sorted := true
	for i := 1; i < n; i++ {
		c := s.cmp(ms[i-1], ms[i])
		if c == 0 {
			return s.fail(ErrDuplicateKey, fmt.Sprintf("key %s", s.out[ms[i].start:ms[i].keyEnd]))
		}
		if c > 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return nil
	}
	if n <= 16 {
		// Insertion sort: objects are usually small, and this avoids any
		// allocation for the comparison closure.
		for i := 1; i < n; i++ {
			for j := i; j > 0 && s.cmp(ms[j-1], ms[j]) > 0; j-- {
				ms[j-1], ms[j] = ms[j], ms[j-1]
			}
		}
	} else {
		slices.SortFunc(ms, s.cmp)
	}
	for i := 1; i < n; i++ {
		if s.cmp(ms[i-1], ms[i]) == 0 {
			return s.fail(ErrDuplicateKey, fmt.Sprintf("key %s", s.out[ms[i].start:ms[i].keyEnd]))
		}
	}
	s.tmp = append(s.tmp[:0], s.out[objStart:]...)
	s.out = s.out[:objStart]
	for i, m := range ms {
		if i > 0 {
			s.out = append(s.out, ',')
		}
		s.out = append(s.out, s.tmp[m.start-objStart:m.end-objStart]...)
	}
	return nil
}

// Character classes for string scanning.
const (
	chPlain   = iota // copied as is
	chQuote          // end of string
	chEscape         // start of escape sequence
	chControl        // raw control character: invalid JSON
	chHigh           // start of a multi-byte UTF-8 sequence
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = chControl
	}
	t['"'] = chQuote
	t['\\'] = chEscape
	for c := 0x80; c < 0x100; c++ {
		t[c] = chHigh
	}
	return t
}()

// str parses the string starting at s.in[s.pos] (a '"') and writes its
// canonical encoding. It reports whether the encoding contains an escape.
func (s *state) str() (esc bool, err error) {
	in := s.in
	s.out = append(s.out, '"')
	i := s.pos + 1
	run := i
	for i < len(in) {
		switch charClass[in[i]] {
		case chPlain:
			i++
			for i < len(in) && charClass[in[i]] == chPlain {
				i++
			}
		case chQuote:
			s.out = append(s.out, in[run:i]...)
			s.out = append(s.out, '"')
			s.pos = i + 1
			return esc, nil
		case chEscape:
			s.out = append(s.out, in[run:i]...)
			s.pos = i
			var e bool
			i, e, err = s.escape(i)
			if err != nil {
				return false, err
			}
			esc = esc || e
			run = i
		case chControl:
			s.pos = i
			return false, s.fail(ErrInvalidJSON, "unescaped control character in string")
		case chHigh:
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size <= 1 {
				s.pos = i
				return false, s.fail(ErrInvalidUTF8, "")
			}
			i += size
		}
	}
	s.pos = i
	return false, s.fail(ErrInvalidJSON, "unterminated string")
}

// escape decodes the escape sequence at s.in[i] (a '\\') and writes its
// canonical form. It returns the offset after the sequence and whether the
// canonical form is itself an escape.
func (s *state) escape(i int) (int, bool, error) {
	in := s.in
	if i+1 >= len(in) {
		return 0, false, s.fail(ErrInvalidJSON, "unterminated string")
	}
	switch in[i+1] {
	case '"':
		s.out = append(s.out, '\\', '"')
		return i + 2, true, nil
	case '\\':
		s.out = append(s.out, '\\', '\\')
		return i + 2, true, nil
	case '/':
		s.out = append(s.out, '/')
		return i + 2, false, nil
	case 'b', 'f', 'n', 'r', 't':
		s.out = append(s.out, '\\', in[i+1])
		return i + 2, true, nil
	case 'u':
		r, ok := hex4(in, i+2)
		if !ok {
			return 0, false, s.fail(ErrInvalidJSON, "invalid \\u escape")
		}
		i += 6
		if utf16.IsSurrogate(r) {
			if r >= 0xDC00 {
				return 0, false, s.fail(ErrInvalidUTF8, "unpaired low surrogate escape")
			}
			var r2 rune
			if i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
				r2, ok = hex4(in, i+2)
			} else {
				ok = false
			}
			if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
				return 0, false, s.fail(ErrInvalidUTF8, "unpaired high surrogate escape")
			}
			r = utf16.DecodeRune(r, r2)
			i += 6
		}
		var e bool
		s.out, e = appendRune(s.out, r)
		return i, e, nil
	default:
		return 0, false, s.fail(ErrInvalidJSON, "invalid escape sequence")
	}
}

func hex4(in []byte, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range in[i : i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// appendRune appends the canonical encoding of r (inside a string) and
// reports whether an escape was written.
func appendRune(dst []byte, r rune) ([]byte, bool) {
	switch {
	case r == '"':
		return append(dst, '\\', '"'), true
	case r == '\\':
		return append(dst, '\\', '\\'), true
	case r < 0x20:
		switch r {
		case '\b':
			return append(dst, '\\', 'b'), true
		case '\f':
			return append(dst, '\\', 'f'), true
		case '\n':
			return append(dst, '\\', 'n'), true
		case '\r':
			return append(dst, '\\', 'r'), true
		case '\t':
			return append(dst, '\\', 't'), true
		}
		return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF]), true
	case r < utf8.RuneSelf:
		return append(dst, byte(r)), false
	default:
		return utf8.AppendRune(dst, r), false
	}
}

// appendString appends s as a canonical JSON string. It fails if s is not
// valid UTF-8.
func appendString(dst []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("signing: %w in string %q", ErrInvalidUTF8, s)
	}
	dst = append(dst, '"')
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[run:i]...)
		dst, _ = appendRune(dst, rune(c))
		run = i + 1
	}
	dst = append(dst, s[run:]...)
	return append(dst, '"'), nil
}

// unescapeCanonicalByte decodes one byte of the canonical string encoding k
// (without quotes) at offset i, returning it and the offset of the next one.
// Canonical escapes only ever encode single ASCII bytes.
func unescapeCanonicalByte(k []byte, i int) (byte, int) {
	c := k[i]
	if c != '\\' || i+1 >= len(k) {
		return c, i + 1
	}
	switch k[i+1] {
	case 'b':
		return '\b', i + 2
	case 'f':
		return '\f', i + 2
	case 'n':
		return '\n', i + 2
	case 'r':
		return '\r', i + 2
	case 't':
		return '\t', i + 2
	case 'u':
		if i+6 <= len(k) {
			r, _ := hex4(k, i+2)
			return byte(r), i + 6
		}
		return c, i + 1
	default: // '"' and '\\'
		return k[i+1], i + 2
	}
}

// compareCanonicalKeys compares two canonically encoded strings (without
// quotes) by the bytes they decode to, i.e. by Unicode code point.
func compareCanonicalKeys(a, b []byte) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		var ca, cb byte
		ca, i = unescapeCanonicalByte(a, i)
		cb, j = unescapeCanonicalByte(b, j)
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return 0
}
