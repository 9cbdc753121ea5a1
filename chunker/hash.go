package chunker

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/zeebo/blake3"
)

// HashSize is the length in bytes of a content hash (BLAKE3-256).
const HashSize = 32

// hashPrefix names the algorithm in a hash's text form, so that a future
// algorithm can coexist with this one in logs, configs and the wire.
const hashPrefix = "blake3-"

// Hash is the BLAKE3-256 digest of a chunk or a manifest. It is a comparable
// value, usable as a map key, and its zero value means "no hash".
type Hash [HashSize]byte

// Sum returns the BLAKE3-256 hash of data.
func Sum(data []byte) Hash {
	return Hash(blake3.Sum256(data))
}

// IsZero reports whether h is the zero hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns the text form, "blake3-" followed by 64 lowercase hex digits.
func (h Hash) String() string {
	var b [len(hashPrefix) + 2*HashSize]byte
	copy(b[:], hashPrefix)
	hex.Encode(b[len(hashPrefix):], h[:])
	return string(b[:])
}

// Short returns an abbreviated text form for logs ("blake3-ab12cd34…").
func (h Hash) Short() string { return h.String()[:len(hashPrefix)+8] + "…" }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash parses the text form produced by Hash.String.
func ParseHash(s string) (Hash, error) {
	var h Hash
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return h, fmt.Errorf("parse hash %q: missing %q prefix", s, hashPrefix)
	}
	if len(hexPart) != 2*HashSize {
		return h, fmt.Errorf("parse hash %q: want %d hex digits, have %d", s, 2*HashSize, len(hexPart))
	}
	if strings.ToLower(hexPart) != hexPart {
		return h, fmt.Errorf("parse hash %q: hex digits must be lowercase", s)
	}
	if _, err := hex.Decode(h[:], []byte(hexPart)); err != nil {
		return h, fmt.Errorf("parse hash %q: %v", s, err)
	}
	return h, nil
}
