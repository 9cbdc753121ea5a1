package chunker

import (
	"io"

	"github.com/zeebo/blake3"
)

// Chunk is one chunk produced by a Chunker.
type Chunk struct {
	Offset int64  // position of the chunk's first byte in the input
	Length uint32 // len(Data)
	Hash   Hash   // BLAKE3-256 of Data
	// Data is the chunk's content. It aliases the Chunker's buffer and is
	// valid only until the next call to Next or Reset; copy it to keep it.
	Data []byte
}

// Ref returns the chunk's manifest entry.
func (c Chunk) Ref() Ref { return Ref{Hash: c.Hash, Length: c.Length} }

// initialBuffer is the first buffer size of a Chunker. The buffer grows
// (doubling) to bufferSize only for inputs that fill it, so a Chunker used
// for small files stays small.
const initialBuffer = 64 << 10

// bufferSize is the largest buffer of a Chunker: 4×Max, at least 1 MiB, so
// that refilling moves less than a quarter of the data and reads are large,
// while the buffer stays in the L2 cache between the read, the cut and the
// hash (a 4 MiB buffer made Split ~20% slower).
func bufferSize(p Params) int { return max(4*p.Max, 1<<20) }

// Chunker cuts an input into chunks and hashes each one, on the calling
// goroutine. It owns one buffer and one hasher, reused for every chunk and,
// through Reset, for every input: no allocation per chunk. A Chunker is not
// safe for concurrent use; hash many files at once with one Chunker per
// goroutine.
type Chunker struct {
	p            Params
	small, large uint64 // thresholds of p
	size         int    // largest buffer

	src        source
	buf        []byte
	start, end int   // buf[start:end] is read but not yet chunked
	off        int64 // input offset of buf[start]
	eof        bool  // src is exhausted
	err        error // sticky read error
	h          *blake3.Hasher
}

// New returns a Chunker that reads r and cuts with p. r may be nil if Reset
// is called before Next. New panics if p is invalid: Params come from code or
// validated configuration, so an invalid one is a programming error.
func New(r io.Reader, p Params) *Chunker {
	p.mustValidate()
	c := &Chunker{p: p, size: bufferSize(p), h: blake3.New()}
	c.small, c.large = p.thresholds()
	c.buf = make([]byte, min(initialBuffer, c.size))
	c.Reset(r)
	return c
}

// Reset makes the Chunker read r from its start, as if new, keeping its
// buffer and hasher. Chunk data returned before Reset becomes invalid.
func (c *Chunker) Reset(r io.Reader) {
	c.src = source{r: r}
	c.start, c.end, c.off = 0, 0, 0
	c.eof, c.err = false, nil
}

// Params returns the parameters c cuts with.
func (c *Chunker) Params() Params { return c.p }

// Next returns the next chunk of the input, or io.EOF after the last one.
// Empty input yields no chunk. A read error is returned, wrapped with the
// offset where it happened, by this and every later call.
func (c *Chunker) Next() (Chunk, error) {
	if c.end-c.start < c.p.Max && !c.eof && c.err == nil {
		c.fill()
	}
	if c.err != nil {
		return Chunk{}, c.err
	}
	if c.start == c.end {
		return Chunk{}, io.EOF
	}
	n := cut(c.buf[c.start:c.end], c.p.Min, c.p.Avg, c.p.Max, c.small, c.large)
	ch := Chunk{Offset: c.off, Length: uint32(n), Data: c.buf[c.start : c.start+n : c.start+n]}
	c.h.Reset()
	c.h.Write(ch.Data)
	c.h.Sum(ch.Hash[:0])
	c.start += n
	c.off += int64(n)
	return ch, nil
}

// fill reads until at least Max bytes are buffered or the input ends, so
// that Cut sees every byte a cut decision may need.
func (c *Chunker) fill() {
	if c.src.r == nil {
		c.err = errNilReader
		return
	}
	for c.end-c.start < c.p.Max && !c.eof {
		if c.end == len(c.buf) {
			c.makeRoom()
		}
		n, eof, err := c.src.read(c.buf[c.end:])
		c.end += n
		c.eof = eof
		if err != nil {
			c.err = err
			return
		}
	}
}

// makeRoom moves the unchunked bytes to the front of the buffer, first
// growing the buffer if it is below its full size: an input that filled it
// is large enough to deserve a larger one.
func (c *Chunker) makeRoom() {
	live := c.buf[c.start:c.end]
	if len(c.buf) < c.size {
		nb := make([]byte, min(2*len(c.buf), c.size))
		c.end = copy(nb, live)
		c.buf = nb
	} else {
		c.end = copy(c.buf, live)
	}
	c.start = 0
}

// Split cuts and hashes all of r on the calling goroutine and returns its
// manifest. Empty input gives Manifest{}.
func Split(r io.Reader, p Params) (Manifest, error) {
	if err := p.Validate(); err != nil {
		return Manifest{}, err
	}
	var m Manifest
	c := New(r, p)
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return Manifest{}, err
		}
		m.Chunks = append(m.Chunks, ch.Ref())
	}
}
