package scanner

import (
	"context"
	"errors"
	"io"

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
			unix.Close(j.fd)
			continue
		}
		r.hashOne(ctx, ch, j)
	}
}

// errGrew stops the read of a file that turned out longer than its stat.
var errGrew = errors.New("file grew while being read")

// fileReader reads an open file descriptor that should hold exactly size
// bytes. It reports io.EOF after size bytes without another read (the
// final fstat notices a file that grew), and stops with errGrew if a read
// returns more. It uses the descriptor directly: an *os.File would cost
// two more system calls per file (the poller's fcntl and epoll_ctl).
type fileReader struct {
	fd   int
	size int64
	n    int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.n >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - r.n + 1; int64(len(p)) > rest {
		p = p[:rest] // one byte more than expected shows growth
	}
	for {
		k, err := unix.Read(r.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		r.n += int64(k)
		if r.n > r.size {
			return k, errGrew
		}
		if k == 0 {
			return 0, io.EOF // shorter than its stat: the caller sees n < size
		}
		return k, nil
	}
}

// hashOne reads and hashes one file. The file must not change from the
// reader's stat of it (before it was opened) to the end of the read: the
// stat after the read must show the same inode, size, mtime and ctime, the
// bytes read must equal the size, and the mtime must not be racy.
// Otherwise the file is not recorded but retried later, and its old record
// kept.
func (r *run) hashOne(ctx context.Context, ch *chunker.Chunker, j hashJob) {
	defer unix.Close(j.fd)
	fr := &fileReader{fd: j.fd, size: j.st.size}
	var m chunker.Manifest
	var err error
	if j.st.size >= largeFile {
		m, err = chunker.SplitParallel(ctx, fr, r.s.cfg.Params, r.s.cfg.Hashers)
	} else {
		m, err = split(ch, fr)
	}
	r.c.hashed.Add(1)
	r.c.bytesHashed.Add(fr.n)
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
	var ust unix.Stat_t
	if err := unix.Fstat(j.fd, &ust); err != nil {
		r.unreadable(j.rel, "fstat", err)
		return
	}
	end := fromUnix(&ust)
	if end.kind != kindFile || end.ino != j.st.ino || end.dev != j.st.dev || changed(j.st, end) ||
		fr.n != end.size {
		r.retryLater(j.rel)
		return
	}
	fresh := racy(end.mtime, r.s.cfg.Now())
	switch recordRacy(fresh, j.complete) {
	case racyRetry:
		r.retryLater(j.rel)
		return
	case racyVerify:
		r.verifyLater(j.rel)
	}
	r.s.setRacy(j.rel, fresh)
	act := decideContent(end, m, "", j.old)
	if act == skip {
		r.c.skipped.Add(1)
		return
	}
	r.emit(ctx, change{rec: record(j.rel, end, m, ""), old: j.old, act: act})
}

// racyOutcome is what becomes of a file read intact.
type racyOutcome uint8

const (
	racyRecord racyOutcome = iota // record it: its mtime is old enough
	racyRetry                     // keep the old record; read it again later
	racyVerify                    // record it, and read it again once its mtime is old
)

// recordRacy decides, for a file that did not change while it was read,
// from whether its mtime is racy (fresh) and whether its writer is known
// to be done with it (complete), whether it is recorded now. A fresh file
// that may still be written is not: a write in the same timestamp tick
// would be invisible to the quick check, and, for all the scanner knows,
// its writer only paused. One whose writer is done is recorded at once,
// and read again once its mtime is old, in case another writer touched it
// within the same tick.
func recordRacy(fresh, complete bool) racyOutcome {
	switch {
	case !fresh:
		return racyRecord
	case complete:
		return racyVerify
	default:
		return racyRetry
	}
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
