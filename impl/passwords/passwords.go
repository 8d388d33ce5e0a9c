// Package passwords hashes and verifies user passwords for the homeserver.
//
// New hashes are Argon2id, encoded as PHC strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// where salt and hash use standard base64 without padding, as the PHC string
// format specifies. Verification also accepts bcrypt hashes ($2a$, $2b$, $2y$)
// such as those written by Synapse, so that users migrated from another
// homeserver can log in; those always report needsRehash so the caller can
// transparently upgrade them to Argon2id after a successful login.
//
// # Pepper
//
// A Hasher may be given a server-wide secret pepper. When a non-empty pepper
// is configured, the value fed to Argon2id is not the password itself but
// HMAC-SHA256(key=pepper, message=password) (32 bytes). The pepper is not
// recorded in the PHC string, so a hash created with a pepper can only be
// verified by a Hasher configured with the very same pepper; losing or
// changing the pepper invalidates every Argon2id hash made with it.
//
// The pepper is applied to Argon2id hashes only. bcrypt hashes are verified
// against the password exactly as given. Synapse applies its own
// password_config.pepper by appending it to the password before bcrypt, so a
// caller verifying Synapse hashes that were created with a Synapse pepper must
// pass password+synapsePepper for those hashes itself.
package passwords

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

var (
	// ErrMalformedHash is wrapped by errors for stored hashes that look like
	// a supported scheme but cannot be parsed or have out-of-range
	// parameters.
	ErrMalformedHash = errors.New("passwords: malformed password hash")
	// ErrUnsupportedHash is wrapped by errors for stored hashes of an
	// unknown or unsupported scheme (including the empty string).
	ErrUnsupportedHash = errors.New("passwords: unsupported password hash scheme")
)

// MaxBcryptCost is the highest bcrypt cost Verify will attempt. bcrypt allows
// up to 31, which would take days; anything above this is treated as a
// malformed hash rather than tying up a CPU.
const MaxBcryptCost = 20

const (
	argon2idPrefix = "$argon2id$"
	// bcryptLen is the length of a modular-crypt bcrypt hash:
	// "$2b$" + 2-digit cost + "$" + 22 chars salt + 31 chars hash.
	bcryptLen = 60
	// dummyPassword is hashed once per Hasher to back DummyVerify.
	dummyPassword = "myelin dummy password for timing equalisation"
)

// b64 is the PHC string base64 flavour: standard alphabet, no padding, and
// (Strict) no non-zero trailing bits, so each hash has one encoding.
var b64 = base64.RawStdEncoding.Strict()

// Hasher hashes and verifies passwords with a fixed set of Argon2id
// parameters and an optional pepper. It is safe for concurrent use. A Hasher
// must not be copied after first use.
type Hasher struct {
	params Params
	pepper []byte

	dummyOnce sync.Once
	dummy     string
}

// New returns a Hasher producing Argon2id hashes with parameters p. pepper is
// optional (nil or empty means no pepper); see the package documentation for
// how it is applied. The pepper is copied. p is validated when hashing: Hash
// returns p.Verify()'s error if p is out of range.
func New(p Params, pepper []byte) *Hasher {
	h := &Hasher{params: p}
	if len(pepper) > 0 {
		h.pepper = append([]byte(nil), pepper...)
	}
	return h
}

// Params returns the parameters new hashes are created with.
func (h *Hasher) Params() Params { return h.params }

// Hash returns the Argon2id PHC string for password, using a fresh random
// salt.
func (h *Hasher) Hash(password string) (string, error) {
	return h.hashWith(h.params, password)
}

