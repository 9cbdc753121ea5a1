package protocol

import (
	"fmt"
	"path"
	"strings"

	"lockstep/chunker"
	"lockstep/conflict"
)

// Version is the protocol version this package speaks. It is carried in
// the TLS ALPN name, so nodes of different versions fail the handshake with
// a clear reason instead of misparsing each other, and again in Hello.
//
// Version 2 keeps version 1's frames and changes how request streams are
// used: a stream carries a sequence of ChunkRequests, each sent once the
// previous one's ChunkResponse has arrived and answered in order, instead
// of one request per stream.
const Version = 2

// ALPN is the TLS application protocol name for Version.
const ALPN = "lockstep/2"

// Limits enforced on both encode and decode.
const (
	HeaderSize    = 5                   // type (1) + payload length (4)
	MaxChunkSize  = 16 << 20            // longest chunk a request may name
	MaxPayload    = MaxChunkSize + 4096 // longest payload: a full chunk plus its response header
	MaxPathLen    = 4096                // bytes in a path or symlink target
	MaxNameLen    = 255                 // bytes in a node name or folder ID
	MaxMessageLen = 4096                // bytes in an Error message
)

// Type identifies a message on the wire. Values never change.
type Type uint8

const (
	TypeHello         Type = 1
	TypeIndexUpdate   Type = 2
	TypeConfirm       Type = 3
	TypeChunkRequest  Type = 4
	TypeChunkResponse Type = 5
	TypeError         Type = 6
	TypePing          Type = 7
	TypePong          Type = 8
	// TypeCompressed carries another message's frame compressed (see
	// CompressFrame); it decodes to that message, never to a type of its
	// own. Sent only to a peer that offers FeatureCompressed.
	TypeCompressed Type = 9
	// TypeBareChunkResponse is a ChunkResponse without its Hash
	// (ChunkResponse.Bare). Sent only to a peer that offers
	// FeatureBareChunkResponse.
	TypeBareChunkResponse Type = 10
	// TypeChunkBatchRequest asks for several chunks at once
	// (ChunkBatchRequest). Sent only to a peer that offers
	// FeatureChunkBatch.
	TypeChunkBatchRequest Type = 11
	typeLimit             Type = 12
)

var typeNames = [...]string{
	TypeHello:             "Hello",
	TypeIndexUpdate:       "IndexUpdate",
	TypeConfirm:           "Confirm",
	TypeChunkRequest:      "ChunkRequest",
	TypeChunkResponse:     "ChunkResponse",
	TypeError:             "Error",
	TypePing:              "Ping",
	TypePong:              "Pong",
	TypeCompressed:        "Compressed",
	TypeBareChunkResponse: "BareChunkResponse",
	TypeChunkBatchRequest: "ChunkBatchRequest",
}

