package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lockstep/chunker"
	"lockstep/conflict"
)

var update = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzDecode seeds from the sample messages")

func vec(pairs ...uint64) conflict.Vector {
	var v conflict.Vector
	for i := 0; i < len(pairs); i += 2 {
		v = append(v, conflict.Counter{Node: conflict.NodeID(pairs[i]), Value: pairs[i+1]})
	}
	return v
}

func sampleFile() FileInfo {
	return FileInfo{
		Path: "wp-content/uploads/2026/11/photo.jpg", Type: File, Size: 70000,
		Mode: 0o644, ModTime: 1795000000123456789, UID: 33, GID: 33,
		Chunks: []chunker.Ref{
			{Hash: chunker.Sum([]byte("a")), Length: 65536},
			{Hash: chunker.Sum([]byte("b")), Length: 4464},
		},
		Version: vec(0x0102030405060708, 3, 0xfedcba9876543210, 1),
		Stamp:   conflict.MakeStamp(1795000000123, 2), Origin: 0x0102030405060708,
		Sequence: 41,
	}
}

// samples holds a valid message of every type; the round-trip tests and the
// fuzz seed corpus are built from it.
func samples() []Message {
	f := sampleFile()
	dir := FileInfo{Path: "wp-content", Type: Dir, Mode: 0o755, ModTime: -5, Version: vec(7, 1), Origin: 7, Sequence: 42}
	link := FileInfo{Path: "current", Type: Symlink, Size: 9, Mode: 0o777, Target: "../v2/www", Version: vec(7, 2), Sequence: 43}
	gone := FileInfo{Path: "old.html", Type: File, Deleted: true, Version: vec(7, 3, 9, 1), Sequence: 44}
	diffed := FileInfo{Path: "big.bin", Type: File, Size: 1 << 30, Mode: 0o600, Version: vec(7, 4), Sequence: 46,
		Delta: &ChunkDelta{Base: chunker.Sum([]byte("base")), Ops: []DeltaOp{
			{Refs: []chunker.Ref{{Hash: chunker.Sum([]byte("c")), Length: 100}}},
			{From: 1, Count: 4000},
		}}}
	var id [32]byte
	for i := range id {
		id[i] = byte(i * 7)
	}
	return []Message{
		&Hello{Version: Version, ID: id, Name: "web1", Folders: []HelloFolder{
			{ID: "docroot", Epoch: 0xdeadbeef, MaxSequence: 44, PeerEpoch: 17, PeerSequence: 12},
			{ID: "sessions", Epoch: 1},
		}},
		&Hello{Version: Version, ID: id},
		&IndexUpdate{Folder: "docroot", Epoch: 0xdeadbeef, After: 40, Through: 45, Files: []FileInfo{f, dir, link, gone}},
		&IndexUpdate{Folder: "docroot", Epoch: 1, After: 45, Through: 45},
		&Confirm{Folder: "docroot", Epoch: 17, Through: 12, Files: []Confirmation{{Path: f.Path, Version: f.Version}}},
		&Confirm{Folder: "docroot", Through: 3},
		&ChunkRequest{ID: 1, Folder: "docroot", Hash: f.Chunks[0].Hash, Length: 65536, Path: f.Path, Offset: 0},
		&ChunkRequest{ID: 1 << 40, Folder: "docroot", Hash: f.Chunks[1].Hash, Length: 4464, Path: f.Path, Offset: 65536},
		&ChunkResponse{ID: 1, Hash: f.Chunks[0].Hash, Data: []byte("raw chunk bytes")},
		&ChunkResponse{ID: 2, Hash: f.Chunks[0].Hash, Compressed: true, Data: []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}},
		&ChunkResponse{ID: 3, Hash: f.Chunks[1].Hash, Code: CodeNotFound},
		&Error{Code: CodeVersion, Message: "peer speaks version 2"},
		&Ping{Nonce: 99},
		&Pong{Nonce: 99},
		&IndexUpdate{Folder: "docroot", Epoch: 1, After: 45, Through: 46, Files: []FileInfo{diffed}},
		&ChunkResponse{ID: 4, Bare: true, Data: []byte("bare chunk bytes")},
		&ChunkResponse{ID: 5, Bare: true, Code: CodeBusy},
		&ChunkBatchRequest{ID: 6, Folder: "docroot", Chunks: []BatchChunk{
			{Hash: f.Chunks[0].Hash, Length: 65536, Path: f.Path},
			{Hash: f.Chunks[1].Hash, Length: 4464, Path: f.Path, Offset: 65536},
			{Hash: chunker.Sum([]byte("unhinted")), Length: 8},
		}},
	}
}

func TestRoundTripOverPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	msgs := samples()
	errc := make(chan error, 1)
	go func() {
		w := NewWriter(a)
		for _, m := range msgs {
			if err := w.WriteMessage(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- a.Close()
	}()
	r := NewReader(b, 0)
	expectMessages(t, r, msgs)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestByteCounters(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, m := range samples() {
		if err := w.WriteMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	if w.BytesWritten() != int64(buf.Len()) {
		t.Fatalf("BytesWritten = %d, wrote %d", w.BytesWritten(), buf.Len())
	}
	total := buf.Len()
	r := NewReader(&buf, 0)
	for {
		if _, err := r.ReadMessage(); err != nil {
			break
		}
	}
	if r.BytesRead() != int64(total) {
		t.Fatalf("BytesRead = %d, want %d", r.BytesRead(), total)
	}
}

// TestAppendFrameMatchesWriter: the two encoders must agree, including the
// ChunkResponse path that writes the data separately.
func TestAppendFrameMatchesWriter(t *testing.T) {
	for _, m := range samples() {
		var buf bytes.Buffer
		if err := NewWriter(&buf).WriteMessage(m); err != nil {
			t.Fatal(err)
		}
		frame, err := AppendFrame([]byte("prefix"), m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frame[6:], buf.Bytes()) || string(frame[:6]) != "prefix" {
			t.Fatalf("%s: AppendFrame and Writer disagree", m.Type())
		}
	}
}

func TestBareResponseLeavesOutTheHash(t *testing.T) {
	r := &ChunkResponse{ID: 300, Hash: chunker.Sum([]byte("x")), Data: []byte("x")}
	full, _ := AppendFrame(nil, r)
	r.Bare = true
	bare, _ := AppendFrame(nil, r)
	if len(full)-len(bare) != chunker.HashSize || Type(bare[0]) != TypeBareChunkResponse {
		t.Fatalf("bare response: %d bytes of type %d, full %d", len(bare), bare[0], len(full))
	}
	m, err := Decode(TypeBareChunkResponse, bare[HeaderSize:])
	if got := m.(*ChunkResponse); err != nil || got.Hash != (chunker.Hash{}) || !got.Bare || got.ID != 300 || string(got.Data) != "x" {
		t.Fatalf("decoded %+v, %v", m, err)
	}
}

type recordingWriter struct{ writes [][]byte }

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

func TestWriterDoesNotCopyChunkData(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 64<<10)
	var rw recordingWriter
	err := NewWriter(&rw).WriteMessage(&ChunkResponse{ID: 1, Hash: chunker.Sum(data), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if len(rw.writes) != 2 || &rw.writes[1][0] != &data[0] || len(rw.writes[1]) != len(data) {
		t.Fatalf("chunk data was not written from the caller's slice (%d writes)", len(rw.writes))
	}
}

// TestWriteChunkResponseOneWrite: with room before the data, a chunk
// response goes out in one write from the caller's buffer, the same bytes
// WriteMessage writes; without it, or with data elsewhere, as WriteMessage.
func TestWriteChunkResponseOneWrite(t *testing.T) {
	payload := bytes.Repeat([]byte{9}, 64<<10)
	for _, c := range []struct {
		name   string
		room   int
		bare   bool
		alias  bool
		writes int
	}{
		{"bare", ResponseRoom, true, true, 1},
		{"with hash", ResponseRoom, false, true, 1},
		{"room for a bare head only", HeaderSize + 5, true, true, 1},
		{"too little room", HeaderSize + 4, true, true, 2},
		{"data elsewhere", ResponseRoom, true, false, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			frame := make([]byte, c.room+len(payload))
			copy(frame[c.room:], payload)
			r := &ChunkResponse{ID: 70000, Hash: chunker.Sum(payload), Bare: c.bare, Data: frame[c.room:]}
			if !c.alias {
				r.Data = slices.Clone(payload)
			}
			var want bytes.Buffer
			if err := NewWriter(&want).WriteMessage(r); err != nil {
				t.Fatal(err)
			}
			var rw recordingWriter
			w := NewWriter(&rw)
			if err := w.WriteChunkResponse(r, frame, c.room); err != nil {
				t.Fatal(err)
			}
			if len(rw.writes) != c.writes {
				t.Fatalf("%d writes, want %d", len(rw.writes), c.writes)
			}
			if got := bytes.Join(rw.writes, nil); !bytes.Equal(got, want.Bytes()) || w.BytesWritten() != int64(want.Len()) {
				t.Fatalf("wrote %d bytes (counted %d), not the %d WriteMessage writes", len(got), w.BytesWritten(), want.Len())
			}
			if c.writes == 1 && &rw.writes[0][len(rw.writes[0])-1] != &frame[len(frame)-1] {
				t.Fatal("the frame was copied, not written from the caller's buffer")
			}
			m, err := NewReader(bytes.NewReader(want.Bytes()), 1<<20).ReadMessage()
			if got, ok := m.(*ChunkResponse); err != nil || !ok || got.ID != 70000 || !bytes.Equal(got.Data, payload) {
				t.Fatalf("read back %v, %v", m, err)
			}
		})
	}
	var rw recordingWriter
	if err := NewWriter(&rw).WriteChunkResponse(&ChunkResponse{ID: 1}, make([]byte, ResponseRoom), ResponseRoom); err == nil {
		t.Fatal("an OK response without data was written")
	}
}

func TestReaderChunkDataNotReused(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteMessage(&ChunkResponse{ID: 1, Data: []byte("first")})
	w.WriteMessage(&Ping{Nonce: 1})
	w.WriteMessage(&ChunkResponse{ID: 2, Data: []byte("second")})
	r := NewReader(&buf, 0)
	m1, _ := r.ReadMessage()
	r.ReadMessage()
	r.ReadMessage()
	if got := string(m1.(*ChunkResponse).Data); got != "first" {
		t.Fatalf("first response's data changed to %q by later reads", got)
	}
}

func TestReadMessageInto(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteMessage(&ChunkResponse{ID: 1, Data: []byte("fits")})
	w.WriteMessage(&ChunkResponse{ID: 2, Data: bytes.Repeat([]byte("x"), 100)})
	w.WriteMessage(&Ping{Nonce: 3})
	r := NewReader(&buf, 0)
	mine := make([]byte, 0, 64)
	m, err := r.ReadMessageInto(mine)
	if err != nil {
		t.Fatal(err)
	}
	d := m.(*ChunkResponse).Data
	if string(d) != "fits" || &mine[:cap(mine)][cap(mine)-1] != &d[:cap(d)][cap(d)-1] {
		t.Fatal("a payload that fits was not read into the caller's buffer")
	}
	m, err = r.ReadMessageInto(mine)
	if err != nil || len(m.(*ChunkResponse).Data) != 100 {
		t.Fatalf("a payload larger than the buffer: %v", err)
	}
	if m, err := r.ReadMessageInto(mine); err != nil || m.(*Ping).Nonce != 3 {
		t.Fatalf("other messages: %v %v", m, err)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	f := sampleFile()
	mod := func(change func(*FileInfo)) Message {
		g := f
		g.Chunks = append([]chunker.Ref(nil), f.Chunks...)
		change(&g)
		return &IndexUpdate{Folder: "d", After: 0, Through: 100, Files: []FileInfo{g}}
	}
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"empty path", mod(func(g *FileInfo) { g.Path = "" }), "empty path"},
		{"absolute", mod(func(g *FileInfo) { g.Path = "/etc/passwd" }), "absolute"},
		{"dotdot", mod(func(g *FileInfo) { g.Path = "../x" }), "leaves"},
		{"bare dotdot", mod(func(g *FileInfo) { g.Path = ".." }), "leaves"},
		{"inner dotdot", mod(func(g *FileInfo) { g.Path = "a/../../b" }), "not clean"},
		{"dot", mod(func(g *FileInfo) { g.Path = "." }), "not clean"},
		{"double slash", mod(func(g *FileInfo) { g.Path = "a//b" }), "not clean"},
		{"trailing slash", mod(func(g *FileInfo) { g.Path = "a/" }), "not clean"},
		{"nul", mod(func(g *FileInfo) { g.Path = "a\x00b" }), "NUL"},
		{"long path", mod(func(g *FileInfo) { g.Path = strings.Repeat("a", MaxPathLen+1) }), "exceeds"},
		{"empty vector", mod(func(g *FileInfo) { g.Version = nil }), "empty version vector"},
		{"unsorted vector", mod(func(g *FileInfo) { g.Version = vec(9, 1, 3, 1) }), "not canonical"},
		{"zero counter", mod(func(g *FileInfo) { g.Version = vec(3, 0) }), "not canonical"},
		{"size mismatch", mod(func(g *FileInfo) { g.Size++ }), "add up"},
		{"zero chunk", mod(func(g *FileInfo) { g.Chunks[0].Length = 0; g.Size -= 65536 }), "length 0"},
		{"huge chunk", mod(func(g *FileInfo) { g.Chunks[0].Length = MaxChunkSize + 1; g.Size = MaxChunkSize + 1 + 4464 }), "want 1"},
		{"dir with chunks", mod(func(g *FileInfo) { g.Type = Dir }), "no chunks"},
		{"deleted with chunks", mod(func(g *FileInfo) { g.Deleted = true }), "no chunks"},
		{"symlink without target", mod(func(g *FileInfo) { g.Type = Symlink; g.Chunks = nil; g.Size = 0 }), "without a target"},
		{"unknown type", mod(func(g *FileInfo) { g.Type = 3 }), "unknown file type"},
		{"mode bits", mod(func(g *FileInfo) { g.Mode = 0o40755 }), "beyond 07777"},
		{"sequence zero", &IndexUpdate{Folder: "d", Through: 5, Files: []FileInfo{func() FileInfo { g := f; g.Sequence = 0; return g }()}}, "sequence 0"},
		{"sequence beyond range", mod(func(g *FileInfo) { g.Sequence = 101 }), "at most 100"},
		{"reversed range", &IndexUpdate{Folder: "d", After: 5, Through: 4}, "reversed"},
		{"unordered sequences", &IndexUpdate{Folder: "d", Through: 100, Files: []FileInfo{f, f}}, "want above 41"},
		{"no folder", &IndexUpdate{Through: 1}, "empty folder ID"},
		{"hello dup folder", &Hello{Version: 1, Folders: []HelloFolder{{ID: "a"}, {ID: "a"}}}, "twice"},
		{"hello version 0", &Hello{}, "version 0"},
		{"confirm bad path", &Confirm{Folder: "d", Files: []Confirmation{{Path: "/x", Version: vec(1, 1)}}}, "absolute"},
		{"confirm no vector", &Confirm{Folder: "d", Files: []Confirmation{{Path: "x"}}}, "empty version vector"},
		{"request length 0", &ChunkRequest{Folder: "d"}, "length 0"},
		{"request too long", &ChunkRequest{Folder: "d", Length: MaxChunkSize + 1}, "length"},
		{"request offset without path", &ChunkRequest{Folder: "d", Length: 1, Offset: 5}, "without a path"},
		{"request bad hint", &ChunkRequest{Folder: "d", Length: 1, Path: "../x"}, "hint"},
		{"batch empty", &ChunkBatchRequest{Folder: "d"}, "0 chunks"},
		{"batch no folder", &ChunkBatchRequest{Chunks: []BatchChunk{{Length: 1}}}, "empty folder ID"},
		{"batch too many", &ChunkBatchRequest{Folder: "d", Chunks: make([]BatchChunk, MaxBatchChunks+1)}, "want 1…128"},
		{"batch chunk length 0", &ChunkBatchRequest{Folder: "d", Chunks: []BatchChunk{{Length: 1}, {}}}, "length 0"},
		{"batch bad hint", &ChunkBatchRequest{Folder: "d", Chunks: []BatchChunk{{Length: 1, Path: "/x"}}}, "hint"},
		{"batch too many bytes", &ChunkBatchRequest{Folder: "d", Chunks: []BatchChunk{{Length: MaxChunkSize}}}, "exceeds"},
		{"response empty", &ChunkResponse{}, "0 bytes"},
		{"response error with data", &ChunkResponse{Code: CodeNotFound, Data: []byte{1}}, "with data"},
		{"error code 0", &Error{Message: "x"}, "code 0"},
		{"error too long", &Error{Code: CodeInternal, Message: strings.Repeat("x", MaxMessageLen+1)}, "exceeds"},
	}
	for _, tt := range tests {
		_, err := AppendFrame(nil, tt.m)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: AppendFrame = %v, want protocol error containing %q", tt.name, err, tt.want)
		}
		if err := NewWriter(io.Discard).WriteMessage(tt.m); err == nil {
			t.Errorf("%s: WriteMessage succeeded", tt.name)
		}
	}
}

func TestEncodeTooLarge(t *testing.T) {
	f := FileInfo{Type: File, Version: vec(1, 1), Sequence: 1}
	files := make([]FileInfo, 5000)
	for i := range files {
		files[i] = f
		files[i].Path = fmt.Sprintf("%04d/%s", i, strings.Repeat("p", 4000))
		files[i].Sequence = uint64(i + 1)
	}
	b, err := AppendFrame([]byte("keep"), &IndexUpdate{Folder: "d", Through: 5000, Files: files})
	if !errors.Is(err, ErrTooLarge) || string(b) != "keep" {
		t.Fatalf("oversized batch: %v, buffer %d bytes; want ErrTooLarge and the buffer unchanged", err, len(b))
	}
}

func frame(t Type, payload []byte) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := AppendFrame(nil, &Ping{Nonce: 5})
	withFlags := func(flags uint64) []byte {
		f := sampleFile()
		b := (&IndexUpdate{Folder: "d", Through: 100, Files: []FileInfo{f}}).appendPayload(nil)
		// The file's flags varint follows folder, epoch, after, through
		// and the file count.
		i := 1 + 1 + 1 + 1 + 1 + 1
		return frame(TypeIndexUpdate, append(append(b[:i:i], binary.AppendUvarint(nil, flags)...), b[i+1:]...))
	}
	tests := []struct {
		name  string
		in    []byte
		want  error
		wants string
	}{
		{"unknown type", frame(0, nil), ErrProtocol, "unknown message type 0"},
		{"unknown type 200", frame(200, []byte{1}), ErrProtocol, "unknown message type 200"},
		{"oversized header", []byte{byte(TypePing), 0xff, 0xff, 0xff, 0xff}, ErrTooLarge, "exceeds"},
		{"truncated payload", good[:len(good)-1], io.ErrUnexpectedEOF, ""},
		{"truncated header", good[:3], io.ErrUnexpectedEOF, ""},
		{"trailing bytes", frame(TypePing, []byte{5, 0}), ErrProtocol, "trailing"},
		{"empty ping", frame(TypePing, nil), ErrProtocol, "bad varint"},
		{"huge count", frame(TypeIndexUpdate, []byte{1, 'd', 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}), ErrProtocol, "cannot fit"},
		{"huge string", frame(TypeError, []byte{1, 0xff, 0xff, 0x03}), ErrProtocol, "exceeds"},
		{"string past end", frame(TypeError, []byte{1, 10, 'a'}), ErrProtocol, "truncated"},
		{"code overflow", frame(TypeError, []byte{0xff, 0xff, 0xff, 0xff, 0x7f, 0}), ErrProtocol, "out of range"},
		{"chunk list read as a difference", withFlags(flagChunkDelta), ErrProtocol, ""},
		{"unknown file flag", withFlags(1 << 5), ErrProtocol, "unknown file flags"},
		{"response flags", frame(TypeChunkResponse, append(append([]byte{1}, make([]byte, 32)...), 0, 4, 'x')), ErrProtocol, "unknown response flags"},
		{"batch of too many chunks", frame(TypeChunkBatchRequest, batchPayload(MaxBatchChunks+1)), ErrProtocol, "exceeds 128"},
		{"batch count beyond its bytes", frame(TypeChunkBatchRequest, []byte{1, 1, 'd', 3, 0}), ErrProtocol, "cannot fit"},
		{"batch of no chunks", frame(TypeChunkBatchRequest, []byte{1, 1, 'd', 0}), ErrProtocol, "0 chunks"},
	}
	for _, tt := range tests {
		_, err := NewReader(bytes.NewReader(tt.in), 0).ReadMessage()
		if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), tt.wants) {
			t.Errorf("%s: %v, want %v containing %q", tt.name, err, tt.want, tt.wants)
		}
	}
}

