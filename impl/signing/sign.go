package signing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
)

// KeyID is a signing key identifier: the signing algorithm and a key
// version joined by a colon, e.g. "ed25519:abc123".
type KeyID string

// Errors returned by the signing and verification functions. Returned errors
// wrap one of these; test with errors.Is.
var (
	// ErrNotObject reports that the JSON to sign or verify is not an object.
	ErrNotObject = errors.New("JSON value is not an object")
	// ErrInvalidKey reports a private or public key of the wrong size.
	ErrInvalidKey = errors.New("invalid ed25519 key")
	// ErrMissingSignature reports that the expected signature is absent.
	ErrMissingSignature = errors.New("signature missing")
	// ErrMalformedSignature reports a signature (or signatures structure,
	// or X-Matrix header) that cannot be decoded.
	ErrMalformedSignature = errors.New("signature malformed")
	// ErrBadSignature reports a well-formed signature that does not verify.
	ErrBadSignature = errors.New("signature does not verify")
)

const (
	keySignatures = `"signatures"`
	keyUnsigned   = `"unsigned"`
)

// EncodeBase64 encodes b as unpadded standard base64, as used throughout
// Matrix.
func EncodeBase64(b []byte) string {
	return base64.RawStdEncoding.EncodeToString(b)
}

// DecodeBase64 decodes base64 leniently, like Synapse: padding is optional,
// and the URL-safe alphabet ('-' and '_') is accepted as well as the standard
// one. Non-zero trailing bits are tolerated.
func DecodeBase64(s string) ([]byte, error) {
	return appendDecodeBase64(make([]byte, 0, base64.RawStdEncoding.DecodedLen(len(s))), []byte(s))
}

// appendDecodeBase64 is DecodeBase64 appending to dst.
func appendDecodeBase64(dst, src []byte) ([]byte, error) {
	// Strip up to two padding characters.
	for n := 0; n < 2 && len(src) > 0 && src[len(src)-1] == '='; n++ {
		src = src[:len(src)-1]
	}
	if bytes.ContainsAny(src, "-_") {
		src = bytes.Clone(src)
		for i, c := range src {
			switch c {
			case '-':
				src[i] = '+'
			case '_':
				src[i] = '/'
			}
		}
	}
	out, err := base64.RawStdEncoding.AppendDecode(dst, src)
	if err != nil {
		return nil, fmt.Errorf("signing: invalid base64: %w", err)
	}
	return out, nil
}

// KeyFromSeed returns the ed25519 private key derived from a 32 byte seed.
// Like ed25519.NewKeyFromSeed, it panics if len(seed) != ed25519.SeedSize.
func KeyFromSeed(seed []byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(seed)
}

// Scratch buffers for SignJSON and VerifyJSON.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

func getScratch(n int) *[]byte {
	p := scratchPool.Get().(*[]byte)
	if cap(*p) < n {
		*p = make([]byte, 0, n)
	}
	return p
}

func putScratch(p *[]byte) {
	if cap(*p) > 1<<20 {
		return
	}
	*p = (*p)[:0]
	scratchPool.Put(p)
}

// SignJSON signs the JSON object in on behalf of serverName with the key
// keyID, following the specification: the object without its "signatures"
// and "unsigned" members is encoded as canonical JSON and signed, and the
// unpadded base64 signature is stored at signatures[serverName][keyID],
// keeping any other existing signatures. The result is the canonical JSON of
// the whole object, including "unsigned" if present.
func SignJSON(serverName string, keyID KeyID, priv ed25519.PrivateKey, in []byte) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing: %w: private key is %d bytes, want %d", ErrInvalidKey, len(priv), ed25519.PrivateKeySize)
	}
	var keyBuf [128]byte
	serverKey, err := appendString(keyBuf[:0], serverName)
	if err != nil {
		return nil, err
	}
	idKey, err := appendString(serverKey[len(serverKey):], string(keyID))
	if err != nil {
		return nil, err
	}

	// Scratch layout: canonical input, then signing payload, then the new
	// signatures object.
	sp := getScratch(3*len(in) + len(serverKey) + len(idKey) + 128)
	defer putScratch(sp)
	canon, err := appendCanonical((*sp)[:0], in)
	if err != nil {
		return nil, err
	}
	var msBuf [16]objMember
	ms, ok := splitObject(canon, msBuf[:0])
	if !ok {
		return nil, fmt.Errorf("signing: cannot sign: %w", ErrNotObject)
	}
	payload := appendSigningPayload(canon[len(canon):], ms)
	sig := ed25519.Sign(priv, payload)

	var sigBuf [2 + 86]byte
	sigVal := append(sigBuf[:0], '"')
	sigVal = base64.RawStdEncoding.AppendEncode(sigVal, sig)
	sigVal = append(sigVal, '"')

	sigs := []byte("{}")
	if v, found := lookup(ms, keySignatures); found {
		if !isObject(v) {
			return nil, fmt.Errorf("signing: %w: existing \"signatures\" is not an object", ErrMalformedSignature)
		}
		sigs = v
	}
	serverSigs := []byte("{}")
	if v, found := getMember(sigs, serverKey); found {
		if !isObject(v) {
			return nil, fmt.Errorf("signing: %w: existing signatures for %q is not an object", ErrMalformedSignature, serverName)
		}
		serverSigs = v
	}
	serverSigs = setMember(payload[len(payload):], serverSigs, idKey, sigVal)
	sigs = setMember(serverSigs[len(serverSigs):], sigs, serverKey, serverSigs)
	// The result must not share memory with the pooled scratch buffer.
	out := make([]byte, 0, len(canon)+len(sigs)+len(keySignatures)+2)
	return setMember(out, canon, []byte(keySignatures), sigs), nil
}

