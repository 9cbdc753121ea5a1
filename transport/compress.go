package transport

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"

	"lockstep/protocol"
)

// Encoders and decoders are pooled: each does one EncodeAll/DecodeAll at a
// time (concurrency 1, no goroutines of its own), so the pool can drop
// them freely.

var encoderPool = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false), // the BLAKE3 hash already checks the data
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		panic(fmt.Sprintf("zstd encoder options: %v", err)) // constant options: a programming error
	}
	return e
}}

var decoderPool = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(protocol.MaxChunkSize),
		zstd.WithDecoderMaxWindow(protocol.MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		panic(fmt.Sprintf("zstd decoder options: %v", err))
	}
	return d
}}

var compressedPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// compressor decides, per connection, whether chunk data goes compressed.
// Compression pays when the wire time it saves exceeds the CPU time it
// costs; it keeps estimates of the compression ratio and speed from what it
// has compressed, and takes the link's rate from QUIC's congestion window
// and round-trip time. While compressing does not pay, every probeEvery-th
// chunk is still sampled so that the estimates follow the data.
type compressor struct {
	mu    sync.Mutex
	ratio float64 // compressed/raw, moving average; 0 until measured
	speed float64 // bytes compressed per second of CPU, moving average
	n     uint64  // chunks seen
}

const (
	probeEvery = 64
	ewmaWeight = 0.2
	// Only a sample of a large chunk is compressed first: 4 KiB that must
	// shrink below 98% for the whole chunk to be tried. A chunk that is
	// tried but saves under 5% still goes raw.
	sampleSize      = 4 << 10
	sampleRatio     = 0.98
	compressRatio   = 0.95
	minCompressSize = 512 // smaller chunks always go as they are
)

// worthCompressing reports whether compressing is expected to deliver data
// sooner than sending it raw over a link moving linkBps bytes per second:
// the wire time saved per byte, (1-ratio)/linkBps, must exceed the CPU time
// per byte of compressing at speed and decompressing (taken as three times
// faster), shared across cores. Unknown quantities (zero) favour
// compressing, which is how they get measured.
func worthCompressing(ratio, speed, linkBps float64, cores int) bool {
	if speed <= 0 || linkBps <= 0 {
		return true
	}
	saved := (1 - ratio) / linkBps
	cost := (1/speed + 1/(3*speed)) / float64(max(cores, 1))
	return saved > cost
}

func (c *compressor) observe(n int, d time.Duration, ratio float64) {
	if d <= 0 {
		d = time.Microsecond
	}
	speed := float64(n) / d.Seconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.speed == 0 {
		c.speed, c.ratio = speed, ratio
		return
	}
	c.speed += ewmaWeight * (speed - c.speed)
	c.ratio += ewmaWeight * (ratio - c.ratio)
}

// worth reports whether to try compressing the next chunk.
func (c *compressor) worth(linkBps float64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n%probeEvery == 1 || worthCompressing(c.ratio, c.speed, linkBps, compressCores)
}

func (c *compressor) pays(linkBps float64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return worthCompressing(c.ratio, c.speed, linkBps, compressCores)
}

// compressCores is how many cores compression may be counted on: half of
// them, the rest being busy with QUIC, hashing and disk I/O.
var compressCores = max(1, runtime.GOMAXPROCS(0)/2)

// compress returns data compressed in a pooled buffer (release it with
// putCompressed), or nil when it goes raw: too small, incompressible, or
// not worth the CPU on a link as fast as linkBps (0: unknown). Large chunks
// are judged by a sample from their middle first, so incompressible data
// (media, archives, already-compressed assets) costs a fraction of a full
// attempt.
func (c *compressor) compress(data []byte, linkBps float64) *[]byte {
	if len(data) < minCompressSize || !c.worth(linkBps) {
		return nil
	}
	enc := encoderPool.Get().(*zstd.Encoder)
	defer encoderPool.Put(enc)
	buf := compressedPool.Get().(*[]byte)
	if len(data) >= 4*sampleSize {
		mid := len(data)/2 - sampleSize/2
		start := time.Now()
		*buf = enc.EncodeAll(data[mid:mid+sampleSize], (*buf)[:0])
		ratio := float64(len(*buf)) / sampleSize
		c.observe(sampleSize, time.Since(start), ratio)
		if ratio >= sampleRatio || !c.pays(linkBps) {
			putCompressed(buf)
			return nil
		}
	}
	start := time.Now()
	*buf = enc.EncodeAll(data, (*buf)[:0])
	ratio := float64(len(*buf)) / float64(len(data))
	c.observe(len(data), time.Since(start), ratio)
	if ratio >= compressRatio {
		putCompressed(buf)
		return nil
	}
	return buf
}

func putCompressed(b *[]byte) {
	if cap(*b) <= 4<<20 {
		*b = (*b)[:0]
		compressedPool.Put(b)
	}
}

// decompress expands z, which must decompress to exactly length bytes,
// into buf when its capacity suffices, or into a new buffer. The output
// capacity is exactly length and the decoder may not grow it, so a frame
// that expands further — a decompression bomb — fails without allocating
// more. When z itself lies in buf (it was received there), the output goes
// through a pooled scratch buffer and is copied into buf.
func decompress(z []byte, length int, buf []byte) ([]byte, error) {
	var scratch *[]byte
	dst := buf[:0]
	switch {
	case cap(buf) < length:
		dst = make([]byte, 0, length)
	case overlaps(z, buf[:cap(buf)]):
		scratch = compressedPool.Get().(*[]byte)
		defer putCompressed(scratch)
		if cap(*scratch) < length {
			*scratch = make([]byte, 0, length)
		}
		dst = *scratch
	}
	dec := decoderPool.Get().(*zstd.Decoder)
	defer decoderPool.Put(dec)
	out, err := dec.DecodeAll(z, dst[:0:length])
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(out) != length {
		return nil, fmt.Errorf("decompressed to %d bytes, want %d", len(out), length)
	}
	if scratch != nil {
		out = buf[:copy(buf[:length], out)]
	}
	return out, nil
}

func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, a1 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&a[len(a)-1]))
	b0, b1 := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	return a0 <= b1 && b0 <= a1
}
