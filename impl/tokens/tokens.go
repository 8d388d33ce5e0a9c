// Package tokens generates opaque random secrets and identifiers (access
// tokens, device IDs, session IDs, generated localparts) and hashes tokens for
// storage.
//
// All randomness comes from crypto/rand. Since Go 1.24 crypto/rand.Read never
// returns an error (the program crashes irrecoverably if the OS random source
// fails), so these functions do not return errors either.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

const (
	// AccessTokenPrefix starts every access token, which makes leaked tokens
	// easy to recognise (e.g. by secret scanners).
	AccessTokenPrefix = "myl_"
	// AccessTokenBytes is the entropy of an access token: 256 bits.
	AccessTokenBytes = 32
	// AccessTokenLen is the total length of an access token: the prefix plus
	// 43 characters of unpadded base64url.
	AccessTokenLen = len(AccessTokenPrefix) + 43

	// MinTokenBytes is the smallest nbytes NewRefreshLikeToken accepts
	// (128 bits).
	MinTokenBytes = 16

	// DeviceIDLen is the length of a generated device ID.
	DeviceIDLen = 10
	// SessionIDLen is the length of a generated session ID.
	SessionIDLen = 24
	// LocalpartLen is the length of a generated localpart.
	LocalpartLen = 12
)

const (
	upperAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lowerAlphabet     = "abcdefghijklmnopqrstuvwxyz"
	localpartAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// NewAccessToken returns a new access token: "myl_" followed by 32 random
// bytes (256 bits) as 43 characters of unpadded base64url.
func NewAccessToken() string {
	return NewRefreshLikeToken(AccessTokenPrefix, AccessTokenBytes)
}

// NewRefreshLikeToken returns prefix followed by nbytes random bytes encoded
// as unpadded base64url (ceil(4*nbytes/3) characters). It is the general form
// of NewAccessToken, for refresh tokens, login tokens and similar secrets.
// It panics if nbytes < MinTokenBytes, which would be a programming error.
func NewRefreshLikeToken(prefix string, nbytes int) string {
	if nbytes < MinTokenBytes {
		panic(fmt.Sprintf("tokens: NewRefreshLikeToken: nbytes=%d, need at least %d", nbytes, MinTokenBytes))
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, len(prefix)+enc.EncodedLen(nbytes)+nbytes)
	raw := buf[len(buf)-nbytes:]
	_, _ = rand.Read(raw)
	copy(buf, prefix)
	// The encoded form ends before raw starts, so the two do not overlap.
	enc.Encode(buf[len(prefix):len(buf)-nbytes], raw)
	return string(buf[:len(buf)-nbytes])
}

// NewDeviceID returns 10 uniformly random uppercase ASCII letters (A-Z),
// about 47 bits of entropy.
func NewDeviceID() string {
	var s sampler
	var b strings.Builder
	b.Grow(DeviceIDLen)
	for range DeviceIDLen {
		b.WriteByte(s.pick(upperAlphabet))
	}
	return b.String()
}

// NewSessionID returns 24 URL-safe random characters (18 random bytes,
// 144 bits, as unpadded base64url).
func NewSessionID() string {
	return NewRefreshLikeToken("", SessionIDLen/4*3)
}

// RandomLocalpart returns a localpart for a generated username: 12
// characters, a lowercase letter followed by 11 lowercase letters or digits
// (about 61 bits of entropy). It always matches the Matrix localpart grammar
// [a-z0-9._=\-/]+. The leading letter keeps it distinct from the purely
// numeric localparts conventionally used for guest users.
func RandomLocalpart() string {
	var s sampler
	var b strings.Builder
	b.Grow(LocalpartLen)
	b.WriteByte(s.pick(lowerAlphabet))
	for range LocalpartLen - 1 {
		b.WriteByte(s.pick(localpartAlphabet))
	}
	return b.String()
}

// sampler draws characters uniformly from an alphabet of at most 256
// characters, using rejection sampling on random bytes so that there is no
// modulo bias. Random bytes are fetched from crypto/rand in batches.
type sampler struct {
	buf  [32]byte
	pool []byte
}

func (s *sampler) pick(alphabet string) byte {
	// Accept bytes below the largest multiple of len(alphabet) that fits in
	// a byte, and reduce those modulo len(alphabet).
	limit := 256 - 256%len(alphabet)
	for {
		if len(s.pool) == 0 {
			s.pool = s.buf[:]
			_, _ = rand.Read(s.pool)
		}
		c := s.pool[0]
		s.pool = s.pool[1:]
		if int(c) < limit {
			return alphabet[int(c)%len(alphabet)]
		}
	}
}

// Hash is the SHA-256 digest of a token, as stored in the database instead of
// the token itself.
type Hash [sha256.Size]byte

// ErrInvalidHash is wrapped by ParseHash errors.
var ErrInvalidHash = errors.New("tokens: invalid token hash")

// HashToken returns the SHA-256 digest of token. Tokens carry at least 128
// bits of entropy, so an unsalted fast hash is appropriate: it lets the
// server look a token up by its hash while a database leak does not reveal
// usable tokens.
func HashToken(token string) Hash {
	// Hashing runs on every authenticated request; reading the string's
	// bytes in place saves copying it to the heap. Sum256 only reads them.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// String returns the digest as 64 lowercase hex characters.
func (h Hash) String() string {
	return hex.EncodeToString(h[:])
}

// ParseHash parses the 64-hex-character form produced by Hash.String
// (upper-case hex digits are accepted too).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(len(h)) {
		return Hash{}, fmt.Errorf("%w: length %d, want %d hex characters", ErrInvalidHash, len(s), hex.EncodedLen(len(h)))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("%w: %v", ErrInvalidHash, err)
	}
	return h, nil
}

// Equal reports whether a and b are equal, in time that depends only on
// their lengths, not their contents. Lengths are not secret for our tokens
// (they have fixed formats).
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
