package signing

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// Errors specific to X-Matrix request authentication.
var (
	// ErrMalformedHeader reports an Authorization header that is not a
	// usable X-Matrix header.
	ErrMalformedHeader = errors.New("malformed X-Matrix authorization header")
	// ErrWrongDestination reports an X-Matrix header addressed to another
	// server.
	ErrWrongDestination = errors.New("X-Matrix request addressed to a different destination")
)

// XMatrixAuth is a parsed X-Matrix Authorization header.
type XMatrixAuth struct {
	Origin string
	// Destination is empty if the header had no destination parameter
	// (sent by servers predating Matrix v1.3).
	Destination string
	KeyID       KeyID
	Sig         []byte // decoded signature
}

// appendRequestJSON appends the canonical JSON of the object signed for
// X-Matrix request authentication.
func appendRequestJSON(dst []byte, method, requestURI, origin, destination string, content []byte) ([]byte, error) {
	var err error
	dst = append(dst, '{')
	// Keys in canonical order: content, destination, method, origin, uri.
	if len(content) > 0 {
		dst = append(dst, `"content":`...)
		if dst, err = appendCanonical(dst, content); err != nil {
			return nil, fmt.Errorf("signing: request content: %w", err)
		}
		dst = append(dst, ',')
	}
	dst = append(dst, `"destination":`...)
	if dst, err = appendString(dst, destination); err != nil {
		return nil, err
	}
	dst = append(dst, `,"method":`...)
	if dst, err = appendString(dst, method); err != nil {
		return nil, err
	}
	dst = append(dst, `,"origin":`...)
	if dst, err = appendString(dst, origin); err != nil {
		return nil, err
	}
	dst = append(dst, `,"uri":`...)
	if dst, err = appendString(dst, requestURI); err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// headerSafe reports whether s can be put in an HTTP header parameter.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// SignRequest signs a federation request as described in the server-server
// specification ("Request Authentication") and returns the value for its
// Authorization header:
//
//	X-Matrix origin="origin",destination="destination",key="ed25519:1",sig="..."
//
// The signed object is {"method", "uri", "origin", "destination"} plus
// "content" (the request body, which must be JSON) when content is
// non-empty. requestURI is the path and query string exactly as sent, e.g.
// "/_matrix/federation/v1/send/123?x=y".
func SignRequest(origin, destination string, keyID KeyID, priv ed25519.PrivateKey, method, requestURI string, content []byte) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("signing: %w: private key is %d bytes, want %d", ErrInvalidKey, len(priv), ed25519.PrivateKeySize)
	}
	if origin == "" || destination == "" || keyID == "" {
		return "", fmt.Errorf("signing: %w: origin, destination and key ID must be non-empty", ErrMalformedHeader)
	}
	if !headerSafe(origin) || !headerSafe(destination) || !headerSafe(string(keyID)) {
		return "", fmt.Errorf("signing: %w: control character in origin, destination or key ID", ErrMalformedHeader)
	}
	msg, err := appendRequestJSON(make([]byte, 0, 128+len(content)), method, requestURI, origin, destination, content)
	if err != nil {
		return "", err
	}
	sig := ed25519.Sign(priv, msg)
	h := make([]byte, 0, 64+len(origin)+len(destination)+len(keyID)+88)
	h = append(h, `X-Matrix origin=`...)
	h = appendQuoted(h, origin)
	h = append(h, `,destination=`...)
	h = appendQuoted(h, destination)
	h = append(h, `,key=`...)
	h = appendQuoted(h, string(keyID))
	h = append(h, `,sig="`...)
	h = append(h, EncodeBase64(sig)...)
	h = append(h, '"')
	return string(h), nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// ParseXMatrix parses an X-Matrix Authorization header value. It is
