package watcher

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// source is the stream of filesystem events Run consumes: fsnotify in
// production, a fake or a fault-injecting wrapper in tests. Only Run's
// goroutine calls its methods.
type source interface {
	// Add starts watching one directory (absolute path), not recursively.
	Add(dir string) error
	// Remove stops watching a directory added before. It may fail when the
	// kernel already dropped the watch (the directory is gone); callers
	// treat that as done.
	Remove(dir string) error
	// Events and Errors deliver what the kernel reported. Both are closed
	// by Close.
	Events() <-chan fsnotify.Event
	Errors() <-chan error
	// Closes reports whether the source tells apart what fsnotify cannot:
	// opMoved on a Create that was a rename into place, and opClosed
	// events (a file closed after being open for writing). Only then can
	// the watcher know that a writer is done with a file.
	Closes() bool
	// Sync reports whether, at t, every event of a change made before t
	// had been sent on Events — sent of them in all — for a source that
	// can tell (ok false otherwise, or when it cannot tell now). It is
	// called from any goroutine, even after Close.
	Sync() (t time.Time, sent uint64, ok bool)
	// Close drops every watch; when it returns, the source's goroutines
	// have exited.
	Close() error
}

// Ops beyond fsnotify's portable ones, set only by a source whose Closes
// is true. They use bits fsnotify leaves free.
const (
	// opMoved comes with Create: the name was renamed into place
	// (IN_MOVED_TO), so whoever wrote the file finished it elsewhere.
	opMoved fsnotify.Op = 1 << 28
	// opClosed: the file was closed by a process that had it open for
	// writing (IN_CLOSE_WRITE).
	opClosed fsnotify.Op = 1 << 29
	// opNotDir comes with Create: the source knows the name is not a
	// directory (inotify's IN_ISDIR is unset).
	opNotDir fsnotify.Op = 1 << 27
)

// eventBuffer is the length of fsnotify's event channel. It adds to the
// kernel queue (fs.inotify.max_queued_events, 16384 by default) so that a
// burst — a deploy unpacking thousands of files — is absorbed while Run is
// busy adding watches for new directories, instead of overflowing.
const eventBuffer = 16384

// notifySource is fsnotify: the portable source, and the one used where
// inotify cannot be read directly.
type notifySource struct{ w *fsnotify.Watcher }

func newNotifySource() (source, error) {
	w, err := fsnotify.NewBufferedWatcher(eventBuffer)
	if err != nil {
		return nil, err
	}
	return notifySource{w}, nil
}

func (s notifySource) Add(dir string) error            { return s.w.Add(dir) }
func (s notifySource) Remove(dir string) error         { return s.w.Remove(dir) }
func (s notifySource) Events() <-chan fsnotify.Event   { return s.w.Events }
func (s notifySource) Errors() <-chan error            { return s.w.Errors }
func (s notifySource) Close() error                    { return s.w.Close() }
func (s notifySource) Closes() bool                    { return false }
func (s notifySource) Sync() (time.Time, uint64, bool) { return time.Time{}, 0, false }

const (
	maxUserWatchesFile    = "/proc/sys/fs/inotify/max_user_watches"
	maxUserInstancesFile  = "/proc/sys/fs/inotify/max_user_instances"
	maxQueuedEventsSysctl = "fs.inotify.max_queued_events"
)

// readSysctl reads one integer from /proc/sys.
func readSysctl(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", file, err)
	}
	return n, nil
}

func readWatchLimit() (int, error) { return readSysctl(maxUserWatchesFile) }

// WatchLimitError says that the kernel refused a directory watch because
// this user's inotify watches are used up (ENOSPC from inotify_add_watch).
// The watcher then scans the folder periodically instead; the error text
// is what an operator needs to fix it.
type WatchLimitError struct {
	Root   string // the folder
	Dir    string // the directory whose watch was refused
	Limit  int    // fs.inotify.max_user_watches now; 0 when it could not be read
	Needed int    // directories the folder needs watched (ignored ones excluded)
	Err    error  // what inotify_add_watch returned
}

func (e *WatchLimitError) Error() string {
	limit := "unreadable"
	if e.Limit > 0 {
		limit = strconv.Itoa(e.Limit)
	}
	// Round the suggestion up to 64Ki so that it leaves room for the
	// folder to grow and for other inotify users of the same uid.
	suggest := (e.Limit + e.Needed + 65535) / 65536 * 65536
	return fmt.Sprintf("watch %s: inotify watch limit reached: fs.inotify.max_user_watches is %s "+
		"and folder %s needs %d directory watches (the limit is shared by every inotify user of this uid); "+
		"raise it, e.g. sysctl -w fs.inotify.max_user_watches=%d: %v",
		e.Dir, limit, e.Root, e.Needed, suggest, e.Err)
}

func (e *WatchLimitError) Unwrap() error { return e.Err }

// isWatchLimit reports whether an error from adding a watch means the
// per-user watch limit is exhausted.
func isWatchLimit(err error) bool { return errors.Is(err, syscall.ENOSPC) }

// isGone reports whether an error from watching or listing a directory
// only means that it no longer exists (or is no longer a directory): a race
// with a removal whose event is on its way, not a failure.
func isGone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// instancesError explains a failure to create an inotify instance at all.
func instancesError(root string, err error) error {
	if errors.Is(err, syscall.EMFILE) {
		limit := "unreadable"
		if n, rerr := readSysctl(maxUserInstancesFile); rerr == nil {
			limit = strconv.Itoa(n)
		}
		return fmt.Errorf("watch %s: inotify instance limit reached: fs.inotify.max_user_instances is %s; raise it: %w",
			root, limit, err)
	}
	return fmt.Errorf("watch %s: start inotify: %w", root, err)
}

// links returns a file's hard link count; 1 when unknown.
// inoOf is fi's inode number, 0 where the platform does not say.
func inoOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

func links(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
