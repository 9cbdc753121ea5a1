package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"

	"lockstep/chunker"
	"lockstep/conflict"
)

// FileInfo flag bits.
const (
	flagDeleted    = 1 << 0
	flagChunkDelta = 1 << 1 // the chunk list is a ChunkDelta (FeatureChunkDelta)
	knownFileFlags = flagDeleted | flagChunkDelta
)

// ChunkResponse flag bits.
const (
	flagCompressed  = 1 << 0
	knownRespFlags  = flagCompressed
	fixed64Size     = 8
	minVectorEntry  = fixed64Size + 1
	minChunkRefSize = chunker.HashSize + 1
)

// AppendFrame appends m as a complete frame (header and payload) to b. It
// fails, leaving b's contents unchanged, when m is invalid or its payload
// exceeds MaxPayload.
func AppendFrame(b []byte, m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return b, fmt.Errorf("encode %s: %w", m.Type(), Error{Code: CodeProtocol, Message: err.Error()})
	}
	start := len(b)
	b = append(b, byte(m.Type()), 0, 0, 0, 0)
	b = m.appendPayload(b)
	n := len(b) - start - HeaderSize
	if n > MaxPayload {
		return b[:start], fmt.Errorf("encode %s: payload of %d bytes: %w", m.Type(), n, ErrTooLarge)
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(n))
	return b, nil
}

// Decode decodes one payload of type t. The returned message does not alias
// payload except for ChunkResponse.Data, which is a subslice of it. A
// TypeCompressed payload decodes to the message it carries.
func Decode(t Type, payload []byte) (Message, error) { return decode(t, payload, MaxPayload) }

// decode is Decode with a bound on the payload a Compressed frame may
// expand to.
func decode(t Type, payload []byte, max int) (Message, error) {
	if !t.Known() {
		return nil, fmt.Errorf("decode: unknown message type %d: %w", uint8(t), ErrProtocol)
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("decode %s: payload of %d bytes: %w", t, len(payload), ErrTooLarge)
	}
	if t == TypeCompressed {
		return decodeCompressed(payload, max)
	}
	d := decoder{b: payload}
	var m Message
	switch t {
	case TypeHello:
		m = d.hello()
	case TypeIndexUpdate:
		m = d.indexUpdate()
	case TypeConfirm:
		m = d.confirm()
	case TypeChunkRequest:
		m = d.chunkRequest()
	case TypeChunkResponse:
		m = d.chunkResponse(false)
	case TypeBareChunkResponse:
		m = d.chunkResponse(true)
	case TypeChunkBatchRequest:
		m = d.chunkBatchRequest()
	case TypeError:
		m = &Error{Code: Code(d.uint32("code")), Message: d.str("message", MaxMessageLen)}
	case TypePing:
		m = &Ping{Nonce: d.uvarint()}
	case TypePong:
		m = &Pong{Nonce: d.uvarint()}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		var e Error
		if errors.As(d.err, &e) {
			return nil, fmt.Errorf("decode %s: %w", t, d.err)
		}
		return nil, fmt.Errorf("decode %s: %w", t, Error{Code: CodeProtocol, Message: d.err.Error()})
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, Error{Code: CodeProtocol, Message: err.Error()})
	}
	return m, nil
}

// Encoding.

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFixed64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func appendVector(b []byte, v conflict.Vector) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	for _, c := range v {
		b = appendFixed64(b, uint64(c.Node))
		b = binary.AppendUvarint(b, c.Value)
	}
	return b
}

func (m *Hello) appendPayload(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(m.Version))
	b = append(b, m.ID[:]...)
	b = appendString(b, m.Name)
	b = binary.AppendUvarint(b, m.Features)
	b = binary.AppendUvarint(b, uint64(len(m.Folders)))
	for _, f := range m.Folders {
		b = appendString(b, f.ID)
		b = binary.AppendUvarint(b, f.Epoch)
		b = binary.AppendUvarint(b, f.MaxSequence)
		b = binary.AppendUvarint(b, f.PeerEpoch)
		b = binary.AppendUvarint(b, f.PeerSequence)
	}
	return b
}

func (m *IndexUpdate) appendPayload(b []byte) []byte {
	b = appendString(b, m.Folder)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.After)
	b = binary.AppendUvarint(b, m.Through)
	b = binary.AppendUvarint(b, uint64(len(m.Files)))
	for i := range m.Files {
		b = m.Files[i].appendTo(b)
	}
	return b
}