func (t Type) String() string {
	if t > 0 && t < typeLimit {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Known reports whether t is a message type this version understands.
func (t Type) Known() bool { return t > 0 && t < typeLimit }

// Message is a pointer to one of the message types of this package: *Hello,
// *IndexUpdate, *Confirm, *ChunkRequest, *ChunkResponse, *Error, *Ping,
// *Pong. Decoding returns these pointers; type switches match on them.
type Message interface {
	Type() Type
	validate() error
	appendPayload(b []byte) []byte
}

// Feature bits of Hello.Features besides FeatureChunkDelta. Each says what
// the sender accepts; a node uses a feature toward a peer only when the
// peer's Hello offers it, so nodes that do not know a bit keep working.
const (
	// FeatureCompressed: the sender accepts IndexUpdate and Confirm
	// messages compressed in TypeCompressed frames.
	FeatureCompressed uint64 = 1 << 1
	// FeatureBareChunkResponse: the sender accepts chunk responses without
	// the echoed hash (ChunkResponse.Bare).
	FeatureBareChunkResponse uint64 = 1 << 2
	// FeatureChunkBatch: the sender answers ChunkBatchRequests on its
	// request streams.
	FeatureChunkBatch uint64 = 1 << 3
)

// Limits of a ChunkBatchRequest.
const (
	MaxBatchChunks = 128     // chunks one batch may name
	MaxBatchBytes  = 4 << 20 // their lengths added up
)

// Hello is the first message each side sends on a connection's control
// stream: who it is and, per shared folder, where its index stands and how
// far it has received the peer's.
type Hello struct {
	Version  uint32   // the sender's protocol version, Version
	ID       [32]byte // the sender's node ID; must match its certificate
	Name     string   // the sender's node name, for logs
	Features uint64   // optional behaviour the sender understands: Feature* bits
	Folders  []HelloFolder
}

// HelloFolder is the sender's state of one folder it shares with the peer.
type HelloFolder struct {
	ID          string
	Epoch       uint64 // the sender's index epoch, renewed when it rebuilds the index
	MaxSequence uint64 // the highest sequence in the sender's index
	// PeerEpoch and PeerSequence say how far the sender has received the
	// peer's index: everything up to PeerSequence of the peer's epoch
	// PeerEpoch. The peer resends from 0 when its epoch differs.
	PeerEpoch    uint64
	PeerSequence uint64
}

// IndexUpdate announces a batch of the sender's file versions of a folder.
// The batch covers the sender's sequences After+1 … Through: a receiver that
// held After from this sender holds Through once it has applied the batch.
// Files are in increasing sequence order; sequences without a file were
// superseded by later ones.
type IndexUpdate struct {
	Folder  string
	Epoch   uint64
	After   uint64
	Through uint64
	Files   []FileInfo
}

// Confirm tells the origin of versions how far the sender has processed
// them: every update through sequence Through of the receiver's index epoch
// Epoch (0: none stated), and, per file, which version it now holds durably.
type Confirm struct {
	Folder  string
	Epoch   uint64
	Through uint64
	Files   []Confirmation
}

// Confirmation says that the sender durably holds Path at Version.
type Confirmation struct {
	Path    string
	Version conflict.Vector
}

// ChunkRequest asks for one chunk by hash. Path and Offset, when Path is not
// empty, hint where the answering node last saw it.
type ChunkRequest struct {
	ID     uint64 // chosen by the requester, echoed in the response
	Folder string
	Hash   chunker.Hash
	Length uint32 // the chunk's length: 1 … MaxChunkSize
	Path   string
	Offset uint64
}

// ChunkBatchRequest asks for several chunks at once, typically small files
// whole. It is answered on its stream by one ChunkResponse per chunk, in
// the order of Chunks, each carrying the batch's ID; a chunk that cannot be
// served gets its error code without failing the others. The requester
// checks every chunk against the hash it asked for.
type ChunkBatchRequest struct {
	ID     uint64 // chosen by the requester, echoed in every response
	Folder string
	Chunks []BatchChunk // 1 … MaxBatchChunks, at most MaxBatchBytes in all
}

// BatchChunk is one chunk of a ChunkBatchRequest, with the same fields as a
// ChunkRequest: its hash and length, and where the answering node last saw
// it (Path empty: no hint).
type BatchChunk struct {
	Hash   chunker.Hash
	Length uint32
	Path   string
	Offset uint64
}

// ChunkResponse answers a ChunkRequest: with Data when Code is CodeOK,
// otherwise with the error code alone. Compressed Data is a zstd frame that
// decompresses to the requested length.
//
// A Bare response leaves Hash off the wire (TypeBareChunkResponse): the ID
// already names the request it answers, and the requester checks the data
// against the hash it asked for. A decoded bare response has a zero Hash.
type ChunkResponse struct {
	ID         uint64
	Hash       chunker.Hash
	Code       Code
	Compressed bool
	Bare       bool
	Data       []byte
}

// Ping asks the peer to answer with a Pong carrying the same Nonce.
type Ping struct{ Nonce uint64 }

// Pong answers a Ping.
type Pong struct{ Nonce uint64 }

func (Hello) Type() Type        { return TypeHello }
func (IndexUpdate) Type() Type  { return TypeIndexUpdate }
func (Confirm) Type() Type      { return TypeConfirm }
func (ChunkRequest) Type() Type { return TypeChunkRequest }
func (ChunkBatchRequest) Type() Type {
	return TypeChunkBatchRequest
}
func (m ChunkResponse) Type() Type {
	if m.Bare {
		return TypeBareChunkResponse
	}
	return TypeChunkResponse
}
func (Error) Type() Type { return TypeError }
func (Ping) Type() Type  { return TypePing }
func (Pong) Type() Type  { return TypePong }

// FileType is the kind of a file system entry.
type FileType uint8

const (
	File    FileType = 0
	Dir     FileType = 1
	Symlink FileType = 2
)

func (t FileType) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("FileType(%d)", uint8(t))
}

// FileInfo is one version of one path of a folder.
type FileInfo struct {
	Path    string // relative, slash-separated, clean (see ValidPath)
	Type    FileType
	Size    uint64
	Mode    uint32 // permission bits only (0o7777); the type is Type
	ModTime int64  // nanoseconds since the Unix epoch
	UID     uint32
	GID     uint32
	Target  string        // a symlink's target, as stored; empty otherwise
	Chunks  []chunker.Ref // a file's content in order; empty for others
	// Delta, when set, is sent in place of Chunks: the list as a
	// difference from one the receiver holds (see DeltaWindow). A decoded
	// FileInfo with a Delta has no Chunks until DeltaWindow.Resolve.
	Delta   *ChunkDelta
	Version conflict.Vector
	Stamp   conflict.Stamp
	Origin  conflict.NodeID
	Deleted bool
	// Sequence is the sender's local sequence number of this version.
	Sequence uint64
}

// ValidPath reports whether p may name an entry of a folder: not empty, at
// most MaxPathLen bytes, relative, slash-separated and clean (no "." or ".."
// elements, no doubled or trailing slash), without NUL bytes. A path that
// passes cannot escape its folder by itself; symlinks inside the folder are
// the writer's concern.
func ValidPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path of %d bytes exceeds %d", len(p), MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	case p[0] == '/':
		return fmt.Errorf("path %q is absolute", p)
	case path.Clean(p) != p || p == ".":
		return fmt.Errorf("path %q is not clean", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("path %q leaves its folder", p)
	}
	return nil
}

