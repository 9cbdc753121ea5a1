package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"

	"lockstep/conflict"
)

// NodeID identifies a node: the SHA-256 digest of its certificate's
// SubjectPublicKeyInfo. It is a comparable value, usable as a map key; the
// zero value means "no node".
type NodeID [32]byte

// Text form: the 32 bytes in unpadded base32 (52 characters) cut into four
// groups of 13, each followed by a Luhn mod 32 check character, printed as
// eight dash-separated blocks of seven (a checked group is two blocks).
const (
	groupData  = 13
	groupCount = 4
	blockLen   = 7
	checkedLen = groupCount * (groupData + 1) // 56
)

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// FromSPKI returns the ID of the node owning the public key whose DER-encoded
// SubjectPublicKeyInfo is spki.
func FromSPKI(spki []byte) NodeID { return NodeID(sha256.Sum256(spki)) }

// FromCertificate returns the ID of the node that owns cert's key.
func FromCertificate(cert *x509.Certificate) NodeID { return FromSPKI(cert.RawSubjectPublicKeyInfo) }

// IsZero reports whether id is the zero ID.
func (id NodeID) IsZero() bool { return id == NodeID{} }

// Short returns the 64-bit form used in version vectors: the first 8 bytes,
// big-endian. Two nodes of one cluster collide with probability ~n²/2⁶⁵.
func (id NodeID) Short() conflict.NodeID {
	return conflict.NodeID(binary.BigEndian.Uint64(id[:8]))
}

// Compare orders IDs bytewise; it breaks ties that every node must break the
// same way (which of two simultaneous connections survives).
func (id NodeID) Compare(other NodeID) int {
	for i := range id {
		if id[i] != other[i] {
			if id[i] < other[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// String returns the checked text form, e.g.
// "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD".
func (id NodeID) String() string {
	data := b32.EncodeToString(id[:])
	var checked [checkedLen]byte
	for g := range groupCount {
		part := data[g*groupData : (g+1)*groupData]
		copy(checked[g*(groupData+1):], part)
		checked[g*(groupData+1)+groupData] = luhn32(part)
	}
	var b strings.Builder
	b.Grow(checkedLen + checkedLen/blockLen - 1)
	for i := 0; i < checkedLen; i += blockLen {
		if i > 0 {
			b.WriteByte('-')
		}
		b.Write(checked[i : i+blockLen])
	}
	return b.String()
}

// Abbrev returns the first block of the text form, enough to tell the
// nodes of one cluster apart in logs.
func (id NodeID) Abbrev() string { return id.String()[:blockLen] }

// MarshalText implements encoding.TextMarshaler.
func (id NodeID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a configuration file
// can hold the text form directly.
func (id *NodeID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// Parse parses the text form printed by String. Letters may be of either
// case; dashes and spaces are ignored, so an ID may be pasted with or without
// its grouping. Every check character must match: an error names the group
// that holds the mistake.
func Parse(s string) (NodeID, error) {
	var id NodeID
	clean := make([]byte, 0, checkedLen)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == ' ':
			continue
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case 'A' <= c && c <= 'Z', '2' <= c && c <= '7':
		default:
			return id, fmt.Errorf("parse node ID %q: invalid character %q at offset %d (base32 uses A-Z and 2-7)", s, c, i)
		}
		clean = append(clean, c)
	}
	if len(clean) != checkedLen {
		return id, fmt.Errorf("parse node ID %q: want %d characters without dashes, have %d", s, checkedLen, len(clean))
	}
	data := make([]byte, 0, groupCount*groupData)
	for g := range groupCount {
		grp := clean[g*(groupData+1) : (g+1)*(groupData+1)]
		part := string(grp[:groupData])
		if luhn32(part) != grp[groupData] {
			return id, fmt.Errorf("parse node ID %q: check character of group %d (%s-%s) does not match: the ID is mistyped in that group",
				s, g+1, grp[:blockLen], grp[blockLen:])
		}
		data = append(data, part...)
	}
	n, err := b32.Decode(id[:], data)
	if err != nil || n != len(id) {
		return NodeID{}, fmt.Errorf("parse node ID %q: not a valid encoding", s)
	}
	// 52 base32 characters carry 260 bits; the last 4 must be zero so
	// that every ID has exactly one text form.
	if b32.EncodeToString(id[:]) != string(data) {
		return NodeID{}, fmt.Errorf("parse node ID %q: not a canonical encoding (last group's final character is wrong)", s)
	}
	return id, nil
}

// luhn32 returns the Luhn mod 32 check character of s, whose characters are
// all in alphabet. It detects every single-character substitution and most
// transpositions of adjacent characters.
func luhn32(s string) byte {
	const n = len(alphabet)
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		addend := factor * strings.IndexByte(alphabet, s[i])
		factor = 3 - factor
		sum += addend/n + addend%n
	}
	return alphabet[(n-sum%n)%n]
}
