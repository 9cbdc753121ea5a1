package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"lockstep/chunker"
	"lockstep/conflict"
)

// smallFileBatch is an index batch like a tree of small files announces:
// one chunk each, paths under a few directories, the same node in every
// vector, stamps and times close together.
func smallFileBatch(n int) *IndexUpdate {
	u := &IndexUpdate{Folder: "docroot", Epoch: 0x5eed5eed, After: 1000}
	const node = 0x8a7b6c5d4e3f2011
	for i := range n {
		s := uint64(1001 + i)
		u.Files = append(u.Files, FileInfo{
			Path: fmt.Sprintf("d%04d/f%06d.txt", i/100, i), Type: File, Size: 1024, Mode: 0o644,
			ModTime: 1795000000123456789 + int64(i)*23456, UID: 1000, GID: 1000,
			Chunks:  []chunker.Ref{{Hash: chunker.Sum(fmt.Appendf(nil, "content %d", i)), Length: 1024}},
			Version: vec(node, s), Stamp: conflict.MakeStamp(1795000000123+uint64(i/8), uint16(i%8)),
			Origin: node, Sequence: s,
		})
	}
	u.Through = 1000 + uint64(n)
	return u
}

// compressibleSamples are messages that shrink in a Compressed frame.
func compressibleSamples() []Message {
	c := &Confirm{Folder: "docroot", Epoch: 3, Through: 1040}
	for _, f := range smallFileBatch(40).Files {
		c.Files = append(c.Files, Confirmation{Path: f.Path, Version: f.Version})
	}
	return []Message{smallFileBatch(30), c}
}

func compress(t testing.TB, m Message) (plain, z []byte) {
	t.Helper()
	plain, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	z, ok := CompressFrame(nil, plain)
	if !ok {
		t.Fatalf("%s of %d bytes was not compressed", m.Type(), len(plain))
	}
	return plain, z
}

