package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
)

// Type is the kind of a file system entry. The values are those of the
// wire protocol, so a record converts to an announcement field by field.
type Type uint8

const (
	File    Type = 0
	Dir     Type = 1
	Symlink Type = 2
)

func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Record is one version of one path of a folder, as this node holds it.
type Record struct {
	// Path is relative to the folder root, slash-separated and clean. It is
	// the record's key and is not stored in the encoded value.
	Path string
	Type Type
	Size int64  // a file's length in bytes; 0 for the others
	Mode uint32 // permission bits with setuid, setgid and sticky (0o7777)
	// MTime is the modification time in nanoseconds since the Unix epoch.
	MTime int64
	// Inode and Device identify the on-disk object this record was made
	// from. They are local: the quick check compares them to skip reading
	// a file, and they are never sent to peers.
	Inode, Device uint64
	UID, GID      uint32
	Target        string           // a live symlink's target; empty otherwise
	Manifest      chunker.Manifest // a live file's content; empty otherwise
	Version       conflict.Vector
	Stamp         conflict.Stamp
	Origin        conflict.NodeID
	Deleted       bool // a tombstone: the path was removed
	// Sequence is this node's local sequence number of the version. Put
	// assigns it; it is unique within a folder and grows with every write.
	Sequence uint64
}

// ModTime returns MTime as a time.Time.
func (r *Record) ModTime() time.Time { return time.Unix(0, r.MTime) }

// MaxPathLen bounds a record's path, as Linux bounds a path.
const MaxPathLen = 4096

// maxRecordSize bounds an encoded record: a manifest of 64 MiB describes a
// file of about 140 TB with the default chunk sizes. The bound keeps one
// value well inside a value-log file (valueLogFileSize).
const maxRecordSize = 64 << 20

// ValidPath reports whether p can be a record's path: non-empty, at most
// MaxPathLen bytes, relative, clean, slash-separated, no NUL.
func ValidPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path of %d bytes exceeds %d", len(p), MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	case p[0] == '/':
		return fmt.Errorf("path %q is absolute", p)
	case p == "." || path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("path %q leaves its folder", p)
	}
	return nil
}

// Validate reports whether r is a consistent record, apart from its
// Sequence, which Put assigns: a valid path, a known type, permission bits
// only, a non-empty canonical version vector, and content that fits the
// type. A live file's chunk lengths (each at least 1) add up to its size; a
// directory has no size, chunks or target; a live symlink has a target and
// no chunks; a tombstone has neither chunks nor target.
func (r *Record) Validate() error {
	if err := ValidPath(r.Path); err != nil {
		return err
	}
	switch {
	case r.Type > Symlink:
		return fmt.Errorf("%q: unknown type %d", r.Path, r.Type)
	case r.Mode&^0o7777 != 0:
		return fmt.Errorf("%q: mode %#o has bits beyond 07777", r.Path, r.Mode)
	case r.Size < 0:
		return fmt.Errorf("%q: negative size %d", r.Path, r.Size)
	case len(r.Version) == 0:
		return fmt.Errorf("%q: empty version vector", r.Path)
	case !r.Version.Valid():
		return fmt.Errorf("%q: version vector %v is not canonical", r.Path, r.Version)
	case len(r.Target) > MaxPathLen || strings.IndexByte(r.Target, 0) >= 0:
		return fmt.Errorf("%q: invalid symlink target", r.Path)
	case (r.Deleted || r.Type != File) && len(r.Manifest.Chunks) > 0:
		return fmt.Errorf("%q: a tombstone or a %s has no chunks", r.Path, r.Type)
	case (r.Deleted || r.Type != Symlink) && r.Target != "":
		return fmt.Errorf("%q: only a live symlink has a target", r.Path)
	case !r.Deleted && r.Type == Symlink && r.Target == "":
		return fmt.Errorf("%q: symlink without a target", r.Path)
	case r.Type == Dir && r.Size != 0:
		return fmt.Errorf("%q: a directory has no size", r.Path)
	}
	if r.Type == File && !r.Deleted {
		var sum int64
		for _, c := range r.Manifest.Chunks {
			if c.Length == 0 {
				return fmt.Errorf("%q: empty chunk %s", r.Path, c.Hash.Short())
			}
			sum += int64(c.Length)
		}
		if sum != r.Size {
			return fmt.Errorf("%q: chunks add up to %d bytes, size is %d", r.Path, sum, r.Size)
		}
	}
	return nil
}

// recordVersion is the first byte of every encoded record. A decoder that
// meets another value refuses the record rather than guessing.
const recordVersion = 1

const flagDeleted = 1 << 0