func (h *Hasher) hashWith(p Params, password string) (string, error) {
	if err := p.Verify(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("passwords: reading random salt: %w", err)
	}
	key := idKey(h.preimage(password), salt, p)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify checks password against a stored hash, which may be an Argon2id PHC
// string (with any parameters, taken from the string) or a bcrypt hash
// ($2a$, $2b$, $2y$).
//
// ok reports whether the password matches. needsRehash is only ever true
// when ok is true; it then reports that the caller should replace the stored
// hash with a fresh Hash(password), because the stored hash is bcrypt or is
// Argon2id with parameters (including salt or key length) different from the
// Hasher's.
//
// err is non-nil, and ok false, when the stored hash is empty, of an
// unsupported scheme (ErrUnsupportedHash), or malformed (ErrMalformedHash).
// A wrong password is not an error: it yields ok == false and err == nil.
func (h *Hasher) Verify(password, encoded string) (ok bool, needsRehash bool, err error) {
	switch {
	case strings.HasPrefix(encoded, argon2idPrefix):
		return h.verifyArgon2id(password, encoded)
	case strings.HasPrefix(encoded, "$2a$"),
		strings.HasPrefix(encoded, "$2b$"),
		strings.HasPrefix(encoded, "$2y$"):
		return verifyBcrypt(password, encoded)
	case encoded == "":
		return false, false, fmt.Errorf("%w: empty hash", ErrUnsupportedHash)
	default:
		return false, false, fmt.Errorf("%w: unrecognised prefix", ErrUnsupportedHash)
	}
}

// DummyVerify performs the same work as a Verify of password against an
// Argon2id hash made with the Hasher's current parameters, and discards the
// result. Call it when a login names a user that does not exist (or has no
// password), so that response timing does not reveal whether the user exists.
// The dummy hash is computed on first use. If the Hasher's parameters are
// invalid, DefaultParams are used for the dummy instead.
func (h *Hasher) DummyVerify(password string) {
	h.dummyOnce.Do(func() {
		d, err := h.hashWith(h.params, dummyPassword)
		if err != nil {
			d, _ = h.hashWith(DefaultParams(), dummyPassword)
		}
		h.dummy = d
	})
	_, _, _ = h.Verify(password, h.dummy)
}

// ParseParams parses the parameters of an Argon2id PHC string, with SaltLen
// and KeyLen taken from the decoded salt and hash. It does not verify
// anything.
func ParseParams(encoded string) (Params, error) {
	p, _, _, err := parseArgon2id(encoded)
	return p, err
}

// hashSlots bounds the hashes computed at once to the number of cores.
// Hashing is CPU-bound, so more at once would not finish sooner; but each
// argon2id computation holds its memory cost (19 MiB by default) until it
// is done, so a burst of 64 logins on one core would need 1.2 GiB, and
// the garbage collector would chase it, instead of 19 MiB per core.
var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// hashWaiting counts the hashes queued for a slot.
var hashWaiting atomic.Int64

func inHashSlot(f func()) {
	hashWaiting.Add(1)
	hashSlots <- struct{}{}
	hashWaiting.Add(-1)
	hashStarts.Add(1)
	defer func() {
		<-hashSlots
		// The last hash of a burst arms the quiet hook: nothing else runs
		// and nothing waits (a hash that starts later cancels it). Two
		// hashes ending together may both arm it; that is one timer.
		if len(hashSlots) == 0 && hashWaiting.Load() == 0 {
			quiet.arm()
		}
	}()
	f()
}

// hashStarts counts hashes started, so that a quiet hook armed before a
// later hash can tell that hashing did not stay quiet.
var hashStarts atomic.Uint64

// QuietAfter is how long hashing must stay idle after a burst before the
// quiet hook runs, and quietEvery the least time between two runs.
const (
	QuietAfter = 100 * time.Millisecond
	quietEvery = time.Second
)

var quiet quietHook

// OnQuiet sets f to be called, on its own goroutine, once hashing goes
// quiet after a burst: when the last hash in progress has finished, none
// has waited or started for QuietAfter, and f has not run in the last
// second. Each Argon2id hash allocates its memory cost (19 MiB by
// default) and drops it as garbage; after a login burst the heap goal
// still counts the hashes that were live at the last collection, and the
// process would keep that memory until the runtime's periodic collection
// minutes later. The server passes debug.FreeOSMemory, which hands it
// back at once. OnQuiet(nil) removes the hook.
func OnQuiet(f func()) {
	quiet.mu.Lock()
	defer quiet.mu.Unlock()
	quiet.hook = f
}

type quietHook struct {
	mu    sync.Mutex
	hook  func()
	timer *time.Timer
	gen   uint64    // hashStarts when the timer was armed
	last  time.Time // when hook last ran
}

func (q *quietHook) arm() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hook == nil {
		return
	}
	q.gen = hashStarts.Load()
	wait := QuietAfter
	if next := time.Until(q.last.Add(quietEvery)); next > wait {
		wait = next
	}
	if q.timer == nil {
		q.timer = time.AfterFunc(wait, q.fire)
	} else {
		q.timer.Reset(wait)
	}
}

func (q *quietHook) fire() {
	q.mu.Lock()
	f := q.hook
	busy := hashStarts.Load() != q.gen || len(hashSlots) > 0 || hashWaiting.Load() > 0
	if f == nil || busy {
		// A hash started since: its own end re-arms the timer.
		q.mu.Unlock()
		return
	}
	q.last = time.Now()
	q.mu.Unlock()
	f()
}

// HashLoad reports how many password hashes are being computed and how
// many wait for a core (a login burst queues here).
func HashLoad() (running, waiting int) {
	return len(hashSlots), int(hashWaiting.Load())
}

// idKey is argon2.IDKey in a hashing slot.
func idKey(password, salt []byte, p Params) (key []byte) {
	inHashSlot(func() { key = argon2.IDKey(password, salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen) })
	return key
}