func validName(what, s string, allowEmpty bool) error {
	switch {
	case s == "" && !allowEmpty:
		return fmt.Errorf("empty %s", what)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%s of %d bytes exceeds %d", what, len(s), MaxNameLen)
	}
	return nil
}

func validVector(v conflict.Vector) error {
	if len(v) == 0 {
		return fmt.Errorf("empty version vector")
	}
	if !v.Valid() {
		return fmt.Errorf("version vector %v is not canonical", v)
	}
	return nil
}

func (m *Hello) validate() error {
	if m.Version == 0 {
		return fmt.Errorf("hello: version 0")
	}
	if err := validName("node name", m.Name, true); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	seen := make(map[string]bool, len(m.Folders))
	for _, f := range m.Folders {
		if err := validName("folder ID", f.ID, false); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		if seen[f.ID] {
			return fmt.Errorf("hello: folder %q listed twice", f.ID)
		}
		seen[f.ID] = true
	}
	return nil
}

func (m *IndexUpdate) validate() error {
	if err := validName("folder ID", m.Folder, false); err != nil {
		return fmt.Errorf("index update: %w", err)
	}
	if m.After > m.Through {
		return fmt.Errorf("index update of %q: range %d…%d is reversed", m.Folder, m.After, m.Through)
	}
	prev := m.After
	for i := range m.Files {
		f := &m.Files[i]
		if f.Sequence <= prev || f.Sequence > m.Through {
			return fmt.Errorf("index update of %q: %q has sequence %d, want above %d and at most %d",
				m.Folder, f.Path, f.Sequence, prev, m.Through)
		}
		prev = f.Sequence
		if err := f.Validate(); err != nil {
			return fmt.Errorf("index update of %q: %w", m.Folder, err)
		}
	}
	return nil
}