// appendTo encodes f. Layout: flags, path, type, size, mode, mtime (zigzag),
// uid, gid, target, vector, stamp (8 bytes), origin (8 bytes), sequence,
// chunk count, then each chunk's hash (32 bytes) and length. The chunk list
// comes last so that a later version can replace it with a difference
// (flagChunkDelta) without moving any other field.
func (f *FileInfo) appendTo(b []byte) []byte {
	var flags uint64
	if f.Deleted {
		flags |= flagDeleted
	}
	if f.Delta != nil {
		flags |= flagChunkDelta
	}
	b = binary.AppendUvarint(b, flags)
	b = appendString(b, f.Path)
	b = append(b, byte(f.Type))
	b = binary.AppendUvarint(b, f.Size)
	b = binary.AppendUvarint(b, uint64(f.Mode))
	b = binary.AppendVarint(b, f.ModTime)
	b = binary.AppendUvarint(b, uint64(f.UID))
	b = binary.AppendUvarint(b, uint64(f.GID))
	b = appendString(b, f.Target)
	b = appendVector(b, f.Version)
	b = appendFixed64(b, uint64(f.Stamp))
	b = appendFixed64(b, uint64(f.Origin))
	b = binary.AppendUvarint(b, f.Sequence)
	if f.Delta != nil {
		return f.Delta.appendTo(b)
	}
	return appendRefs(b, f.Chunks)
}

func appendRefs(b []byte, refs []chunker.Ref) []byte {
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, c := range refs {
		b = append(b, c.Hash[:]...)
		b = binary.AppendUvarint(b, uint64(c.Length))
	}
	return b
}

// appendTo encodes d: the base hash (32 bytes), the step count, then each
// step: a copy as count<<1|1 and the base index it starts at, a list as
// count<<1 and the chunks (hash and length).
func (d *ChunkDelta) appendTo(b []byte) []byte {
	b = append(b, d.Base[:]...)
	b = binary.AppendUvarint(b, uint64(len(d.Ops)))
	for _, op := range d.Ops {
		if len(op.Refs) == 0 {
			b = binary.AppendUvarint(b, uint64(op.Count)<<1|1)
			b = binary.AppendUvarint(b, uint64(op.From))
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(op.Refs))<<1)
		for _, c := range op.Refs {
			b = append(b, c.Hash[:]...)
			b = binary.AppendUvarint(b, uint64(c.Length))
		}
	}
	return b
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// EncodedSize returns the number of bytes f takes inside an IndexUpdate, so
// that a sender can fill batches up to MaxPayload without encoding twice.
func (f *FileInfo) EncodedSize() int {
	n := 1 /* flags */ + uvarintLen(uint64(len(f.Path))) + len(f.Path) + 1 /* type */
	n += uvarintLen(f.Size) + uvarintLen(uint64(f.Mode))
	n += uvarintLen(uint64(f.ModTime<<1) ^ uint64(f.ModTime>>63))
	n += uvarintLen(uint64(f.UID)) + uvarintLen(uint64(f.GID))
	n += uvarintLen(uint64(len(f.Target))) + len(f.Target)
	n += uvarintLen(uint64(len(f.Version)))
	for _, c := range f.Version {
		n += fixed64Size + uvarintLen(c.Value)
	}
	n += 2*fixed64Size + uvarintLen(f.Sequence)
	if f.Delta != nil {
		return n + f.Delta.encodedSize()
	}
	return n + fullListSize(f.Chunks)
}

func (m *Confirm) appendPayload(b []byte) []byte {
	b = appendString(b, m.Folder)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Through)
	b = binary.AppendUvarint(b, uint64(len(m.Files)))
	for _, c := range m.Files {
		b = appendString(b, c.Path)
		b = appendVector(b, c.Version)
	}
	return b
}

func (m *ChunkRequest) appendPayload(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Folder)
	b = append(b, m.Hash[:]...)
	b = binary.AppendUvarint(b, uint64(m.Length))
	b = appendString(b, m.Path)
	return binary.AppendUvarint(b, m.Offset)
}