// tolerant: the scheme is case-insensitive, parameter names are
// case-insensitive, parameters are comma separated with optional whitespace,
// values may be quoted strings (with backslash escapes) or bare tokens,
// unknown parameters are ignored, and destination may be absent (older
// servers). origin, key and sig are required; sig must be valid base64.
func ParseXMatrix(header string) (XMatrixAuth, error) {
	var a XMatrixAuth
	h := strings.TrimLeft(header, " \t")
	sp := strings.IndexAny(h, " \t")
	if sp < 0 || !strings.EqualFold(h[:sp], "X-Matrix") {
		return a, fmt.Errorf("signing: %w: not an X-Matrix header", ErrMalformedHeader)
	}
	rest := h[sp:]
	var haveOrigin, haveDest, haveKey, haveSig bool
	var sig string
	i := 0
	for {
		for i < len(rest) && (isSpace(rest[i]) || rest[i] == ',') {
			i++
		}
		if i >= len(rest) {
			break
		}
		ns := i
		for i < len(rest) && rest[i] != '=' && rest[i] != ',' && !isSpace(rest[i]) {
			i++
		}
		name := rest[ns:i]
		for i < len(rest) && isSpace(rest[i]) {
			i++
		}
		if i >= len(rest) || rest[i] != '=' {
			return XMatrixAuth{}, fmt.Errorf("signing: %w: parameter %q has no value", ErrMalformedHeader, name)
		}
		i++
		for i < len(rest) && isSpace(rest[i]) {
			i++
		}
		var val string
		if i < len(rest) && rest[i] == '"' {
			i++
			vs := i
			escaped := false
			for i < len(rest) && rest[i] != '"' {
				if rest[i] == '\\' {
					escaped = true
					i++
				}
				i++
			}
			if i >= len(rest) {
				return XMatrixAuth{}, fmt.Errorf("signing: %w: unterminated quoted value for %q", ErrMalformedHeader, name)
			}
			val = rest[vs:i]
			if escaped {
				val = unquote(val)
			}
			i++ // closing quote
		} else {
			vs := i
			for i < len(rest) && rest[i] != ',' && !isSpace(rest[i]) {
				i++
			}
			val = rest[vs:i]
		}
		for i < len(rest) && isSpace(rest[i]) {
			i++
		}
		if i < len(rest) && rest[i] != ',' {
			return XMatrixAuth{}, fmt.Errorf("signing: %w: expected ',' after parameter %q", ErrMalformedHeader, name)
		}
		var seen *bool
		switch strings.ToLower(name) {
		case "origin":
			seen, a.Origin = &haveOrigin, val
		case "destination":
			seen, a.Destination = &haveDest, val
		case "key":
			seen, a.KeyID = &haveKey, KeyID(val)
		case "sig":
			seen, sig = &haveSig, val
		default:
			continue // unknown parameters are ignored
		}
		if *seen {
			return XMatrixAuth{}, fmt.Errorf("signing: %w: duplicate parameter %q", ErrMalformedHeader, name)
		}
		*seen = true
	}
	switch {
	case a.Origin == "":
		return XMatrixAuth{}, fmt.Errorf("signing: %w: missing origin", ErrMalformedHeader)
	case a.KeyID == "":
		return XMatrixAuth{}, fmt.Errorf("signing: %w: missing key", ErrMalformedHeader)
	case sig == "":
		return XMatrixAuth{}, fmt.Errorf("signing: %w: missing sig", ErrMalformedHeader)
	case haveDest && a.Destination == "":
		return XMatrixAuth{}, fmt.Errorf("signing: %w: empty destination", ErrMalformedHeader)
	}
	b, err := DecodeBase64(sig)
	if err == nil && len(b) == 0 {
		err = errors.New("decodes to nothing")
	}
	if err != nil {
		return XMatrixAuth{}, fmt.Errorf("signing: %w: %w: sig: %v", ErrMalformedHeader, ErrMalformedSignature, err)
	}
	a.Sig = b
	return a, nil
}

// unquote removes backslash escapes from the body of a quoted-string.
func unquote(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// VerifyRequest checks an X-Matrix signature for a request received by
// destination (our own server name). If the header names a destination it
// must equal destination. content is the request body (nil or empty if
// there is none); it must be JSON otherwise. The caller is responsible for
// finding pub, the public key of a.Origin with ID a.KeyID.
func VerifyRequest(a XMatrixAuth, pub ed25519.PublicKey, destination, method, requestURI string, content []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("signing: %w: public key is %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	if a.Origin == "" {
		return fmt.Errorf("signing: %w: missing origin", ErrMalformedHeader)
	}
	if a.Destination != "" && a.Destination != destination {
		return fmt.Errorf("signing: %w: header destination %q, we are %q", ErrWrongDestination, a.Destination, destination)
	}
	if len(a.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("signing: %w: X-Matrix signature is %d bytes, want %d", ErrMalformedSignature, len(a.Sig), ed25519.SignatureSize)
	}
	msg, err := appendRequestJSON(make([]byte, 0, 128+len(content)), method, requestURI, a.Origin, destination, content)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, a.Sig) {
		return fmt.Errorf("signing: %w: X-Matrix request from %q with key %q", ErrBadSignature, a.Origin, a.KeyID)
	}
	return nil
}
