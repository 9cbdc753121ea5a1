package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/zeebo/blake3"
)

// sizedReader returns its data in reads of the given sizes, in turn.
type sizedReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// collect runs c to the end, copying each chunk, and checks the invariants
// every chunk must satisfy: offsets follow each other, Length matches Data,
// Hash is the BLAKE3 of Data, sizes are within Min and Max.
func collect(t *testing.T, c *Chunker) (chunks []Chunk, all []byte) {
	t.Helper()
	p := c.Params()
	var off int64
	for {
		ch, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d chunks: %v", len(chunks), err)
		}
		if ch.Offset != off || int(ch.Length) != len(ch.Data) {
			t.Fatalf("chunk %d: offset %d length %d data %d, want offset %d", len(chunks), ch.Offset, ch.Length, len(ch.Data), off)
		}
		if ch.Hash != Sum(ch.Data) {
			t.Fatalf("chunk %d: hash %s is not the BLAKE3 of its data", len(chunks), ch.Hash)
		}
		if len(chunks) > 0 && chunks[len(chunks)-1].Length <= uint32(p.Min) {
			t.Fatalf("chunk %d of %d bytes (<= Min) is not the last", len(chunks)-1, chunks[len(chunks)-1].Length)
		}
		if ch.Length > uint32(p.Max) {
			t.Fatalf("chunk %d of %d bytes > Max", len(chunks), ch.Length)
		}
		off += int64(ch.Length)
		all = append(all, ch.Data...)
		ch.Data = bytes.Clone(ch.Data)
		chunks = append(chunks, ch)
	}
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("Next after the end = %v, want io.EOF again", err)
	}
	return chunks, all
}

func lengthsOf(chunks []Chunk) []int {
	l := make([]int, len(chunks))
	for i, c := range chunks {
		l[i] = int(c.Length)
	}
	return l
}