func (m *ChunkBatchRequest) appendPayload(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Folder)
	b = binary.AppendUvarint(b, uint64(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = append(b, c.Hash[:]...)
		b = binary.AppendUvarint(b, uint64(c.Length))
		b = appendString(b, c.Path)
		b = binary.AppendUvarint(b, c.Offset)
	}
	return b
}

// appendHead encodes everything of a ChunkResponse but its data, which
// follows to the end of the payload: ID, hash (not in a bare response),
// code and flags.
func (m *ChunkResponse) appendHead(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	if !m.Bare {
		b = append(b, m.Hash[:]...)
	}
	b = binary.AppendUvarint(b, uint64(m.Code))
	var flags uint64
	if m.Compressed {
		flags |= flagCompressed
	}
	return binary.AppendUvarint(b, flags)
}

func (m *ChunkResponse) appendPayload(b []byte) []byte {
	return append(m.appendHead(b), m.Data...)
}

func (m *Error) appendPayload(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(m.Code))
	return appendString(b, m.Message)
}

func (m *Ping) appendPayload(b []byte) []byte { return binary.AppendUvarint(b, m.Nonce) }
func (m *Pong) appendPayload(b []byte) []byte { return binary.AppendUvarint(b, m.Nonce) }

// Decoding.

// decoder reads fields from b. The first failure sticks in err; every later
// read returns a zero value, so decoding code reads straight through and
// checks once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32(what string) uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("%s %d out of range", what, v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) fixed64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < fixed64Size {
		d.fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[fixed64Size:]
	return v
}

func (d *decoder) bytes32() (v [32]byte) {
	if d.err != nil {
		return v
	}
	if len(d.b) < len(v) {
		d.fail("truncated")
		return v
	}
	copy(v[:], d.b)
	d.b = d.b[len(v):]
	return v
}