func TestReaderLimit(t *testing.T) {
	msg, _ := AppendFrame(nil, &ChunkResponse{ID: 1, Data: make([]byte, 1000)})
	if _, err := NewReader(bytes.NewReader(msg), 100).ReadMessage(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("payload over the reader's limit: %v, want ErrTooLarge", err)
	}
	if _, err := NewReader(bytes.NewReader(msg), 2000).ReadMessage(); err != nil {
		t.Fatalf("payload under the limit: %v", err)
	}
}

// TestDecodeSmallFrameSmallAlloc: counts that a frame cannot hold are
// refused before allocating.
func TestDecodeSmallFrameSmallAlloc(t *testing.T) {
	payload := []byte{1, 'd', 0, 0, 1}
	payload = binary.AppendUvarint(payload, 1<<40)
	payload = append(payload, make([]byte, 64)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := Decode(TypeIndexUpdate, payload); err == nil {
			t.Fatal("decoded an impossible count")
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("100 decodes of a 70-byte frame allocated %d bytes", d)
	}
}

func TestEncodedSize(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 1000 {
		f := FileInfo{
			Path: strings.Repeat("x", 1+rng.IntN(300)), Type: FileType(rng.IntN(3)),
			Size: rng.Uint64() >> rng.IntN(64), Mode: uint32(rng.IntN(0o10000)),
			ModTime: int64(rng.Uint64()) >> rng.IntN(64), UID: rng.Uint32() >> rng.IntN(32), GID: rng.Uint32(),
			Target: strings.Repeat("t", rng.IntN(200)), Stamp: conflict.Stamp(rng.Uint64()),
			Sequence: rng.Uint64() >> rng.IntN(64), Deleted: rng.IntN(2) == 0,
		}
		for range rng.IntN(5) {
			f.Version = append(f.Version, conflict.Counter{Node: conflict.NodeID(rng.Uint64()), Value: rng.Uint64() >> rng.IntN(64)})
		}
		for range rng.IntN(5) {
			f.Chunks = append(f.Chunks, chunker.Ref{Length: rng.Uint32() >> rng.IntN(32)})
		}
		if got, want := f.EncodedSize(), len(f.appendTo(nil)); got != want {
			t.Fatalf("EncodedSize = %d, encoding is %d bytes, for %+v", got, want, f)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	err := fmt.Errorf("fetch: %w", &Error{Code: CodeNotFound, Message: "gone"})
	if !errors.Is(fmt.Errorf("x: %w", Error{Code: CodeNotFound}), ErrNotFound) {
		t.Fatal("a value Error does not match")
	}
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrInternal) {
		t.Fatal("errors.Is does not match by code")
	}
	if CodeOf(err) != CodeNotFound || CodeOf(nil) != CodeOK || CodeOf(io.EOF) != CodeInternal {
		t.Fatal("CodeOf maps wrongly")
	}
	if got := (Error{Code: CodeBusy, Message: "x"}).Error(); got != "busy: x" {
		t.Fatalf("Error() = %q", got)
	}
	if Code(99).String() != "error code 99" || Type(99).String() != "Type(99)" {
		t.Fatal("unknown values do not print their number")
	}
	// The numeric values cross the wire and must never change.
	pinned := map[Code]uint32{CodeOK: 0, CodeProtocol: 1, CodeVersion: 2, CodeNotFound: 3, CodeInternal: 4,
		CodeShutdown: 5, CodeDuplicate: 6, CodeTooLarge: 7, CodeTimeout: 8, CodeCanceled: 9, CodeNoFolder: 10, CodeBusy: 11}
	for c, v := range pinned {
		if uint32(c) != v {
			t.Errorf("%s = %d, pinned at %d", c, uint32(c), v)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the Reader. Whatever decodes must be
// valid, must encode again, and must decode to the same message, plain and
// (when it compresses) in a Compressed frame.
func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s.frame)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 0)
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			b, err := AppendFrame(nil, m)
			if err != nil {
				t.Fatalf("decoded %#v does not encode: %v", m, err)
			}
			again, err := NewReader(bytes.NewReader(b), 0).ReadMessage()
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("re-decoding %#v gave %#v, %v", m, again, err)
			}
			if z, ok := CompressFrame(nil, b); ok {
				again, err := NewReader(bytes.NewReader(z), 0).ReadMessage()
				if err != nil || !reflect.DeepEqual(again, m) {
					t.Fatalf("decoding %#v compressed gave %#v, %v", m, again, err)
				}
			}
		}
	})
}

