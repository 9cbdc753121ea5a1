package watcher

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// defaultSource is the event source Run uses: on Linux, inotify read directly,
// which reports what fsnotify keeps to itself — a name renamed into place
// (IN_MOVED_TO) apart from a created one, and a file closed after writing
// (IN_CLOSE_WRITE).
var defaultSource = newInotifySource

// inotifyMask is what every directory watch asks for: fsnotify's set plus
// IN_CLOSE_WRITE.
const inotifyMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE

// inotifySource is one inotify instance with non-recursive directory
// watches. A reader goroutine turns the kernel's records into events with
// fsnotify's portable ops, plus opMoved and opClosed.
type inotifySource struct {
	f      *os.File // the inotify descriptor, non-blocking, read through the runtime poller
	rc     syscall.RawConn
	fd     int
	events chan fsnotify.Event
	errors chan error
	done   chan struct{} // closed by Close: the reader stops sending
	exited chan struct{} // closed by the reader when it returns

	mu    sync.Mutex
	byWD  map[int]string // watch descriptor → directory
	byDir map[string]int

	// readMu is held by the reader from a read of the descriptor until
	// every event of that read is sent, so that Sync sees either no read in
	// progress or none at all. sent counts the events sent, under readMu.
	readMu sync.Mutex
	sent   uint64

	closeOnce sync.Once
}

func newInotifySource() (source, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &inotifySource{
		f:      f,
		rc:     rc,
		fd:     fd,
		events: make(chan fsnotify.Event, eventBuffer),
		errors: make(chan error),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		byWD:   map[int]string{},
		byDir:  map[string]int{},
	}
	go s.read()
	return s, nil
}

func (s *inotifySource) Add(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wd, err := unix.InotifyAddWatch(s.fd, dir, inotifyMask)
	if err != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: err}
	}
	if old, ok := s.byWD[wd]; ok && old != dir {
		// The same directory under another name (it was renamed, and its
		// old watch not yet removed): the new name wins.
		delete(s.byDir, old)
	}
	s.byWD[wd] = dir
	s.byDir[dir] = wd
	return nil
}

func (s *inotifySource) Remove(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wd, ok := s.byDir[dir]
	if !ok {
		return fmt.Errorf("%s: %w", dir, fsnotify.ErrNonExistentWatch)
	}
	delete(s.byDir, dir)
	delete(s.byWD, wd)
	if _, err := unix.InotifyRmWatch(s.fd, uint32(wd)); err != nil {
		return &os.PathError{Op: "inotify_rm_watch", Path: dir, Err: err}
	}
	return nil
}

func (s *inotifySource) Events() <-chan fsnotify.Event { return s.events }
func (s *inotifySource) Errors() <-chan error          { return s.errors }
func (s *inotifySource) Closes() bool                  { return true }

// Close drops every watch (closing the instance does) and waits for the
// reader to exit; the reader closes both channels.
func (s *inotifySource) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.f.Close() // wakes the reader's blocked Read
		<-s.exited
	})
	return err
}

// Sync reports whether every event of a change made before t has been
// sent: at t no read was in progress and the kernel queue was empty. sent
// is how many events had been sent then.
func (s *inotifySource) Sync() (t time.Time, sent uint64, ok bool) {
	t = time.Now()
	if !s.readMu.TryLock() {
		return t, 0, false
	}
	defer s.readMu.Unlock()
	var n int
	var ierr error
	// TIOCINQ is FIONREAD on Linux: the bytes of events queued.
	if err := s.rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || ierr != nil || n != 0 {
		return t, 0, false
	}
	return t, s.sent, true
}

func (s *inotifySource) read() {
	defer close(s.exited)
	defer close(s.errors)
	defer close(s.events)
	var buf [64 << 10]byte
	for {
		var n int
		var rerr error
		err := s.rc.Read(func(fd uintptr) bool {
			s.readMu.Lock()
			for {
				n, rerr = unix.Read(int(fd), buf[:])
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				s.readMu.Unlock()
				return false // wait until readable
			}
			return true // readMu stays held until the events are sent
		})
		if err != nil {
			return // closed
		}
		ok := s.deliver(buf[:max(n, 0)], rerr)
		s.readMu.Unlock()
		if !ok {
			return
		}
	}
}