func (d *decoder) str(what string, max int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.fail("%s of %d bytes exceeds %d", what, n, max)
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated %s", what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads an element count and checks it against the bytes left, given
// that every element takes at least minSize bytes: a small frame cannot make
// the decoder allocate a large slice.
func (d *decoder) count(what string, minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/minSize) {
		d.fail("%d %s cannot fit in %d bytes", n, what, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) vector() conflict.Vector {
	n := d.count("vector entries", minVectorEntry)
	if n == 0 {
		return nil
	}
	v := make(conflict.Vector, n)
	for i := range v {
		v[i] = conflict.Counter{Node: conflict.NodeID(d.fixed64()), Value: d.uvarint()}
	}
	return v
}

func (d *decoder) hello() *Hello {
	m := &Hello{
		Version:  d.uint32("version"),
		ID:       d.bytes32(),
		Name:     d.str("node name", MaxNameLen),
		Features: d.uvarint(),
	}
	if n := d.count("folders", 5); n > 0 {
		m.Folders = make([]HelloFolder, n)
		for i := range m.Folders {
			m.Folders[i] = HelloFolder{
				ID:           d.str("folder ID", MaxNameLen),
				Epoch:        d.uvarint(),
				MaxSequence:  d.uvarint(),
				PeerEpoch:    d.uvarint(),
				PeerSequence: d.uvarint(),
			}
		}
	}
	return m
}

func (d *decoder) indexUpdate() *IndexUpdate {
	m := &IndexUpdate{
		Folder:  d.str("folder ID", MaxNameLen),
		Epoch:   d.uvarint(),
		After:   d.uvarint(),
		Through: d.uvarint(),
	}
	// The smallest FileInfo: flags, path, type, size, mode, mtime, uid,
	// gid, target, one vector entry, stamp, origin, sequence, chunk count.
	const minFileInfo = 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + minVectorEntry + 2*fixed64Size + 1 + 1
	if n := d.count("files", minFileInfo); n > 0 {
		m.Files = make([]FileInfo, n)
		for i := range m.Files {
			d.fileInfo(&m.Files[i])
		}
	}
	return m
}

func (d *decoder) fileInfo(f *FileInfo) {
	flags := d.uvarint()
	if flags&^knownFileFlags != 0 {
		d.fail("unknown file flags %#x", flags)
		return
	}
	f.Deleted = flags&flagDeleted != 0
	f.Path = d.str("path", MaxPathLen)
	f.Type = FileType(d.byte())
	f.Size = d.uvarint()
	f.Mode = d.uint32("mode")
	f.ModTime = d.varint()
	f.UID = d.uint32("uid")
	f.GID = d.uint32("gid")
	f.Target = d.str("symlink target", MaxPathLen)
	f.Version = d.vector()
	f.Stamp = conflict.Stamp(d.fixed64())
	f.Origin = conflict.NodeID(d.fixed64())
	f.Sequence = d.uvarint()
	if flags&flagChunkDelta != 0 {
		f.Delta = d.chunkDelta()
		return
	}
	f.Chunks = d.refs(d.count("chunks", minChunkRefSize))
}

func (d *decoder) refs(n int) []chunker.Ref {
	if n == 0 || d.err != nil {
		return nil
	}
	refs := make([]chunker.Ref, n)
	for i := range refs {
		refs[i] = chunker.Ref{Hash: chunker.Hash(d.bytes32()), Length: d.uint32("chunk length")}
	}
	return refs
}

func (d *decoder) chunkDelta() *ChunkDelta {
	cd := &ChunkDelta{Base: chunker.Hash(d.bytes32())}
	// The smallest step is a copy: two one-byte varints.
	n := d.count("difference steps", 2)
	if n == 0 {
		return cd
	}
	cd.Ops = make([]DeltaOp, n)
	for i := range cd.Ops {
		head := d.uvarint()
		count := head >> 1
		if d.err != nil {
			break
		}
		if head&1 == 1 {
			if count > 1<<32-1 {
				d.fail("difference step copies %d chunks", count)
				break
			}
			cd.Ops[i] = DeltaOp{Count: uint32(count), From: d.uint32("difference base index")}
			continue
		}
		if count == 0 || count > uint64(len(d.b)/minChunkRefSize) {
			d.fail("difference step of %d chunks in %d bytes", count, len(d.b))
			break
		}
		cd.Ops[i] = DeltaOp{Refs: d.refs(int(count))}
	}
	return cd
}

func (d *decoder) confirm() *Confirm {
	m := &Confirm{
		Folder:  d.str("folder ID", MaxNameLen),
		Epoch:   d.uvarint(),
		Through: d.uvarint(),
	}
	if n := d.count("confirmations", 2+minVectorEntry); n > 0 {
		m.Files = make([]Confirmation, n)
		for i := range m.Files {
			m.Files[i] = Confirmation{Path: d.str("path", MaxPathLen), Version: d.vector()}
		}
	}
	return m
}

func (d *decoder) chunkRequest() *ChunkRequest {
	return &ChunkRequest{
		ID:     d.uvarint(),
		Folder: d.str("folder ID", MaxNameLen),
		Hash:   chunker.Hash(d.bytes32()),
		Length: d.uint32("length"),
		Path:   d.str("path", MaxPathLen),
		Offset: d.uvarint(),
	}
}

func (d *decoder) chunkBatchRequest() *ChunkBatchRequest {
	m := &ChunkBatchRequest{ID: d.uvarint(), Folder: d.str("folder ID", MaxNameLen)}
	// The smallest chunk: its hash, a length, an empty path and an offset.
	n := d.count("chunks", chunker.HashSize+3)
	if n > MaxBatchChunks {
		d.fail("chunk batch of %d chunks exceeds %d", n, MaxBatchChunks)
		return m
	}
	if n > 0 {
		m.Chunks = make([]BatchChunk, n)
		for i := range m.Chunks {
			m.Chunks[i] = BatchChunk{
				Hash:   chunker.Hash(d.bytes32()),
				Length: d.uint32("length"),
				Path:   d.str("path", MaxPathLen),
				Offset: d.uvarint(),
			}
		}
	}
	return m
}

func (d *decoder) chunkResponse(bare bool) *ChunkResponse {
	m := &ChunkResponse{ID: d.uvarint(), Bare: bare}
	if !bare {
		m.Hash = chunker.Hash(d.bytes32())
	}
	m.Code = Code(d.uint32("code"))
	flags := d.uvarint()
	if flags&^knownRespFlags != 0 {
		d.fail("unknown response flags %#x", flags)
	}
	if d.err != nil {
		return m
	}
	m.Compressed = flags&flagCompressed != 0
	if len(d.b) > 0 {
		m.Data = d.b
		d.b = nil
	}
	return m
}
