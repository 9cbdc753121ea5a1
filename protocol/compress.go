package protocol

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A Compressed frame (TypeCompressed) carries the payload of one message
// of a compressible type, compressed with zstd. Its payload is the carried
// message's type (1 byte), the length of its plain payload (varint), then
// one zstd frame that decompresses to exactly that many bytes.
//
// Index updates are lists of similar entries — paths under the same
// directories, the same node in every version vector, stamps and times a
// few apart — and shrink to well under half; chunk hashes are what is left.

// Bounds on what a Compressed frame may ask of its reader.
const (
	// maxInflation bounds a plain payload against the compressed bytes
	// that carry it: a small frame cannot make the reader allocate much
	// more than it could describe. Index batches shrink by far less.
	maxInflation = 128
	// minCompress is the shortest payload worth compressing.
	minCompress = 128
)

// Compressible reports whether messages of type t may travel in Compressed
// frames: IndexUpdate and Confirm.
func Compressible(t Type) bool { return t == TypeIndexUpdate || t == TypeConfirm }

// Encoders and decoders are pooled: each does one EncodeAll or DecodeAll at
// a time (concurrency 1, no goroutines of its own), so the pool can drop
// them freely.

var frameEncoders = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false), // the stream is authenticated, and the message is validated
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		panic(fmt.Sprintf("zstd encoder options: %v", err)) // constant options: a programming error
	}
	return e
}}

var frameDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxPayload),
		zstd.WithDecoderMaxWindow(2*MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		panic(fmt.Sprintf("zstd decoder options: %v", err))
	}
	return d
}}

// plainBuffers hold decompressed payloads while they are decoded; decoded
// control messages never alias their payload.
var plainBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// CompressFrame appends to dst a Compressed frame carrying frame, one
// complete plain frame of a Compressible type, and reports true. When the
// compressed frame would not be shorter, or frame is of another type, it
// appends nothing and reports false: send frame as it is.
func CompressFrame(dst, frame []byte) ([]byte, bool) {
	if len(frame) < HeaderSize || !Compressible(Type(frame[0])) {
		return dst, false
	}
	payload := frame[HeaderSize:]
	if len(payload) < minCompress || len(payload) != int(binary.BigEndian.Uint32(frame[1:])) {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, byte(TypeCompressed), 0, 0, 0, 0, frame[0])
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	head := len(dst)
	enc := frameEncoders.Get().(*zstd.Encoder)
	dst = enc.EncodeAll(payload, dst)
	frameEncoders.Put(enc)
	z := len(dst) - head
	if len(dst)-start >= len(frame) || len(payload) > maxInflation*z {
		return dst[:start], false
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-HeaderSize))
	return dst, true
}

// decodeCompressed decodes a Compressed frame's payload to the message it
// carries, whose plain payload may not exceed max bytes. The declared
// length is checked against max and against the compressed bytes before
// anything is allocated, and the decoder may not write past it.
func decodeCompressed(payload []byte, max int) (Message, error) {
	fail := func(format string, args ...any) (Message, error) {
		return nil, fmt.Errorf("decode %s: %w", TypeCompressed, Error{Code: CodeProtocol, Message: fmt.Sprintf(format, args...)})
	}
	d := decoder{b: payload}
	t := Type(d.byte())
	n := d.uvarint()
	if d.err != nil {
		return fail("%v", d.err)
	}
	if !Compressible(t) {
		return fail("carries a message of type %s", t)
	}
	z := d.b
	switch {
	case n > uint64(max):
		return nil, fmt.Errorf("decode %s: %s of %d bytes exceeds %d: %w", TypeCompressed, t, n, max, ErrTooLarge)
	case n > uint64(maxInflation*len(z)):
		return fail("%d compressed bytes claim to hold %d", len(z), n)
	}
	buf := plainBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxKeptBuffer {
			plainBuffers.Put(buf)
		}
	}()
	if cap(*buf) < int(n) {
		*buf = make([]byte, 0, n)
	}
	dec := frameDecoders.Get().(*zstd.Decoder)
	plain, err := dec.DecodeAll(z, (*buf)[:0:n])
	frameDecoders.Put(dec)
	if err != nil {
		return fail("%s: %v", t, err)
	}
	if len(plain) != int(n) {
		return fail("%s decompressed to %d bytes, want %d", t, len(plain), n)
	}
	m, err := decode(t, plain, max)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", TypeCompressed, err)
	}
	return m, nil
}

// compressedInflation returns what the plain frame carried by a valid
// Compressed payload takes beyond the Compressed frame.
func compressedInflation(payload []byte) int {
	n, _ := binary.Uvarint(payload[1:])
	return int(n) - len(payload)
}
