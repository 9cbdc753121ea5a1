package scanner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lockstep/chunker"
	"lockstep/ignore"
	"lockstep/index"
	"lockstep/vfs"
)

// item is one unit of work for a reader: a directory to list (and every
// directory below it), or a single entry to look at in its parent.
type item struct {
	rel  string
	list bool
	// dev and ino are what the parent's listing saw of a directory to
	// list; the opened directory must be that one (0: not checked).
	dev, ino uint64
}

// hashJob is a file to read, opened by the reader that found it.
type hashJob struct {
	rel string
	st  stat
	old *index.Record
	fd  int // open for reading; the hasher closes it
	// complete: its writer is known to be done with it, so a racy mtime
	// does not stop it being recorded.
	complete bool
}

// change is a decided change on its way to the writer.
type change struct {
	rec index.Record  // the new state; version fields are the writer's
	old *index.Record // the record it was decided from (nil: none)
	act action        // version or refresh
}

// deletion is a path found gone: the path itself (unless childrenOnly,
// for a directory replaced by something else) and everything below it.
type deletion struct {
	rel          string
	childrenOnly bool
}

// run is one scan: readers list directories and stat entries, hashers read
// files, and one writer batches the results into the index.
type run struct {
	s       *Scanner
	root    *os.Root
	rootDir *os.File
	rootFD  int
	before  index.FolderInfo
	c       *counters
	// complete holds the files (relative paths) that their writer is
	// known to be done with; nil for none.
	complete map[string]bool
	// asserted: the complete files' writer said so itself; the watcher's
	// view of open files is not consulted for them.
	asserted bool
	// full: the run scans the whole folder.
	full bool

	q       queue
	hashCh  chan hashJob
	writeCh chan change
	cancel  context.CancelFunc

	mu        sync.Mutex
	retry     []string
	deletions []deletion
	ndel      int   // live records the deletions would remove
	err       error // the first failure that stops the scan
}

func (r *run) close() {
	r.rootDir.Close()
	r.root.Close()
	s := r.s
	s.doneMu.Lock()
	s.done.add(r.c.snapshot())
	s.current = nil
	s.doneMu.Unlock()
}

func (r *run) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.cancel()
}

func (r *run) retryLater(rel string) {
	r.c.retries.Add(1)
	r.mu.Lock()
	r.retry = append(r.retry, rel)
	r.mu.Unlock()
}

// verifyLater asks for rel to be looked at again soon, though it was
// recorded: its mtime was racy.
func (r *run) verifyLater(rel string) {
	r.mu.Lock()
	r.retry = append(r.retry, rel)
	r.mu.Unlock()
}

// unreadable reports an entry that cannot be read. It is skipped; its
// record, if any, is kept.
func (r *run) unreadable(rel, op string, err error) {
	r.c.errors.Add(1)
	r.s.log.Warn("cannot read; skipped", "path", rel, "op", op, "err", err)
}

// execute runs the pipeline from seeds, then records deletions.
func (r *run) execute(ctx context.Context, seeds []item) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancel = cancel
	cfg := &r.s.cfg
	r.hashCh = make(chan hashJob, 2*cfg.Hashers)
	r.writeCh = make(chan change, writeBatch)
	r.q.init()
	stop := context.AfterFunc(ctx, r.q.abort)
	defer stop()
	for _, it := range seeds {
		r.q.push(it)
	}
	if len(seeds) == 0 {
		r.q.abort()
	}

	var readers, hashers sync.WaitGroup
	for range cfg.Readers {
		readers.Go(func() { r.reader(ctx) })
	}
	for range cfg.Hashers {
		hashers.Go(func() { r.hasher(ctx) })
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		r.writer()
	}()
	readers.Wait()
	close(r.hashCh)
	hashers.Wait()
	close(r.writeCh)
	<-wrote

	err := r.err
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && len(r.deletions) > 0 {
		err = r.delete(ctx)
	}
	slices.Sort(r.retry)
	res := Result{Stats: r.c.snapshot(), Retry: slices.Compact(r.retry)}
	if err != nil {
		return res, fmt.Errorf("scan %s: %w", cfg.Dir, err)
	}
	return res, nil
}

func (r *run) reader(ctx context.Context) {
	for {
		it, ok := r.q.pop()
		if !ok {
			return
		}
		if ctx.Err() == nil {
			if it.list {
				r.listDir(ctx, it)
			} else {
				r.seed(ctx, it.rel)
			}
		}
		r.q.done()
	}
}

