package chunker

import (
	"encoding/binary"
	"slices"

	"github.com/zeebo/blake3"
)

// Ref is one chunk of a file in a manifest: what a peer asks for and what it
// checks the received bytes against.
type Ref struct {
	Hash   Hash
	Length uint32
}

// Manifest is a file's content: the ordered chunk list. The file is the
// concatenation of the chunks.
type Manifest struct {
	Chunks []Ref
}

// Size returns the length of the file the manifest describes.
func (m Manifest) Size() int64 {
	var n int64
	for _, c := range m.Chunks {
		n += int64(c.Length)
	}
	return n
}

// Equal reports whether m and o list the same chunks in the same order.
func (m Manifest) Equal(o Manifest) bool { return slices.Equal(m.Chunks, o.Chunks) }

// manifestContext is the BLAKE3 key-derivation context of manifest hashes.
// Hashing in this mode keeps manifest hashes apart from chunk hashes: no
// file content can have the hash of some manifest by construction.
const manifestContext = "lockstep 2026-01-01 chunker manifest v1"

// manifestHasher is keyed once with manifestContext and never written to:
// each Hash starts from a copy, which costs less than deriving the key
// again.
var manifestHasher = blake3.NewDeriveKey(manifestContext)

// Hash returns the whole-file hash derived from the chunk list: BLAKE3-256 in
// key-derivation mode with context "lockstep 2026-01-01 chunker manifest v1"
// over, for each chunk in order, its 32-byte hash followed by its length as
// 4 bytes little-endian. Each record has a fixed size, so distinct chunk
// lists have distinct encodings. The empty manifest (an empty file) hashes
// the empty string in that mode.
//
// The hash identifies content and chunk boundaries together: it is cheap to
// compute from an index without reading the file, and equal manifests of
// files chunked with the same Params mean equal content.
func (m Manifest) Hash() Hash {
	h := manifestHasher.Clone()
	var rec [HashSize + 4]byte
	for _, c := range m.Chunks {
		copy(rec[:HashSize], c.Hash[:])
		binary.LittleEndian.PutUint32(rec[HashSize:], c.Length)
		h.Write(rec[:])
	}
	var sum Hash
	h.Sum(sum[:0])
	return sum
}