type seedFrame struct {
	name  string
	frame []byte
}

// seedFrames returns a frame of every sample message, and Compressed frames
// of the compressible samples.
func seedFrames(t testing.TB) []seedFrame {
	var out []seedFrame
	for i, m := range samples() {
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seedFrame{fmt.Sprintf("%02d-%s", i, strings.ToLower(m.Type().String())), b})
	}
	for i, m := range compressibleSamples() {
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		z, ok := CompressFrame(nil, b)
		if !ok {
			t.Fatalf("compressible sample %d does not compress", i)
		}
		out = append(out, seedFrame{fmt.Sprintf("z%02d-%s", i, strings.ToLower(m.Type().String())), z})
	}
	return out
}

// TestFuzzSeedCorpus keeps testdata/fuzz/FuzzDecode in step with the
// encoding: it holds a frame of every message type (rewrite with -update).
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	types := map[Type]bool{}
	for _, s := range seedFrames(t) {
		b := s.frame
		types[Type(b[0])] = true
		name := filepath.Join(dir, s.name)
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if *update {
			os.MkdirAll(dir, 0o755)
			if err := os.WriteFile(name, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (run go test -run TestFuzzSeedCorpus -update): %v", name, err)
		}
	}
	for ty := TypeHello; ty < typeLimit; ty++ {
		if !types[ty] {
			t.Errorf("no sample of %s", ty)
		}
	}
}

// expectMessages reads msgs from r in order, then io.EOF.
func expectMessages(t *testing.T, r *Reader, msgs []Message) {
	t.Helper()
	for i, want := range msgs {
		got, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("message %d (%s): %v", i, want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d:\n got %#v\nwant %#v", i, got, want)
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// batchPayload encodes a ChunkBatchRequest payload of n unhinted one-byte
// chunks, without checking n.
func batchPayload(n int) []byte {
	b := []byte{1, 1, 'd'}
	b = binary.AppendUvarint(b, uint64(n))
	for range n {
		b = append(b, make([]byte, chunker.HashSize)...)
		b = append(b, 1, 0, 0) // length, empty path, offset
	}
	return b
}
