package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Writer writes framed messages to an io.Writer, encoding into a buffer it
// reuses. It is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
	n   int64
}

// NewWriter returns a Writer that writes frames to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// maxKeptBuffer is the largest encode or read buffer kept between messages;
// one huge index batch does not pin its buffer for the connection's life.
const maxKeptBuffer = 1 << 20

// WriteMessage writes m as one frame. A ChunkResponse's data is written
// straight from the caller's slice after the encoded header, not copied
// into the buffer.
func (w *Writer) WriteMessage(m Message) error {
	var bulk []byte
	var err error
	if r, ok := m.(*ChunkResponse); ok {
		if err := r.validate(); err != nil {
			return fmt.Errorf("encode %s: %w", r.Type(), Error{Code: CodeProtocol, Message: err.Error()})
		}
		b := append(w.buf[:0], byte(r.Type()), 0, 0, 0, 0)
		b = r.appendHead(b)
		binary.BigEndian.PutUint32(b[1:], uint32(len(b)-HeaderSize+len(r.Data)))
		w.buf, bulk = b, r.Data
	} else if w.buf, err = AppendFrame(w.buf[:0], m); err != nil {
		return err
	}
	defer func() {
		if cap(w.buf) > maxKeptBuffer {
			w.buf = nil
		}
	}()
	n, err := w.w.Write(w.buf)
	w.n += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", m.Type(), err)
	}
	if len(bulk) > 0 {
		n, err = w.w.Write(bulk)
		w.n += int64(n)
		if err != nil {
			return fmt.Errorf("write %s: %w", m.Type(), err)
		}
	}
	return nil
}

// ResponseRoom is the room before a chunk response's data that
// WriteChunkResponse writes the frame's header and the response's fields
// into: the frame header, then the ID, the hash and two small fields.
const ResponseRoom = HeaderSize + 3*binary.MaxVarintLen64 + 32

// WriteChunkResponse is WriteMessage for a chunk response whose data lies
// in frame after room bytes (r.Data is frame[room:]): the frame's header
// and fields are put into the room and the frame goes out in one write,
// not as a small write followed by the data. frame[:room] is overwritten.
// Data elsewhere, or too little room, is written as WriteMessage does.
func (w *Writer) WriteChunkResponse(r *ChunkResponse, frame []byte, room int) error {
	if room < 0 || room > len(frame) || len(r.Data) == 0 || len(r.Data) != len(frame)-room || &r.Data[0] != &frame[room] {
		return w.WriteMessage(r)
	}
	if err := r.validate(); err != nil {
		return fmt.Errorf("encode %s: %w", r.Type(), Error{Code: CodeProtocol, Message: err.Error()})
	}
	b := append(w.buf[:0], byte(r.Type()), 0, 0, 0, 0)
	b = r.appendHead(b)
	if len(b) > room {
		return w.WriteMessage(r)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-HeaderSize+len(r.Data)))
	w.buf = b
	start := room - len(b)
	copy(frame[start:], b)
	n, err := w.w.Write(frame[start:])
	w.n += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", r.Type(), err)
	}
	return nil
}

// BytesWritten returns the number of bytes written so far, headers included.
func (w *Writer) BytesWritten() int64 { return w.n }

// Reader reads framed messages from an io.Reader. It is not safe for
// concurrent use.
type Reader struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte
	buf []byte
	n   int64
	// inflated is what decompressing Compressed frames added to the bytes
	// read.
	inflated int64
}

// NewReader returns a Reader that refuses payloads longer than maxPayload
// bytes (MaxPayload when maxPayload is 0 or larger), compressed or once
// decompressed: a stream that only ever carries small messages can say so
// and bound what a peer makes it allocate.
func NewReader(r io.Reader, maxPayload int) *Reader {
	if maxPayload <= 0 || maxPayload > MaxPayload {
		maxPayload = MaxPayload
	}
	return &Reader{r: r, max: maxPayload}
}

// ReadMessage reads and decodes the next frame. At a clean end of stream
// between frames it returns io.EOF; a stream that ends inside a frame gives
// io.ErrUnexpectedEOF. An unknown type or an oversized length is refused
// from the header alone, before the payload is read.
//
// The returned message owns its memory: it never aliases a buffer the
// Reader reuses. (A ChunkResponse's Data lives in a buffer allocated for
// that frame alone.)
func (r *Reader) ReadMessage() (Message, error) { return r.ReadMessageInto(nil) }

// ReadMessageInto is ReadMessage, except that a ChunkResponse payload is
// read into buf when it fits in buf's capacity, so that a caller that
// recycles chunk buffers avoids an allocation per chunk. The response's
// Data then aliases buf (not necessarily from its start).
func (r *Reader) ReadMessageInto(buf []byte) (Message, error) {
	n, err := io.ReadFull(r.r, r.hdr[:])
	r.n += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) && n == 0 {
			return nil, io.EOF
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	t := Type(r.hdr[0])
	size := binary.BigEndian.Uint32(r.hdr[1:])
	if !t.Known() {
		return nil, fmt.Errorf("read frame: unknown message type %d: %w", uint8(t), ErrProtocol)
	}
	if size > uint32(r.max) {
		return nil, fmt.Errorf("read %s frame: payload of %d bytes exceeds %d: %w", t, size, r.max, ErrTooLarge)
	}
	var payload []byte
	if t == TypeChunkResponse || t == TypeBareChunkResponse {
		if cap(buf) >= int(size) {
			payload = buf[:size]
		} else {
			payload = make([]byte, size)
		}
	} else {
		if cap(r.buf) < int(size) {
			r.buf = make([]byte, size)
		}
		payload = r.buf[:size]
	}
	n, err = io.ReadFull(r.r, payload)
	r.n += int64(n)
	if cap(r.buf) > maxKeptBuffer {
		r.buf = nil
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s frame: %w", t, err)
	}
	m, err := decode(t, payload, r.max)
	if err == nil && t == TypeCompressed {
		r.inflated += int64(compressedInflation(payload))
	}
	return m, err
}

// BytesRead returns the number of bytes read so far, headers included.
func (r *Reader) BytesRead() int64 { return r.n }

// BytesInflated returns how many bytes more the messages read so far would
// have taken uncompressed: the plain frames that Compressed frames carried,
// less the Compressed frames.
func (r *Reader) BytesInflated() int64 { return r.inflated }