// TestCompressedRoundTripOverPipe: Compressed frames interleaved with plain
// ones decode to the messages they carry, and the Reader counts what they
// saved.
func TestCompressedRoundTripOverPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	msgs := append(compressibleSamples(), &Ping{Nonce: 1}, smallFileBatch(1000), samples()[2])
	var stream [][]byte
	saved := 0
	for _, m := range msgs {
		plain, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if z, ok := CompressFrame([]byte("keep"), plain); ok {
			if string(z[:4]) != "keep" || Type(z[4]) != TypeCompressed {
				t.Fatalf("CompressFrame did not append a Compressed frame to dst")
			}
			saved += len(plain) - len(z[4:])
			plain = z[4:]
		}
		stream = append(stream, plain)
	}
	if saved == 0 {
		t.Fatal("nothing was compressed")
	}
	errc := make(chan error, 1)
	go func() {
		for _, f := range stream {
			if _, err := a.Write(f); err != nil {
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
	if r.BytesInflated() != int64(saved) {
		t.Fatalf("BytesInflated = %d, compression saved %d", r.BytesInflated(), saved)
	}
}

// TestCompressSmallFileBatch: a batch of small files' entries shrinks to
// under half, which is what brings a small-file tree's wire overhead down.
func TestCompressSmallFileBatch(t *testing.T) {
	plain, z := compress(t, smallFileBatch(1000))
	if ratio := float64(len(z)) / float64(len(plain)); ratio > 0.5 {
		t.Fatalf("a batch of 1000 small files compressed from %d to %d bytes (%.2f), want under half", len(plain), len(z), ratio)
	}
	t.Logf("%d bytes per entry plain, %d compressed", len(plain)/1000, len(z)/1000)
}

func TestCompressFrameDeclines(t *testing.T) {
	small, _ := AppendFrame(nil, &Confirm{Folder: "d", Through: 4})
	hello, _ := AppendFrame(nil, &Hello{Version: Version, Name: strings.Repeat("web", 50)})
	req, _ := AppendFrame(nil, &ChunkRequest{Folder: "d", Length: 1, Path: strings.Repeat("a/", 200) + "x"})
	random := &IndexUpdate{Folder: "d", Through: 1}
	path := make([]byte, 1000)
	for i := range path {
		path[i] = 'a' + byte(chunker.Sum([]byte{byte(i), byte(i >> 8)})[0]%26)
	}
	random.Files = []FileInfo{{Path: string(path), Type: Dir, Version: vec(1, 1), Sequence: 1}}
	incompressible, _ := AppendFrame(nil, random)
	for name, f := range map[string][]byte{"small": small, "hello": hello, "chunk request": req,
		"incompressible": incompressible, "truncated": incompressible[:len(incompressible)-1], "empty": nil} {
		if out, ok := CompressFrame([]byte("dst"), f); ok || string(out) != "dst" {
			t.Errorf("%s: CompressFrame = %q, %v; want dst unchanged and false", name, out, ok)
		}
	}
}

// compressedFrame builds a Compressed frame by hand: carried type, declared
// length, then z.
func compressedFrame(t Type, n uint64, z []byte) []byte {
	p := binary.AppendUvarint([]byte{byte(t)}, n)
	return frame(TypeCompressed, append(p, z...))
}

func zstdBytes(t testing.TB, plain []byte) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(plain, nil)
}

// zstdStream compresses plain as a stream, whose frame does not declare
// its content size.
func zstdStream(t testing.TB, plain []byte) []byte {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeCompressedRefuses(t *testing.T) {
	hello, _ := AppendFrame(nil, &Hello{Version: Version, Name: "web1"})
	ping, _ := AppendFrame(nil, &Ping{Nonce: 5})
	_, inner := compress(t, smallFileBatch(20))
	batch, _ := AppendFrame(nil, smallFileBatch(20))
	payload := batch[HeaderSize:]
	zeros := zstdBytes(t, make([]byte, 8<<20))
	streamed := zstdStream(t, make([]byte, 8<<20))
	tests := []struct {
		name  string
		in    []byte
		max   int
		want  error
		wants string
	}{
		{"hello", compressedFrame(TypeHello, uint64(len(hello)-HeaderSize), zstdBytes(t, hello[HeaderSize:])), 0, ErrProtocol, "carries a message of type Hello"},
		{"ping", compressedFrame(TypePing, uint64(len(ping)-HeaderSize), zstdBytes(t, ping[HeaderSize:])), 0, ErrProtocol, "type Ping"},
		{"nested", compressedFrame(TypeCompressed, uint64(len(inner)-HeaderSize), zstdBytes(t, inner[HeaderSize:])), 0, ErrProtocol, "type Compressed"},
		{"over the frame limit", compressedFrame(TypeIndexUpdate, MaxPayload+1, zeros), 0, ErrTooLarge, "exceeds"},
		{"over the reader's limit", compressedFrame(TypeIndexUpdate, uint64(len(payload)), zstdBytes(t, payload)), 1000, ErrTooLarge, "exceeds 1000"},
		{"claims too much", compressedFrame(TypeIndexUpdate, 1<<20, []byte{1, 2, 3}), 0, ErrProtocol, "claim to hold"},
		{"bomb", compressedFrame(TypeIndexUpdate, uint64(len(zeros)), zeros), 0, ErrProtocol, "IndexUpdate: "},
		{"bomb without a size", compressedFrame(TypeIndexUpdate, uint64(len(streamed)), streamed), 0, ErrProtocol, "IndexUpdate: "},
		{"short", compressedFrame(TypeIndexUpdate, uint64(len(payload)+1), zstdBytes(t, payload)), 0, ErrProtocol, "want"},
		{"garbage", compressedFrame(TypeIndexUpdate, 200, bytes.Repeat([]byte{0x55}, 100)), 0, ErrProtocol, ""},
		{"empty", frame(TypeCompressed, nil), 0, ErrProtocol, "truncated"},
		{"no length", frame(TypeCompressed, []byte{byte(TypeConfirm)}), 0, ErrProtocol, "bad varint"},
		{"invalid inside", compressedFrame(TypeConfirm, 200, zstdBytes(t, make([]byte, 200))), 0, ErrProtocol, "decode Confirm"},
	}
	for _, tt := range tests {
		_, err := NewReader(bytes.NewReader(tt.in), tt.max).ReadMessage()
		if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), tt.wants) {
			t.Errorf("%s: %v, want %v containing %q", tt.name, err, tt.want, tt.wants)
		}
	}
	// The same frame as "over the reader's limit" passes a reader that
	// allows it: the refusal was the limit's.
	ok := compressedFrame(TypeIndexUpdate, uint64(len(payload)), zstdBytes(t, payload))
	if _, err := NewReader(bytes.NewReader(ok), 0).ReadMessage(); err != nil {
		t.Fatalf("a valid hand-built Compressed frame: %v", err)
	}
}

// TestDecompressionBombSmallAlloc: a frame whose zstd data expands far
// beyond what it declares fails without the decoder allocating the
// expansion.
func TestDecompressionBombSmallAlloc(t *testing.T) {
	for _, z := range [][]byte{zstdBytes(t, make([]byte, 16<<20)), zstdStream(t, make([]byte, 16<<20))} {
		bomb := compressedFrame(TypeIndexUpdate, uint64(maxInflation*len(z)), z)
		if _, err := NewReader(bytes.NewReader(bomb), 0).ReadMessage(); err == nil {
			t.Fatal("decoded a bomb")
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 20 {
			if _, err := NewReader(bytes.NewReader(bomb), 0).ReadMessage(); err == nil {
				t.Fatal("decoded a bomb")
			}
		}
		runtime.ReadMemStats(&after)
		// At most the stated size (128× the compressed bytes, ~230 KB
		// here) is allocated per decode, never the 16 MiB the bomb
		// inflates to; 1 MiB leaves room for what else the process does.
		if d := (after.TotalAlloc - before.TotalAlloc) / 20; d > 1<<20 {
			t.Fatalf("each decode of a %d-byte bomb allocated %d bytes", len(bomb), d)
		}
	}
}
