package vfs

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A large file arriving from a peer is written with direct I/O where the
// filesystem offers it (statx reports its alignment): its chunks, which
// arrive at any offset and of any length, are gathered in aligned windows
// of directWindow bytes, and each full window is written in one O_DIRECT
// pwrite. The page cache then neither copies the data nor allocates a
// page per 4 KiB for it, which is most of what buffered writes of fresh
// data cost the kernel (dd, 1 GiB: 1.3–2.6 s of system time buffered
// against 0.1–0.3 s direct on the test machine), and a transfer of
// gigabytes does not push the web server's own files out of the cache.
// The fsync at Seal still makes it all durable: direct I/O bypasses the
// cache, not the device's.
//
// A window that cannot get a buffer (too many open at once), the file's
// last window when it is not a multiple of the alignment, and any write to
// a window already written go through the page cache as before.

const (
	directWindow = 256 << 10
	// directBuffers bounds the window buffers in use in the process (16
	// MiB); directKeep of them are kept for reuse when free.
	directBuffers = 64
	directKeep    = 16
	// directAlignMax: a filesystem asking for more alignment than a page
	// is left to the page cache.
	directAlignMax = 4096
)

var (
	directInUse atomic.Int64
	directFree  = make(chan []byte, directKeep)
)

// getDirectBuf returns a free window buffer aligned to directAlignMax, or
// nil when directBuffers are in use.
func getDirectBuf() []byte {
	select {
	case b := <-directFree:
		directInUse.Add(1)
		return b
	default:
	}
	if directInUse.Add(1) > directBuffers {
		directInUse.Add(-1)
		return nil
	}
	raw := make([]byte, directWindow+directAlignMax)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % directAlignMax); r != 0 {
		skip = directAlignMax - r
	}
	return raw[skip : skip+directWindow : skip+directWindow]
}

func putDirectBuf(b []byte) {
	directInUse.Add(-1)
	select {
	case directFree <- b[:directWindow]:
	default:
	}
}

// DirectWriter writes a temp file's data with direct I/O (see above). Its
// WriteAt may be called from several goroutines at once, for disjoint or
// identical ranges; Close must be called before the temp is sealed.
type DirectWriter struct {
	t      *Temp
	direct *os.File // the temp file opened again with O_DIRECT
	size   int64
	align  int64

	mu   sync.Mutex
	wins map[int64]*window // by index; done windows stay, with no buffer
	err  error             // sticky: a window's data may be lost
	// noDirect is set once the filesystem refused a direct write it had
	// promised to take: the rest goes through the page cache.
	noDirect bool
}

// window is one aligned part of the file being gathered.
type window struct {
	buf    []byte // nil once written out, or when it never had one
	spans  []span // the ranges of buf filled, sorted and disjoint
	filled int64
}

type span struct{ from, to int64 }

// Direct returns a writer of the temp file's size bytes with direct I/O,
// or nil when the filesystem has none for it (or is tmpfs), or the file is
// too small for it to pay.
func (t *Temp) Direct(size int64) *DirectWriter {
	if size < 2*directWindow {
		return nil
	}
	fd := int(t.file.Fd())
	// tmpfs takes direct writes (Linux 6.6 on) into the page cache all
	// the same: gathering them would only add a copy.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil || sfs.Type == unix.TMPFS_MAGIC {
		return nil
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx); err != nil {
		return nil
	}
	mem, off := int64(stx.Dio_mem_align), int64(stx.Dio_offset_align)
	if stx.Mask&unix.STATX_DIOALIGN == 0 || off == 0 || mem == 0 ||
		off > directAlignMax || mem > directAlignMax || off&(off-1) != 0 || mem&(mem-1) != 0 {
		return nil
	}
	// The same file, opened again for direct writes alone: the temp's own
	// descriptor keeps buffered writes for what cannot be aligned.
	dfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return &DirectWriter{
		t:      t,
		direct: os.NewFile(uintptr(dfd), t.rel),
		size:   size,
		align:  off,
		wins:   map[int64]*window{},
	}
}

// WriteAt writes p at off, as io.WriterAt.
func (w *DirectWriter) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("write %s: %d bytes at %d past its size %d", w.t.rel, len(p), off, w.size)
	}
	done := 0
	for done < len(p) {
		k := off / directWindow
		end := min((k+1)*directWindow, w.size)
		n := int(min(int64(len(p)-done), end-off))
		if err := w.put(k, p[done:done+n], off); err != nil {
			return done, err
		}
		done += n
		off += int64(n)
	}
	return done, nil
}

// put writes p, which lies within window k, at off.
func (w *DirectWriter) put(k int64, p []byte, off int64) error {
	start := k * directWindow
	length := min(directWindow, w.size-start)
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	win := w.wins[k]
	if win == nil {
		win = &window{buf: getDirectBuf()}
		w.wins[k] = win
	}
	if win.buf == nil {
		w.mu.Unlock()
		_, err := w.t.file.WriteAt(p, off)
		return err
	}
	copy(win.buf[off-start:], p)
	win.add(off-start, off-start+int64(len(p)))
	if win.filled < length {
		w.mu.Unlock()
		return nil
	}
	buf := win.buf[:length]
	win.buf, win.spans = nil, nil
	viaCache := w.noDirect || length%w.align != 0
	w.mu.Unlock()

	err := w.flush(buf, start, viaCache)
	putDirectBuf(buf)
	return err
}

// flush writes a full window out.
func (w *DirectWriter) flush(buf []byte, start int64, viaCache bool) error {
	if !viaCache {
		_, err := w.direct.WriteAt(buf, start)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return w.fail(err)
		}
		w.mu.Lock()
		w.noDirect = true
		w.mu.Unlock()
	}
	if _, err := w.t.file.WriteAt(buf, start); err != nil {
		return w.fail(err)
	}
	return nil
}

// fail makes err the answer to every later write: the window that failed
// held data of chunks already reported written.
func (w *DirectWriter) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// Close writes out what windows are still partly filled, through the page
// cache (after a complete assembly there are none), and releases the
// buffers and the direct descriptor. It returns the first error of any
// write.
func (w *DirectWriter) Close() error {
	w.mu.Lock()
	err := w.err
	for k, win := range w.wins {
		if win.buf == nil {
			continue
		}
		if err == nil {
			start := k * directWindow
			for _, s := range win.spans {
				if _, werr := w.t.file.WriteAt(win.buf[s.from:s.to], start+s.from); werr != nil {
					err = werr
					break
				}
			}
		}
		putDirectBuf(win.buf)
		win.buf, win.spans = nil, nil
	}
	if err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	if cerr := w.direct.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// add records [from, to) as filled, counting each byte once however
// often it is written.
func (win *window) add(from, to int64) {
	i := 0
	for i < len(win.spans) && win.spans[i].to < from {
		i++
	}
	j := i
	for j < len(win.spans) && win.spans[j].from <= to {
		from = min(from, win.spans[j].from)
		to = max(to, win.spans[j].to)
		win.filled -= win.spans[j].to - win.spans[j].from
		j++
	}
	win.spans = slices.Replace(win.spans, i, j, span{from, to})
	win.filled += to - from
}