// preimage is what actually gets fed to Argon2id for password.
func (h *Hasher) preimage(password string) []byte {
	if len(h.pepper) == 0 {
		return []byte(password)
	}
	m := hmac.New(sha256.New, h.pepper)
	m.Write([]byte(password))
	return m.Sum(nil)
}

func (h *Hasher) verifyArgon2id(password, encoded string) (bool, bool, error) {
	p, salt, want, err := parseArgon2id(encoded)
	if err != nil {
		return false, false, err
	}
	got := idKey(h.preimage(password), salt, p)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return false, false, nil
	}
	return true, p != h.params, nil
}

// parseArgon2id strictly parses
//
//	$argon2id$v=19$m=<uint32>,t=<uint32>,p=<uint8>$<salt>$<hash>
//
// and validates the result with Params.Verify. Errors wrap
// ErrUnsupportedHash or ErrMalformedHash.
func parseArgon2id(encoded string) (p Params, salt, key []byte, err error) {
	malformed := func(format string, args ...any) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: %s", ErrMalformedHash, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(encoded, argon2idPrefix) {
		return Params{}, nil, nil, fmt.Errorf("%w: not an argon2id hash", ErrUnsupportedHash)
	}
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 {
		return malformed("expected 5 '$'-separated fields, got %d", len(parts)-1)
	}
	v, found := strings.CutPrefix(parts[2], "v=")
	if !found {
		return malformed("missing version field")
	}
	if v != strconv.Itoa(argon2.Version) {
		return malformed("unsupported version %q (want %d)", v, argon2.Version)
	}

	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return malformed("expected parameters m,t,p, got %q", parts[3])
	}
	var vals [3]uint64
	for i, name := range [3]string{"m", "t", "p"} {
		s, found := strings.CutPrefix(fields[i], name+"=")
		if !found {
			return malformed("expected parameter %q at position %d, got %q", name, i+1, fields[i])
		}
		bits := 32
		if name == "p" {
			bits = 8
		}
		n, err := strconv.ParseUint(s, 10, bits)
		if err != nil {
			return malformed("parameter %s: %v", name, errors.Unwrap(err))
		}
		vals[i] = n
	}

	// Bound the encoded lengths before decoding so that garbage cannot make
	// us allocate large buffers.
	if b64.DecodedLen(len(parts[4])) > MaxSaltLen || b64.DecodedLen(len(parts[5])) > MaxKeyLen {
		return malformed("salt or hash too long")
	}
	salt, err = b64.DecodeString(parts[4])
	if err != nil {
		return malformed("salt: bad base64: %v", err)
	}
	key, err = b64.DecodeString(parts[5])
	if err != nil {
		return malformed("hash: bad base64: %v", err)
	}

	p = Params{
		MemoryKiB:   uint32(vals[0]),
		Iterations:  uint32(vals[1]),
		Parallelism: uint8(vals[2]),
		SaltLen:     uint32(len(salt)),
		KeyLen:      uint32(len(key)),
	}
	if err := p.Verify(); err != nil {
		return malformed("%v", err)
	}
	return p, salt, key, nil
}

// verifyBcrypt checks a modular-crypt bcrypt hash. The password is used as
// given (no pepper). Like every bcrypt implementation, only the first 72
// bytes of the password are significant, which matches how hashes written by
// Synapse (Python bcrypt) were created.
func verifyBcrypt(password, encoded string) (bool, bool, error) {
	if err := checkBcryptShape(encoded); err != nil {
		return false, false, err
	}
	var err error
	inHashSlot(func() { err = bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password)) })
	switch {
	case err == nil:
		return true, true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, false, nil
	default:
		return false, false, fmt.Errorf("%w: bcrypt: %v", ErrMalformedHash, err)
	}
}

// checkBcryptShape validates "$2?$NN$" followed by 53 characters of the
// bcrypt base64 alphabet, and bounds the cost.
func checkBcryptShape(encoded string) error {
	if len(encoded) != bcryptLen {
		return fmt.Errorf("%w: bcrypt: length %d, want %d", ErrMalformedHash, len(encoded), bcryptLen)
	}
	if encoded[6] != '$' || !isDigit(encoded[4]) || !isDigit(encoded[5]) {
		return fmt.Errorf("%w: bcrypt: bad cost field", ErrMalformedHash)
	}
	cost := int(encoded[4]-'0')*10 + int(encoded[5]-'0')
	if cost < bcrypt.MinCost || cost > MaxBcryptCost {
		return fmt.Errorf("%w: bcrypt: cost %d outside [%d, %d]", ErrMalformedHash, cost, bcrypt.MinCost, MaxBcryptCost)
	}
	for i := 7; i < len(encoded); i++ {
		c := encoded[i]
		if !(c == '.' || c == '/' || isDigit(c) || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')) {
			return fmt.Errorf("%w: bcrypt: invalid character at offset %d", ErrMalformedHash, i)
		}
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