// VerifyJSON checks that the JSON object in carries a valid signature by
// serverName with key keyID, made with the private key matching pub, over
// the canonical JSON of the object without "signatures" and "unsigned".
// The error wraps ErrMissingSignature, ErrMalformedSignature or
// ErrBadSignature (or a canonicalisation error) as appropriate.
func VerifyJSON(serverName string, keyID KeyID, pub ed25519.PublicKey, in []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("signing: %w: public key is %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	var keyBuf [128]byte
	serverKey, err := appendString(keyBuf[:0], serverName)
	if err != nil {
		return err
	}
	idKey, err := appendString(serverKey[len(serverKey):], string(keyID))
	if err != nil {
		return err
	}

	// Scratch layout: canonical input, then signing payload.
	sp := getScratch(2 * len(in))
	defer putScratch(sp)
	canon, err := appendCanonical((*sp)[:0], in)
	if err != nil {
		return err
	}
	var msBuf [16]objMember
	ms, ok := splitObject(canon, msBuf[:0])
	if !ok {
		return fmt.Errorf("signing: cannot verify: %w", ErrNotObject)
	}
	sigs, found := lookup(ms, keySignatures)
	if !found {
		return fmt.Errorf("signing: %w: object has no \"signatures\"", ErrMissingSignature)
	}
	if !isObject(sigs) {
		return fmt.Errorf("signing: %w: \"signatures\" is not an object", ErrMalformedSignature)
	}
	serverSigs, found := getMember(sigs, serverKey)
	if !found {
		return fmt.Errorf("signing: %w: no signatures from %q", ErrMissingSignature, serverName)
	}
	if !isObject(serverSigs) {
		return fmt.Errorf("signing: %w: signatures from %q is not an object", ErrMalformedSignature, serverName)
	}
	sigVal, found := getMember(serverSigs, idKey)
	if !found {
		return fmt.Errorf("signing: %w: no signature from %q with key %q", ErrMissingSignature, serverName, keyID)
	}
	if len(sigVal) < 2 || sigVal[0] != '"' {
		return fmt.Errorf("signing: %w: signature from %q with key %q is not a string", ErrMalformedSignature, serverName, keyID)
	}
	var sigBuf [ed25519.SignatureSize]byte
	sig, err := appendDecodeBase64(sigBuf[:0], sigVal[1:len(sigVal)-1])
	if err != nil {
		return fmt.Errorf("signing: %w: signature from %q with key %q: %v", ErrMalformedSignature, serverName, keyID, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("signing: %w: signature from %q with key %q is %d bytes, want %d", ErrMalformedSignature, serverName, keyID, len(sig), ed25519.SignatureSize)
	}
	payload := appendSigningPayload(canon[len(canon):], ms)
	if !ed25519.Verify(pub, payload, sig) {
		return fmt.Errorf("signing: %w: signature from %q with key %q", ErrBadSignature, serverName, keyID)
	}
	return nil
}

// objMember is one member of a canonical JSON object: its key (canonical
// encoding with quotes) and its value (canonical encoding).
type objMember struct {
	key, val []byte
}

func isObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }

// splitObject splits the canonical JSON object b into its members, appended
// to dst. It reports false if b is not an object. b must be canonical JSON
// as produced by Canonical.
func splitObject(b []byte, dst []objMember) ([]objMember, bool) {
	if len(b) < 2 || b[0] != '{' {
		return dst, false
	}
	i := 1
	if b[i] == '}' {
		return dst, true
	}
	for i < len(b) {
		ks := i
		i = skipString(b, i)
		ke := i
		i++ // ':'
		vs := i
		i = skipValue(b, i)
		dst = append(dst, objMember{key: b[ks:ke], val: b[vs:i]})
		if i >= len(b) || b[i] != ',' {
			break
		}
		i++
	}
	return dst, true
}

// skipString returns the offset after the canonical string starting at b[i].
func skipString(b []byte, i int) int {
	i++
	for i < len(b) {
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			i += 2
		default:
			i++
		}
	}
	return i
}

// skipValue returns the offset after the canonical value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
			i++
		}
		return i
	}
}

func lookup(ms []objMember, key string) ([]byte, bool) {
	for _, m := range ms {
		if string(m.key) == key {
			return m.val, true
		}
	}
	return nil, false
}

// getMember returns the value of key (canonical encoding with quotes) in the
// canonical object obj.
func getMember(obj, key []byte) ([]byte, bool) {
	var buf [16]objMember
	ms, _ := splitObject(obj, buf[:0])
	return lookup(ms, string(key))
}

// setMember appends to dst the canonical object obj with the member key set
// to val (replacing any existing value), keeping keys in canonical order.
// key is a canonical string with quotes; val is canonical JSON.
func setMember(dst, obj, key, val []byte) []byte {
	var buf [16]objMember
	ms, _ := splitObject(obj, buf[:0])
	k := key[1 : len(key)-1]
	dst = append(dst, '{')
	first := true
	written := false
	emit := func(mk, mv []byte) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, mk...)
		dst = append(dst, ':')
		dst = append(dst, mv...)
	}
	for _, m := range ms {
		c := compareCanonicalKeys(k, m.key[1:len(m.key)-1])
		if c == 0 {
			continue // replaced below, at the same position
		}
		if !written && c < 0 {
			emit(key, val)
			written = true
		}
		emit(m.key, m.val)
	}
	if !written {
		emit(key, val)
	}
	return append(dst, '}')
}

// appendSigningPayload appends the canonical object made of members ms less
// "signatures" and "unsigned".
func appendSigningPayload(dst []byte, ms []objMember) []byte {
	dst = append(dst, '{')
	first := true
	for _, m := range ms {
		if string(m.key) == keySignatures || string(m.key) == keyUnsigned {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, m.key...)
		dst = append(dst, ':')
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}