// appendRecord appends r's encoding, without the path, to b:
//
//	version  1 byte (recordVersion)
//	type     1 byte
//	flags    1 byte (bit 0: deleted)
//	size, mode                     uvarint
//	mtime                          varint
//	inode, device, uid, gid        uvarint
//	sequence, stamp                uvarint
//	origin                         8 bytes big-endian
//	vector   uvarint n, n × (node 8 bytes big-endian, value uvarint)
//	target   uvarint length, bytes
//	chunks   uvarint n, n × (hash 32 bytes, length uvarint)
//
// Node ids are random 64-bit values, so fixed 8 bytes beat a uvarint.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, recordVersion, byte(r.Type), 0)
	if r.Deleted {
		b[len(b)-1] |= flagDeleted
	}
	b = binary.AppendUvarint(b, uint64(r.Size))
	b = binary.AppendUvarint(b, uint64(r.Mode))
	b = binary.AppendVarint(b, r.MTime)
	b = binary.AppendUvarint(b, r.Inode)
	b = binary.AppendUvarint(b, r.Device)
	b = binary.AppendUvarint(b, uint64(r.UID))
	b = binary.AppendUvarint(b, uint64(r.GID))
	b = binary.AppendUvarint(b, r.Sequence)
	b = binary.AppendUvarint(b, uint64(r.Stamp))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Origin))
	b = appendVector(b, r.Version)
	b = binary.AppendUvarint(b, uint64(len(r.Target)))
	b = append(b, r.Target...)
	return appendRefs(b, r.Manifest.Chunks)
}

func appendVector(b []byte, v conflict.Vector) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	for _, c := range v {
		b = binary.BigEndian.AppendUint64(b, uint64(c.Node))
		b = binary.AppendUvarint(b, c.Value)
	}
	return b
}

func appendRefs(b []byte, refs []chunker.Ref) []byte {
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, c := range refs {
		b = append(b, c.Hash[:]...)
		b = binary.AppendUvarint(b, uint64(c.Length))
	}
	return b
}

// decodeRecordAt decodes the record of path in folder from its stored
// value. Its errors wrap ErrCorrupt and name the folder and path.
func decodeRecordAt(folder, path string, v []byte) (Record, error) {
	rec, err := decodeRecord(path, v)
	if err != nil {
		return rec, fmt.Errorf("index: folder %q, record %q: %w: %v", folder, path, ErrCorrupt, err)
	}
	return rec, nil
}

// decodeRecord decodes a value written by appendRecord for the record at
// path. It never panics, and what it returns passes Validate with a
// non-zero Sequence.
func decodeRecord(path string, b []byte) (Record, error) {
	r := Record{Path: path}
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != recordVersion {
		return r, fmt.Errorf("unknown record version %d", v)
	}
	r.Type = Type(d.byte("type"))
	flags := d.byte("flags")
	if d.err == nil && flags&^flagDeleted != 0 {
		return r, fmt.Errorf("unknown flags %#x", flags)
	}
	r.Deleted = flags&flagDeleted != 0
	r.Size = int64(d.uvarintMax("size", math.MaxInt64))
	r.Mode = uint32(d.uvarintMax("mode", 0o7777))
	r.MTime = d.varint("mtime")
	r.Inode = d.uvarint("inode")
	r.Device = d.uvarint("device")
	r.UID = uint32(d.uvarintMax("uid", math.MaxUint32))
	r.GID = uint32(d.uvarintMax("gid", math.MaxUint32))
	r.Sequence = d.uvarint("sequence")
	r.Stamp = conflict.Stamp(d.uvarint("stamp"))
	r.Origin = conflict.NodeID(d.uint64("origin"))
	r.Version = d.vector()
	r.Target = string(d.bytes("target", MaxPathLen))
	r.Manifest.Chunks = d.refs()
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return r, d.err
	}
	if r.Sequence == 0 {
		return r, errors.New("sequence 0")
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// decoder reads the encodings of this package. The first error sticks and
// every later read returns zero values, so a decode function reads all its
// fields and checks once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or malformed %s", what)
	}
}

func (d *decoder) byte(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint64(what string) uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	// A final zero byte after the first would be an overlong encoding:
	// refused, so that every value has one encoding.
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarintMax(what string, limit uint64) uint64 {
	v := d.uvarint(what)
	if d.err == nil && v > limit {
		d.err = fmt.Errorf("%s %d exceeds %d", what, v, limit)
		return 0
	}
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most limit bytes. The
// result aliases the input.
func (d *decoder) bytes(what string, limit int) []byte {
	n := d.uvarintMax(what, uint64(limit))
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail(what)
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

// count reads an element count and checks that the input can hold that
// many elements of at least minSize bytes, so corrupt counts cannot cause a
// huge allocation.
func (d *decoder) count(what string, minSize int) int {
	n := d.uvarint(what)
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.err = fmt.Errorf("%s count %d exceeds the %d bytes left", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) vector() conflict.Vector {
	n := d.count("vector", 9)
	if d.err != nil || n == 0 {
		return nil
	}
	v := make(conflict.Vector, n)
	for i := range v {
		v[i].Node = conflict.NodeID(d.uint64("vector node"))
		v[i].Value = d.uvarint("vector value")
	}
	if d.err == nil && !v.Valid() {
		d.err = fmt.Errorf("version vector %v is not canonical", v)
	}
	return v
}

func (d *decoder) refs() []chunker.Ref {
	n := d.count("chunks", chunker.HashSize+1)
	if d.err != nil || n == 0 {
		return nil
	}
	refs := make([]chunker.Ref, n)
	for i := range refs {
		if len(d.b) < chunker.HashSize {
			d.fail("chunk hash")
			return nil
		}
		copy(refs[i].Hash[:], d.b)
		d.b = d.b[chunker.HashSize:]
		refs[i].Length = uint32(d.uvarintMax("chunk length", math.MaxUint32))
	}
	return refs
}