// TestReadSizes: the chunks are the same whatever sizes the reader returns,
// and they concatenate back to the input.
func TestReadSizes(t *testing.T) {
	for _, in := range []struct {
		name string
		p    Params
		data []byte
	}{
		{"default-random", DefaultParams, randomData(11, 3<<20+777)},
		{"default-text", DefaultParams, textData(12, 2<<20)},
		{"small-random", smallParams, randomData(13, 300<<10+3)},
	} {
		t.Run(in.name, func(t *testing.T) {
			want := cutLengths(in.p, in.data)
			readers := map[string]func() io.Reader{
				"whole":   func() io.Reader { return bytes.NewReader(in.data) },
				"onebyte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(in.data)) },
				"half":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(in.data)) },
				"dataerr": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(in.data)) },
				"primes": func() io.Reader {
					return &sizedReader{data: in.data, sizes: []int{1, 2, 3, 5, 7, 4093, 11, 65521, 13, 131071, 17}}
				},
				"beyond-max": func() io.Reader {
					return &sizedReader{data: in.data, sizes: []int{in.p.Max + 1, 3*in.p.Max + 7, 1 << 22}}
				},
				"empty-reads": func() io.Reader {
					return &sizedReader{data: in.data, sizes: []int{0, 0, 9973, 0, 1}}
				},
			}
			if raceEnabled && len(in.data) > 1<<20 {
				// One byte per Read is ~40 µs a byte under the race detector.
				delete(readers, "onebyte")
				t.Log("race detector: one-byte reads tested on the small input only")
			}
			c := New(nil, in.p)
			for name, mk := range readers {
				c.Reset(mk())
				chunks, all := collect(t, c)
				if !bytes.Equal(all, in.data) {
					t.Fatalf("%s: chunks do not concatenate to the input", name)
				}
				if got := lengthsOf(chunks); !equalInts(got, want) {
					t.Fatalf("%s: lengths %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestEmptyAndShortInput(t *testing.T) {
	c := New(bytes.NewReader(nil), DefaultParams)
	if ch, err := c.Next(); err != io.EOF {
		t.Fatalf("Next on empty input = %+v, %v; want io.EOF", ch, err)
	}
	m, err := Split(strings.NewReader(""), DefaultParams)
	if err != nil || m.Chunks != nil || m.Size() != 0 {
		t.Fatalf("Split(empty) = %+v, %v; want Manifest{}", m, err)
	}
	if m.Hash() != (Manifest{}).Hash() {
		t.Fatal("Split(empty) hashes differently from Manifest{}")
	}

	short := randomData(4, DefaultParams.Min-1)
	m, err = Split(bytes.NewReader(short), DefaultParams)
	if err != nil || len(m.Chunks) != 1 || m.Chunks[0] != (Ref{Sum(short), uint32(len(short))}) {
		t.Fatalf("Split(%d bytes < Min) = %+v, %v; want one chunk", len(short), m, err)
	}
}

// TestReuse: a Chunker reset onto new inputs gives what a new one gives, and
// does not allocate per chunk once its buffer has grown.
func TestReuse(t *testing.T) {
	big := randomData(21, 4<<20)
	small := randomData(22, 5000)
	c := New(bytes.NewReader(big), DefaultParams)
	first, _ := collect(t, c)
	c.Reset(bytes.NewReader(small))
	if got, _ := collect(t, c); len(got) != 1 || got[0].Hash != Sum(small) {
		t.Fatalf("after Reset onto %d bytes: %d chunks", len(small), len(got))
	}
	c.Reset(bytes.NewReader(big))
	again, _ := collect(t, c)
	if len(again) != len(first) {
		t.Fatalf("second pass: %d chunks, first %d", len(again), len(first))
	}
	for i := range first {
		if first[i].Ref() != again[i].Ref() {
			t.Fatalf("second pass chunk %d = %v, first %v", i, again[i].Ref(), first[i].Ref())
		}
	}

	br := bytes.NewReader(big)
	allocs := testing.AllocsPerRun(3, func() {
		br.Reset(big)
		c.Reset(br)
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per %d-chunk input, want 0", allocs, len(first))
	}
}

// TestSmallInputsStaySmall: a Chunker that only sees small files never
// grows its buffer to full size.
func TestSmallInputsStaySmall(t *testing.T) {
	c := New(nil, DefaultParams)
	for i := range 20 {
		c.Reset(bytes.NewReader(randomData(uint64(i), 10<<10)))
		collect(t, c)
	}
	if len(c.buf) != initialBuffer {
		t.Fatalf("buffer grew to %d bytes on 10 KiB inputs, want %d", len(c.buf), initialBuffer)
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	data := randomData(31, 1<<20)
	r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	c := New(r, DefaultParams)
	var n int
	var err error
	for {
		var ch Chunk
		if ch, err = c.Next(); err != nil {
			break
		}
		n += int(ch.Length)
	}
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), fmt.Sprint(len(data))) {
		t.Fatalf("Next = %v, want %v wrapped with the offset %d", err, boom, len(data))
	}
	if n > len(data) {
		t.Fatalf("returned %d bytes of chunks from %d bytes of input", n, len(data))
	}
	if _, err2 := c.Next(); err2 != err {
		t.Fatalf("Next after the error = %v, want the same error again", err2)
	}
	if _, err := Split(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), DefaultParams); !errors.Is(err, boom) {
		t.Fatalf("Split = %v, want %v", err, boom)
	}
}

func TestNoProgressReader(t *testing.T) {
	c := New(&sizedReader{data: []byte("x"), sizes: []int{0}}, DefaultParams)
	if _, err := c.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next on a reader that never progresses = %v, want io.ErrNoProgress", err)
	}
	if _, err := New(nil, DefaultParams).Next(); err == nil || err == io.EOF {
		t.Fatalf("Next without a reader = %v, want an error", err)
	}
}

func TestManifest(t *testing.T) {
	data := randomData(41, 1<<20)
	m, err := Split(bytes.NewReader(data), DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", m.Size(), len(data))
	}
	// The definition in Hash's comment, computed independently.
	var enc []byte
	for _, c := range m.Chunks {
		enc = append(enc, c.Hash[:]...)
		enc = append(enc, byte(c.Length), byte(c.Length>>8), byte(c.Length>>16), byte(c.Length>>24))
	}
	var want Hash
	blake3.DeriveKey("lockstep 2026-01-01 chunker manifest v1", enc, want[:])
	if got := m.Hash(); got != want {
		t.Fatalf("Hash = %s, definition gives %s", got, want)
	}
	var empty Hash
	blake3.DeriveKey("lockstep 2026-01-01 chunker manifest v1", nil, empty[:])
	if (Manifest{}).Hash() != empty || empty == Sum(nil) {
		t.Fatalf("Manifest{}.Hash() = %s, want %s, distinct from Sum(nil)", (Manifest{}).Hash(), empty)
	}
	// Moving a boundary changes the hash even when the bytes do not.
	moved := Manifest{Chunks: []Ref{{Sum(data[:100]), 100}, {Sum(data[100:200]), 100}}}
	whole := Manifest{Chunks: []Ref{{Sum(data[:200]), 200}}}
	if moved.Hash() == whole.Hash() || !m.Equal(m) || m.Equal(whole) {
		t.Fatal("manifest hash or Equal ignores the chunk list")
	}
}