// deliver sends the events in one read's buffer (or the read's error); it
// reports false once Close was called.
func (s *inotifySource) deliver(buf []byte, rerr error) bool {
	if rerr != nil || len(buf) == 0 {
		if rerr == nil {
			rerr = io.ErrUnexpectedEOF
		}
		return s.sendError(fmt.Errorf("read inotify events: %w", rerr))
	}
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameEnd := off + unix.SizeofInotifyEvent + int(raw.Len)
		if nameEnd > len(buf) {
			break
		}
		name := buf[off+unix.SizeofInotifyEvent : nameEnd]
		off = nameEnd
		if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
			if !s.sendError(fsnotify.ErrEventOverflow) {
				return false
			}
			continue
		}
		ev, ok := s.translate(int(raw.Wd), raw.Mask, cString(name))
		if !ok {
			continue
		}
		select {
		case s.events <- ev:
			s.sent++
		case <-s.done:
			return false
		}
	}
	return true
}

func (s *inotifySource) sendError(err error) bool {
	select {
	case s.errors <- err:
		return true
	case <-s.done:
		return false
	}
}

// translate turns one inotify record into an event; ok is false when there
// is nothing to report. Like fsnotify: a watched directory that is deleted
// is reported by its parent's IN_DELETE only (or as Remove when the parent
// is not watched: the root), and one moved away as Rename of its old name,
// its watch dropped.
func (s *inotifySource) translate(wd int, mask uint32, name string) (fsnotify.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, ok := s.byWD[wd]
	if !ok {
		return fsnotify.Event{}, false // removed meanwhile
	}
	if mask&(unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
		delete(s.byWD, wd)
		if s.byDir[dir] == wd {
			delete(s.byDir, dir)
		}
		return fsnotify.Event{}, false
	}
	path := dir
	if name != "" {
		path = dir + "/" + name
	}
	if mask&unix.IN_DELETE_SELF != 0 {
		if _, parentWatched := s.byDir[filepath.Dir(dir)]; parentWatched {
			return fsnotify.Event{}, false
		}
	}
	if mask&unix.IN_MOVE_SELF != 0 {
		delete(s.byWD, wd)
		if s.byDir[dir] == wd {
			delete(s.byDir, dir)
		}
		unix.InotifyRmWatch(s.fd, uint32(wd))
	}
	return fsnotify.Event{Name: path, Op: inotifyOp(mask)}, true
}

// inotifyOp maps an inotify mask to fsnotify's ops, plus opMoved for a
// name renamed into place and opClosed for a close after writing.
func inotifyOp(mask uint32) fsnotify.Op {
	var op fsnotify.Op
	if mask&unix.IN_CREATE != 0 {
		op |= fsnotify.Create
	}
	if mask&unix.IN_MOVED_TO != 0 {
		op |= fsnotify.Create | opMoved
	}
	if op.Has(fsnotify.Create) && mask&unix.IN_ISDIR == 0 {
		op |= opNotDir
	}
	if mask&(unix.IN_DELETE|unix.IN_DELETE_SELF) != 0 {
		op |= fsnotify.Remove
	}
	if mask&unix.IN_MODIFY != 0 {
		op |= fsnotify.Write
	}
	if mask&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0 {
		op |= fsnotify.Rename
	}
	if mask&unix.IN_ATTRIB != 0 {
		op |= fsnotify.Chmod
	}
	if mask&unix.IN_CLOSE_WRITE != 0 {
		op |= opClosed
	}
	return op
}

// cString returns the name in an inotify record, without its NUL padding.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// timestampTick is the resolution of the coarse real-time clock that file
// systems stamp ctime with (one jiffy), bounded to [1ms, 10ms] and 10ms
// when it cannot be read.
func timestampTick() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_REALTIME_COARSE, &ts); err != nil {
		return maxTimeTick
	}
	return min(max(time.Duration(ts.Nano()), time.Millisecond), maxTimeTick)
}

// ctimeOf is fi's change time.
func ctimeOf(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return time.Time{}
}