// openDir opens the directory rel, relative to the folder root, and checks
// that it is the directory the parent's listing saw (dev, ino), so that a
// directory swapped for a symlink meanwhile is never followed.
func (r *run) openDir(rel string, dev, ino uint64) (*os.File, error) {
	f, err := r.root.OpenFile(orDot(rel), os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if ino != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, err
		}
		if st.Ino != ino || uint64(st.Dev) != dev {
			f.Close()
			return nil, errReplaced
		}
	}
	return f, nil
}

var errReplaced = errors.New("replaced while being scanned")

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// listDir compares a directory's entries with the index's records of its
// children: a merge of two name-sorted lists, so nothing of the directory
// is held in memory but its names.
func (r *run) listDir(ctx context.Context, it item) {
	f, err := r.openDir(it.rel, it.dev, it.ino)
	if err != nil {
		if fi, lerr := r.root.Lstat(orDot(it.rel)); errors.Is(err, errReplaced) || lerr != nil || !fi.IsDir() {
			// Gone or replaced since the parent was listed (a link
			// out of the folder fails to open): look again later.
			r.retryLater(it.rel)
			return
		}
		r.unreadable(it.rel, "open directory", err)
		return
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		// Without the full list, missing names prove nothing: no
		// deletions from this directory.
		r.unreadable(it.rel, "read directory", err)
		return
	}
	slices.Sort(names)
	dirfd := int(f.Fd())
	prefix := ""
	if it.rel != "" {
		prefix = it.rel + "/"
	}
	i := 0
	err = r.s.ix.Children(ctx, r.s.cfg.Folder, it.rel, func(rec index.Record) error {
		name := rec.Path[len(prefix):]
		for i < len(names) && names[i] < name {
			r.entry(ctx, dirfd, prefix, names[i], nil)
			i++
		}
		if i < len(names) && names[i] == name {
			r.entry(ctx, dirfd, prefix, names[i], &rec)
			i++
		} else {
			r.gone(ctx, &rec)
		}
		return ctx.Err()
	})
	for ; err == nil && i < len(names); i++ {
		r.entry(ctx, dirfd, prefix, names[i], nil)
	}
	if err != nil && ctx.Err() == nil {
		r.fail(err)
	}
}

// seed looks at one path given to ScanPaths, in its parent directory.
func (r *run) seed(ctx context.Context, rel string) {
	old, ok, err := r.s.ix.Get(r.s.cfg.Folder, rel)
	if err != nil {
		r.fail(err)
		return
	}
	var oldp *index.Record
	if ok {
		oldp = &old
	}
	parent, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		parent, name = rel[:i], rel[i+1:]
	}
	dir, err := r.openParent(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, vfs.ErrSymlinkParent) {
			// The parent is gone or is no directory: so is rel.
			r.gone(ctx, oldp)
			return
		}
		r.unreadable(rel, "open parent", err)
		return
	}
	defer dir.Close()
	prefix := ""
	if parent != "" {
		prefix = parent + "/"
	}
	r.entry(ctx, int(dir.Fd()), prefix, name, oldp)
}

// openParent opens the directory dir after checking that neither it nor
// any directory above it is a symlink: the scanner never follows one.
func (r *run) openParent(dir string) (*os.File, error) {
	if dir == "" {
		return r.openDir("", 0, 0)
	}
	var last fs.FileInfo
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		fi, err := r.root.Lstat(dir[:i])
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: %w", dir[:i], vfs.ErrSymlinkParent)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s: %w", dir[:i], syscall.ENOTDIR)
		}
		last = fi
	}
	st := last.Sys().(*syscall.Stat_t)
	return r.openDir(dir, uint64(st.Dev), st.Ino)
}

