package passwords

import (
	"errors"
	"fmt"
)

// Bounds enforced by Params.Verify. They apply both to the parameters a
// Hasher is configured with and to parameters parsed out of stored PHC
// strings, so that a corrupted or hostile hash in the database cannot make a
// single verification allocate absurd amounts of memory or run for hours.
const (
	// MinMemoryPerLaneKiB is the Argon2 minimum of 8 KiB per lane: MemoryKiB
	// must be at least 8*Parallelism.
	MinMemoryPerLaneKiB = 8
	// MaxMemoryKiB caps memory at 4 GiB.
	MaxMemoryKiB = 4 * 1024 * 1024
	// MinIterations and MaxIterations bound the Argon2 time cost t.
	MinIterations = 1
	MaxIterations = 1024
	// MinParallelism is the Argon2 minimum lane count (the maximum, 255, is
	// implied by the uint8 field).
	MinParallelism = 1
	// MinSaltLen is the Argon2 specification minimum salt length (8 bytes);
	// MaxSaltLen is a sanity bound.
	MinSaltLen = 8
	MaxSaltLen = 1024
	// MinKeyLen is the shortest derived key (tag) we accept (128 bits);
	// MaxKeyLen is a sanity bound.
	MinKeyLen = 16
	MaxKeyLen = 1024
)

// ErrInvalidParams is wrapped by every error returned from Params.Verify.
var ErrInvalidParams = errors.New("passwords: invalid argon2id parameters")

// Params are the Argon2id cost parameters together with the salt and derived
// key lengths, all as encoded in (or implied by) a PHC string.
type Params struct {
	// MemoryKiB is the memory cost m, in KiB.
	MemoryKiB uint32
	// Iterations is the time cost t.
	Iterations uint32
	// Parallelism is the number of lanes p.
	Parallelism uint8
	// SaltLen is the length of the random salt in bytes.
	SaltLen uint32
	// KeyLen is the length of the derived key (the stored hash) in bytes.
	KeyLen uint32
}

// DefaultParams returns the OWASP Password Storage Cheat Sheet recommendation
// for Argon2id: m=19456 KiB (19 MiB), t=2, p=1, with a 16-byte salt and a
// 32-byte derived key.
func DefaultParams() Params {
	return Params{
		MemoryKiB:   19456,
		Iterations:  2,
		Parallelism: 1,
		SaltLen:     16,
		KeyLen:      32,
	}
}

// Verify reports whether p is within the supported range. The returned error
// wraps ErrInvalidParams and names the offending field.
func (p Params) Verify() error {
	switch {
	case p.Parallelism < MinParallelism:
		return fmt.Errorf("%w: parallelism p=%d, must be at least %d", ErrInvalidParams, p.Parallelism, MinParallelism)
	case p.MemoryKiB < MinMemoryPerLaneKiB*uint32(p.Parallelism):
		return fmt.Errorf("%w: memory m=%d KiB, must be at least 8*p = %d KiB", ErrInvalidParams, p.MemoryKiB, MinMemoryPerLaneKiB*uint32(p.Parallelism))
	case p.MemoryKiB > MaxMemoryKiB:
		return fmt.Errorf("%w: memory m=%d KiB, must be at most %d KiB", ErrInvalidParams, p.MemoryKiB, MaxMemoryKiB)
	case p.Iterations < MinIterations:
		return fmt.Errorf("%w: iterations t=%d, must be at least %d", ErrInvalidParams, p.Iterations, MinIterations)
	case p.Iterations > MaxIterations:
		return fmt.Errorf("%w: iterations t=%d, must be at most %d", ErrInvalidParams, p.Iterations, MaxIterations)
	case p.SaltLen < MinSaltLen || p.SaltLen > MaxSaltLen:
		return fmt.Errorf("%w: salt length %d bytes, must be between %d and %d", ErrInvalidParams, p.SaltLen, MinSaltLen, MaxSaltLen)
	case p.KeyLen < MinKeyLen || p.KeyLen > MaxKeyLen:
		return fmt.Errorf("%w: key length %d bytes, must be between %d and %d", ErrInvalidParams, p.KeyLen, MinKeyLen, MaxKeyLen)
	}
	return nil
}