// Validate reports whether f is a consistent file version: a valid path, a
// known type, permission bits only, a non-empty canonical vector, a
// sequence, and content fitting the type — a file's chunk lengths (each
// 1 … MaxChunkSize) add up to its size; a directory has no content; a
// symlink has a target; a deletion has neither chunks nor target.
func (f *FileInfo) Validate() error {
	if err := ValidPath(f.Path); err != nil {
		return err
	}
	if f.Type > Symlink {
		return fmt.Errorf("%q: unknown file type %d", f.Path, f.Type)
	}
	if f.Mode&^0o7777 != 0 {
		return fmt.Errorf("%q: mode %#o has bits beyond 07777", f.Path, f.Mode)
	}
	if err := validVector(f.Version); err != nil {
		return fmt.Errorf("%q: %w", f.Path, err)
	}
	if f.Sequence == 0 {
		return fmt.Errorf("%q: sequence 0", f.Path)
	}
	if len(f.Target) > MaxPathLen || strings.IndexByte(f.Target, 0) >= 0 {
		return fmt.Errorf("%q: invalid symlink target", f.Path)
	}
	if f.Deleted || f.Type != File {
		if len(f.Chunks) > 0 || f.Delta != nil {
			return fmt.Errorf("%q: a deleted entry or a %s has no chunks", f.Path, f.Type)
		}
	}
	if f.Delta != nil {
		if err := f.Delta.validate(); err != nil {
			return fmt.Errorf("%q: chunk-list difference: %w", f.Path, err)
		}
	}
	switch {
	case f.Deleted:
		if f.Target != "" {
			return fmt.Errorf("%q: a deleted entry has no symlink target", f.Path)
		}
	case f.Type == File:
		if f.Target != "" {
			return fmt.Errorf("%q: a file has no symlink target", f.Path)
		}
		if f.Delta != nil && f.Chunks == nil {
			break // the sizes are checked once the list is resolved
		}
		var sum uint64
		for _, c := range f.Chunks {
			if c.Length == 0 || c.Length > MaxChunkSize {
				return fmt.Errorf("%q: chunk %s has length %d, want 1…%d", f.Path, c.Hash.Short(), c.Length, MaxChunkSize)
			}
			sum += uint64(c.Length)
		}
		if sum != f.Size {
			return fmt.Errorf("%q: chunks add up to %d bytes, size is %d", f.Path, sum, f.Size)
		}
	case f.Type == Dir:
		if f.Size != 0 || f.Target != "" {
			return fmt.Errorf("%q: a directory has no size or target", f.Path)
		}
	case f.Type == Symlink:
		if f.Target == "" {
			return fmt.Errorf("%q: symlink without a target", f.Path)
		}
	}
	return nil
}

func (m *Confirm) validate() error {
	if err := validName("folder ID", m.Folder, false); err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	for _, c := range m.Files {
		if err := ValidPath(c.Path); err != nil {
			return fmt.Errorf("confirm of %q: %w", m.Folder, err)
		}
		if err := validVector(c.Version); err != nil {
			return fmt.Errorf("confirm of %q: %q: %w", m.Folder, c.Path, err)
		}
	}
	return nil
}

func (m *ChunkRequest) validate() error {
	if err := validName("folder ID", m.Folder, false); err != nil {
		return fmt.Errorf("chunk request: %w", err)
	}
	if m.Length == 0 || m.Length > MaxChunkSize {
		return fmt.Errorf("chunk request for %s: length %d, want 1…%d", m.Hash.Short(), m.Length, MaxChunkSize)
	}
	if m.Path != "" {
		if err := ValidPath(m.Path); err != nil {
			return fmt.Errorf("chunk request for %s: hint: %w", m.Hash.Short(), err)
		}
	} else if m.Offset != 0 {
		return fmt.Errorf("chunk request for %s: offset hint without a path", m.Hash.Short())
	}
	return nil
}

func (m *ChunkBatchRequest) validate() error {
	if err := validName("folder ID", m.Folder, false); err != nil {
		return fmt.Errorf("chunk batch request: %w", err)
	}
	if len(m.Chunks) == 0 || len(m.Chunks) > MaxBatchChunks {
		return fmt.Errorf("chunk batch request of %d chunks, want 1…%d", len(m.Chunks), MaxBatchChunks)
	}
	var total uint64
	for _, c := range m.Chunks {
		req := ChunkRequest{Folder: m.Folder, Hash: c.Hash, Length: c.Length, Path: c.Path, Offset: c.Offset}
		if err := req.validate(); err != nil {
			return fmt.Errorf("chunk batch request: %w", err)
		}
		total += uint64(c.Length)
	}
	if total > MaxBatchBytes {
		return fmt.Errorf("chunk batch request for %d bytes exceeds %d", total, MaxBatchBytes)
	}
	return nil
}

func (m *ChunkResponse) validate() error {
	if m.Code == CodeOK {
		if len(m.Data) == 0 || len(m.Data) > MaxChunkSize {
			return fmt.Errorf("chunk response for %s: %d bytes of data, want 1…%d", m.Hash.Short(), len(m.Data), MaxChunkSize)
		}
		return nil
	}
	if len(m.Data) > 0 || m.Compressed {
		return fmt.Errorf("chunk response for %s: error %q with data", m.Hash.Short(), m.Code)
	}
	return nil
}

func (m *Error) validate() error {
	if m.Code == CodeOK {
		return fmt.Errorf("error message with code 0")
	}
	if len(m.Message) > MaxMessageLen {
		return fmt.Errorf("error message of %d bytes exceeds %d", len(m.Message), MaxMessageLen)
	}
	return nil
}

func (*Ping) validate() error { return nil }
func (*Pong) validate() error { return nil }