// entry examines one name in the directory open as dirfd, against its
// stored record old (nil: none).
func (r *run) entry(ctx context.Context, dirfd int, prefix, name string, old *index.Record) {
	rel := prefix + name
	if ignore.Internal(name) {
		return
	}
	var ust unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &ust, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			r.gone(ctx, old)
			return
		}
		r.unreadable(rel, "stat", err)
		return
	}
	st := fromUnix(&ust)
	if r.s.cfg.Ignore.Match(rel, st.kind == kindDir) {
		r.c.ignored.Add(1)
		return
	}
	if err := vfs.CheckPath(rel); err != nil {
		r.c.special.Add(1)
		r.s.warnOnce(rel, "name cannot be synced; skipped", "err", err)
		return
	}
	if st.kind == kindSpecial {
		r.c.special.Add(1)
		r.s.warnOnce(rel, "not a file, directory or symlink (socket, device or fifo); skipped",
			"mode", fmt.Sprintf("%#o", ust.Mode))
		r.gone(ctx, old)
		return
	}
	r.c.scanned.Add(1)
	if live(old) && old.Type == index.Dir && st.kind != kindDir {
		r.addDeletion(ctx, deletion{rel: rel, childrenOnly: true})
	}
	act := decide(st, old)
	if st.kind == kindFile && (act == skip || act == version) && r.s.racyRecorded(rel) {
		// Recorded with a racy mtime: the quick check cannot vouch for it.
		act = hash
	}
	switch act {
	case skip:
		r.c.skipped.Add(1)
	case version, refresh:
		var m chunker.Manifest
		if st.kind == kindFile {
			m = old.Manifest // a metadata change: same content
		}
		r.emit(ctx, change{rec: record(rel, st, m, ""), old: old, act: act})
	case readTarget:
		target, err := readlinkat(dirfd, name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				r.gone(ctx, old)
			} else if errors.Is(err, unix.EINVAL) {
				r.retryLater(rel) // no longer a symlink
			} else {
				r.unreadable(rel, "readlink", err)
			}
			return
		}
		switch act := decideContent(st, chunker.Manifest{}, target, old); act {
		case skip:
			r.c.skipped.Add(1)
		default:
			r.emit(ctx, change{rec: record(rel, st, chunker.Manifest{}, target), old: old, act: act})
		}
	case hash:
		if w := r.s.cfg.Writing; w != nil && !(r.asserted && r.complete[rel]) && w(rel, time.Unix(0, st.ctime)) {
			r.retryLater(rel) // its close reports it again
			return
		}
		fd, err := r.s.openat(dirfd, name)
		if err != nil {
			switch {
			case errors.Is(err, unix.ENOENT):
				r.gone(ctx, old)
			case errors.Is(err, unix.ELOOP):
				r.retryLater(rel) // became a symlink
			default:
				r.unreadable(rel, "open", err)
			}
			return
		}
		select {
		case r.hashCh <- hashJob{rel: rel, st: st, old: old, fd: fd, complete: r.complete[rel]}:
		case <-ctx.Done():
			unix.Close(fd)
		}
	}
	if st.kind == kindDir {
		r.q.push(item{rel: rel, list: true, dev: st.dev, ino: st.ino})
	}
}

func readlinkat(dirfd int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		k, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if k < n {
			return string(buf[:k]), nil
		}
	}
}

func (r *run) emit(ctx context.Context, c change) {
	select {
	case r.writeCh <- c:
	case <-ctx.Done():
	}
}

// gone notes that old's path is no longer on disk. Ignored paths are left
// alone: ignoring a path must never delete it on the peers.
func (r *run) gone(ctx context.Context, old *index.Record) {
	if old != nil {
		r.s.setRacy(old.Path, false)
	}
	if !live(old) || r.s.cfg.Ignore.Match(old.Path, old.Type == index.Dir) {
		return
	}
	r.addDeletion(ctx, deletion{rel: old.Path})
}

// addDeletion notes a deletion and counts the live records it removes, for
// the DeleteGuard. Nothing is written until the walk is over.
func (r *run) addDeletion(ctx context.Context, d deletion) {
	n := 0
	err := r.s.ix.Walk(ctx, r.s.cfg.Folder, d.rel, func(rec index.Record) error {
		if !rec.Deleted && !(d.childrenOnly && rec.Path == d.rel) {
			n++
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			r.fail(err)
		}
		return
	}
	r.mu.Lock()
	r.deletions = append(r.deletions, d)
	r.ndel += n
	r.mu.Unlock()
}

// queue holds the items waiting for a reader, last in first out, so that
// the walk goes depth first and the queue stays short. It closes itself
// when it is empty and no reader holds an item, since only readers add.
type queue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []item
	pending int // queued or being processed
	closed  bool
}

func (q *queue) init() { q.cond.L = &q.mu }

func (q *queue) push(it item) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, it)
		q.pending++
		q.cond.Signal()
	}
	q.mu.Unlock()
}

// pop returns the next item, waiting for one while others are being
// processed; ok is false when the walk is over.
func (q *queue) pop() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return item{}, false
	}
	it := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return it, true
}

// done marks a popped item as processed.
func (q *queue) done() {
	q.mu.Lock()
	q.pending--
	if q.pending == 0 {
		q.closed = true
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

// abort ends the walk early: queued items are dropped.
func (q *queue) abort() {
	q.mu.Lock()
	q.pending -= len(q.items)
	q.items = nil
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}
