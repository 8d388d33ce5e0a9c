package signing

import (
	"crypto/ed25519"
	"testing"
)

func BenchmarkCanonical(b *testing.B) {
	in := []byte(deviceKeysJSON)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonical(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCanonicalAlreadyCanonical measures the common verification case
// of input that is already canonical.
func BenchmarkCanonicalAlreadyCanonical(b *testing.B) {
	in, err := Canonical([]byte(deviceKeysJSON))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonical(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJSON(b *testing.B) {
	priv := specKey(b)
	in := []byte(deviceKeysJSON)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignJSON("example.org", "ed25519:1", priv, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyJSON(b *testing.B) {
	priv := specKey(b)
	pub := priv.Public().(ed25519.PublicKey)
	in, err := SignJSON("example.org", "ed25519:1", priv, []byte(deviceKeysJSON))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyJSON("example.org", "ed25519:1", pub, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignRequest(b *testing.B) {
	priv := specKey(b)
	body := []byte(deviceKeysJSON)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignRequest("origin.example", "dest.example", "ed25519:1", priv, "PUT", "/_matrix/federation/v1/send/1", body); err != nil {
			b.Fatal(err)
		}
	}
}
