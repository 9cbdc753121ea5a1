package chunker

import (
	"errors"
	"fmt"
	"io"
)

// maxEmptyReads is how many successive (0, nil) reads are tolerated before
// the reader is declared broken, as bufio does.
const maxEmptyReads = 100

// source wraps the reader of one input and tracks the stream offset, so that
// errors say where the input broke.
type source struct {
	r     io.Reader
	off   int64 // bytes read so far
	empty int   // successive empty reads
}

// read reads once into p. It reports eof when the input is exhausted; n bytes
// are valid in every case.
func (s *source) read(p []byte) (n int, eof bool, err error) {
	n, err = s.r.Read(p)
	s.off += int64(n)
	switch {
	case err == io.EOF:
		return n, true, nil
	case err != nil:
		return n, false, fmt.Errorf("read at offset %d: %w", s.off, err)
	case n == 0 && len(p) > 0:
		if s.empty++; s.empty >= maxEmptyReads {
			return 0, false, fmt.Errorf("read at offset %d: %w", s.off, io.ErrNoProgress)
		}
	default:
		s.empty = 0
	}
	return n, false, nil
}

// errNilReader is returned when Next is called on a Chunker that was never
// given a reader.
var errNilReader = errors.New("chunker: no reader (call Reset first)")
