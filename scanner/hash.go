package scanner

import (
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"lockstep/chunker"
)

// largeFile is the size from which a file is hashed with
// chunker.SplitParallel, on every core, instead of by one hasher.
const largeFile = 32 << 20

func (r *run) hasher(ctx context.Context) {
	ch := chunker.New(nil, r.s.cfg.Params)
	for j := range r.hashCh {
		if ctx.Err() != nil {
			j.file.Close()
			continue
		}
		r.hashOne(ctx, ch, j)
	}
}

// errGrew stops the read of a file that turned out longer than its stat.
var errGrew = errors.New("file grew while being read")

// sizedReader reads a file that should hold exactly size bytes and stops
// with errGrew as soon as it holds more.
type sizedReader struct {
	f    *os.File
	size int64
	n    int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	k, err := s.f.Read(p)
	s.n += int64(k)
	if s.n > s.size {
		return k, errGrew
	}
	return k, err
}

// hashOne reads and hashes one file. The file must be the one the reader
// saw, and must not change while it is read: its stat is compared before
// (with the reader's) and after, and the bytes read must equal its size.
// Otherwise it is not recorded but retried later, and its old record kept.
func (r *run) hashOne(ctx context.Context, ch *chunker.Chunker, j hashJob) {
	defer j.file.Close()
	fd := int(j.file.Fd())
	var ust unix.Stat_t
	if err := unix.Fstat(fd, &ust); err != nil {
		r.unreadable(j.rel, "fstat", err)
		return
	}
	open := fromUnix(&ust)
	if open.kind != kindFile || open.ino != j.st.ino || open.dev != j.st.dev || changed(j.st, open) {
		r.retryLater(j.rel)
		return
	}
	sr := &sizedReader{f: j.file, size: open.size}
	var m chunker.Manifest
	var err error
	if open.size >= largeFile {
		m, err = chunker.SplitParallel(ctx, sr, r.s.cfg.Params, r.s.cfg.Hashers)
	} else {
		m, err = split(ch, sr)
	}
	r.c.hashed.Add(1)
	r.c.bytesHashed.Add(sr.n)
	if err != nil {
		switch {
		case errors.Is(err, errGrew):
			r.retryLater(j.rel)
		case ctx.Err() != nil:
		default:
			r.unreadable(j.rel, "read", err)
		}
		return
	}
	if r.s.afterRead != nil {
		r.s.afterRead(j.rel)
	}
	if err := unix.Fstat(fd, &ust); err != nil {
		r.unreadable(j.rel, "fstat", err)
		return
	}
	if end := fromUnix(&ust); changed(open, end) || sr.n != open.size || racy(end.mtime, r.s.cfg.Now()) {
		r.retryLater(j.rel)
		return
	}
	act := decideContent(open, m, "", j.old)
	if act == skip {
		r.c.skipped.Add(1)
		return
	}
	r.emit(ctx, change{rec: record(j.rel, open, m, ""), old: j.old, act: act})
}

// changed reports whether a file changed between two stats of it.
func changed(a, b stat) bool {
	return a.size != b.size || a.mtime != b.mtime || a.ctime != b.ctime
}

// split hashes r with a reused Chunker.
func split(ch *chunker.Chunker, r io.Reader) (chunker.Manifest, error) {
	ch.Reset(r)
	var m chunker.Manifest
	for {
		c, err := ch.Next()
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return m, err
		}
		m.Chunks = append(m.Chunks, c.Ref())
	}
}
