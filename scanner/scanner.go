package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/ignore"
	"lockstep/index"
)

// Clock issues the HLC stamps of new local versions. A Scanner calls it
// from one goroutine at a time; a clock shared with other components (the
// replication engine stamps and observes too) must do its own locking.
// *conflict.Clock satisfies it.
type Clock interface {
	Now(now time.Time) conflict.Stamp
}

// DeleteGuard is asked before a scan records any deletion: deletions is
// how many live entries the scan found gone, total how many live entries
// the folder had before the scan. An error vetoes every deletion of that
// scan (they are found again by the next one) and is returned by the scan,
// wrapped; the scan's other changes are recorded.
type DeleteGuard func(folder string, deletions, total int) error

// Config describes the folder a Scanner scans.
type Config struct {
	Folder string          // the folder's id in the index
	Dir    string          // the folder's root directory
	Local  conflict.NodeID // this node: its counter is raised in new versions
	Clock  Clock
	Ignore *ignore.Matcher // nil: lockstep's own names only
	Params chunker.Params  // zero: chunker.DefaultParams
	Logger *slog.Logger    // nil: discard
	// DeleteGuard, when set, may veto a scan's deletions.
	DeleteGuard DeleteGuard
	// Readers is how many directories are read at once; Hashers how many
	// files are hashed at once. Defaults: 2×GOMAXPROCS and GOMAXPROCS.
	Readers, Hashers int
	// Now is the wall clock, for stamps and the racy-file check. Default
	// time.Now.
	Now func() time.Time
	// Writing, when set, reports whether a writer may still have a file
	// open (relative slash path, and its ctime; the watcher's Writing).
	// Such a file is not read — a writer stalled between creating and
	// filling it must not get its empty state recorded — but returned in
	// Result.Retry, its old record kept. It is called from several
	// goroutines.
	Writing func(rel string, changed time.Time) bool
}

// Stats count what scans did. Every field only grows.
type Stats struct {
	Scanned     int64 // entries examined on disk (files, directories, symlinks)
	Skipped     int64 // entries unchanged by the quick check: not read
	Hashed      int64 // files read and hashed
	BytesHashed int64
	Changed     int64 // new versions recorded: new, modified, metadata changes
	Deleted     int64 // tombstones recorded
	Refreshed   int64 // records whose local fields (inode, device) were updated
	Ignored     int64 // entries left alone by ignore rules (not descended)
	Special     int64 // sockets, devices, fifos and names lockstep cannot sync
	Errors      int64 // entries that could not be read: reported and skipped
	Retries     int64 // entries that changed while being read: to scan again
}

func (s *Stats) add(o Stats) {
	s.Scanned += o.Scanned
	s.Skipped += o.Skipped
	s.Hashed += o.Hashed
	s.BytesHashed += o.BytesHashed
	s.Changed += o.Changed
	s.Deleted += o.Deleted
	s.Refreshed += o.Refreshed
	s.Ignored += o.Ignored
	s.Special += o.Special
	s.Errors += o.Errors
	s.Retries += o.Retries
}

// counters is Stats with atomic fields, updated by a scan's goroutines.
type counters struct {
	scanned, skipped, hashed, bytesHashed, changed, deleted, refreshed,
	ignored, special, errors, retries atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Scanned: c.scanned.Load(), Skipped: c.skipped.Load(), Hashed: c.hashed.Load(),
		BytesHashed: c.bytesHashed.Load(), Changed: c.changed.Load(), Deleted: c.deleted.Load(),
		Refreshed: c.refreshed.Load(), Ignored: c.ignored.Load(), Special: c.special.Load(),
		Errors: c.errors.Load(), Retries: c.retries.Load(),
	}
}

// Result is what one scan did.
type Result struct {
	Stats Stats
	// Retry lists the paths that changed while they were read, or whose
	// record changed meanwhile (the engine wrote a version): their old
	// record is kept. Scan them again after a short while.
	Retry []string
}

// Scanner compares a folder on disk with its index and records what
// changed. One scan runs at a time; Scan and ScanPaths wait for each other.
// A Scanner starts goroutines only inside a scan and they have all exited
// when the scan returns.
type Scanner struct {
	ix  *index.Index
	cfg Config
	log *slog.Logger

	scanMu sync.Mutex // one scan at a time; guards cfg.Ignore
	// nextIgnore, when set, replaces cfg.Ignore from the next scan on.
	nextIgnore atomic.Pointer[ignore.Matcher]

	done    Stats // totals of finished scans, under doneMu
	doneMu  sync.Mutex
	current *counters // the running scan's counters, nil when idle

	warnMu sync.Mutex
	warned map[string]bool // paths warned about once: special files, bad names

	// racyMu guards racyPaths: files recorded while their mtime was still
	// within racyWindow, because their writer was known to be done with
	// them. The quick check cannot vouch for such a file (a write in the
	// same timestamp tick would leave size and mtime as recorded), so it
	// is read again whenever it is looked at, until a read finds its mtime
	// old enough.
	racyMu    sync.Mutex
	racyPaths map[string]struct{}

	// Seams for tests.
	openat    func(dirfd int, name string) (int, error)
	afterRead func(rel string) // after a file's content is read, before the final fstat
}

// New returns a scanner of cfg's folder. It touches nothing on disk.
func New(ix *index.Index, cfg Config) (*Scanner, error) {
	if cfg.Folder == "" || cfg.Dir == "" {
		return nil, errors.New("scanner: folder id and directory are required")
	}
	if cfg.Clock == nil {
		return nil, errors.New("scanner: a clock is required")
	}
	if cfg.Params == (chunker.Params{}) {
		cfg.Params = chunker.DefaultParams
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 2 * runtime.GOMAXPROCS(0)
	}
	if cfg.Hashers <= 0 {
		cfg.Hashers = runtime.GOMAXPROCS(0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scanner{
		ix:        ix,
		cfg:       cfg,
		log:       log.With("folder", cfg.Folder),
		warned:    map[string]bool{},
		racyPaths: map[string]struct{}{},
		openat: func(dirfd int, name string) (int, error) {
			return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		},
	}, nil
}

// SetIgnore replaces the ignore patterns from the next scan on; a scan
// already running keeps the ones it started with. Safe from any goroutine.
func (s *Scanner) SetIgnore(m *ignore.Matcher) {
	if m == nil {
		m, _ = ignore.New(nil)
	}
	s.nextIgnore.Store(m)
}

// Stats returns the totals of every scan so far, the running one included.
func (s *Scanner) Stats() Stats {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	st := s.done
	if s.current != nil {
		st.add(s.current.snapshot())
	}
	return st
}

// Scan walks the whole folder and records every change since the index
// last saw it, deletions included (subject to the DeleteGuard). A folder
// root that is missing or unreadable is an error, and nothing is deleted.
func (s *Scanner) Scan(ctx context.Context) (Result, error) {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	return s.scanAll(ctx)
}

func (s *Scanner) scanAll(ctx context.Context) (Result, error) {
	start := time.Now()
	r, err := s.newRun()
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	r.full = true
	var rootStat unix.Stat_t
	if err := unix.Fstat(r.rootFD, &rootStat); err != nil {
		return Result{}, fmt.Errorf("scan %s: stat root: %w", s.cfg.Dir, err)
	}
	if r.before.RootDevice == 0 {
		if err := s.ix.SetRootDevice(s.cfg.Folder, uint64(rootStat.Dev)); err != nil {
			return Result{}, err
		}
	}
	res, err := r.execute(ctx, []item{{rel: "", dev: uint64(rootStat.Dev), ino: rootStat.Ino, list: true}})
	s.log.Info("scan finished", "op", "scan", "dur", time.Since(start).Round(time.Millisecond),
		"scanned", res.Stats.Scanned, "hashed", res.Stats.Hashed, "bytes", res.Stats.BytesHashed,
		"changed", res.Stats.Changed, "deleted", res.Stats.Deleted, "retry", len(res.Retry), "errors", res.Stats.Errors)
	return res, err
}

// ScanPaths scans the given paths (relative to the folder root and
// slash-separated, or absolute inside it) and, for each that is a
// directory, everything below it: what the watcher reports. A path that no
// longer exists becomes a tombstone, with everything that was below it. A
// path whose parent directories are not yet in the index is scanned from
// its highest such parent, so new directories are recorded too.
func (s *Scanner) ScanPaths(ctx context.Context, paths []string) (Result, error) {
	return s.ScanPathsComplete(ctx, paths, nil)
}

// ScanPathsComplete is ScanPaths told, by complete (nil, or parallel to
// paths), which files their writer is known to be done with: renamed into
// place, or closed after their last write (the watcher's Batch.Complete).
// Such a file is recorded even when its mtime is within racyWindow — it
// must still not change while it is read — and is then read again at
// each later look, rather than trusted to the quick check, until a read
// finds its mtime old enough; it is also returned in Result.Retry so that
// this happens soon.
func (s *Scanner) ScanPathsComplete(ctx context.Context, paths []string, complete []bool) (Result, error) {
	return s.scanPaths(ctx, paths, complete, false)
}

// ScanPathsDone is ScanPathsComplete for files whose writer has said
// itself that it is done with them (an upload handler calling `lockstep
// wait`): they are recorded now even if the watcher has not yet read the
// events of their last change, which would otherwise hold them back for a
// timestamp tick.
func (s *Scanner) ScanPathsDone(ctx context.Context, paths []string) (Result, error) {
	complete := make([]bool, len(paths))
	for i := range complete {
		complete[i] = true
	}
	return s.scanPaths(ctx, paths, complete, true)
}

func (s *Scanner) scanPaths(ctx context.Context, paths []string, complete []bool, asserted bool) (Result, error) {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	var seeds []string
	var done map[string]bool
	for i, p := range paths {
		rel, err := s.relPath(p)
		if err != nil {
			return Result{}, err
		}
		if rel == "" {
			// The root itself: that is a full scan.
			return s.scanAll(ctx)
		}
		if i < len(complete) && complete[i] {
			if done == nil {
				done = map[string]bool{}
			}
			done[rel] = true
		}
		rel, err = s.highestNew(rel)
		if err != nil {
			return Result{}, err
		}
		seeds = append(seeds, rel)
	}
	seeds = topmost(seeds)
	r, err := s.newRun()
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	r.complete, r.asserted = done, asserted
	items := make([]item, len(seeds))
	for i, p := range seeds {
		items[i] = item{rel: p}
	}
	res, err := r.execute(ctx, items)
	s.log.Debug("paths scanned", "op", "scan", "paths", len(seeds), "changed", res.Stats.Changed,
		"deleted", res.Stats.Deleted, "retry", len(res.Retry))
	return res, err
}

// racyRecorded reports whether rel was recorded with a racy mtime and not
// read since with an old one.
func (s *Scanner) racyRecorded(rel string) bool {
	s.racyMu.Lock()
	defer s.racyMu.Unlock()
	_, ok := s.racyPaths[rel]
	return ok
}

// Racy reports whether the file at rel (relative to the folder, slash-
// separated) was recorded with a racy mtime and not read since with an old
// one: its record's size and mtime cannot vouch for its content. Safe for
// concurrent use.
func (s *Scanner) Racy(rel string) bool { return s.racyRecorded(rel) }

// setRacy notes whether rel's record may have a racy mtime.
func (s *Scanner) setRacy(rel string, racy bool) {
	s.racyMu.Lock()
	defer s.racyMu.Unlock()
	if racy {
		s.racyPaths[rel] = struct{}{}
	} else {
		delete(s.racyPaths, rel)
	}
}

// relPath turns a path given to ScanPaths into a clean slash-separated
// path relative to the folder root ("" for the root).
func (s *Scanner) relPath(p string) (string, error) {
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(s.cfg.Dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("scan %s: %q is outside the folder", s.cfg.Dir, p)
		}
		p = filepath.ToSlash(rel)
	}
	p = path.Clean(p)
	if p == "." {
		return "", nil
	}
	if p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("scan %s: %q is outside the folder", s.cfg.Dir, p)
	}
	return p, nil
}

// highestNew returns the highest ancestor of rel that the index does not
// hold as a live directory, or rel itself.
func (s *Scanner) highestNew(rel string) (string, error) {
	for i := 0; i < len(rel); i++ {
		if rel[i] != '/' {
			continue
		}
		rec, ok, err := s.ix.Get(s.cfg.Folder, rel[:i])
		if err != nil {
			return "", err
		}
		if !ok || rec.Deleted || rec.Type != index.Dir {
			return rel[:i], nil
		}
	}
	return rel, nil
}

// topmost sorts paths and drops duplicates and paths below another one:
// scanning a directory covers everything below it.
func topmost(paths []string) []string {
	slices.Sort(paths)
	paths = slices.Compact(paths)
	kept := make(map[string]bool, len(paths))
	var out []string
next:
	for _, p := range paths {
		// An ancestor sorts before p, so it has been seen already.
		for i := range len(p) {
			if p[i] == '/' && kept[p[:i]] {
				continue next
			}
		}
		kept[p] = true
		out = append(out, p)
	}
	return out
}

// warnOnce logs a warning about path the first time only, for conditions
// that every rescan would otherwise report again.
func (s *Scanner) warnOnce(rel, msg string, args ...any) {
	s.warnMu.Lock()
	seen := s.warned[rel]
	s.warned[rel] = true
	s.warnMu.Unlock()
	if !seen {
		s.log.Warn(msg, append([]any{"path", rel}, args...)...)
	}
}

// newRun prepares one scan: it opens the folder root and notes the
// folder's state before the scan.
func (s *Scanner) newRun() (*run, error) {
	if m := s.nextIgnore.Swap(nil); m != nil {
		s.cfg.Ignore = m
	}
	root, err := os.OpenRoot(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.cfg.Dir, err)
	}
	dir, err := root.Open(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("scan %s: %w", s.cfg.Dir, err)
	}
	before, err := s.ix.Info(s.cfg.Folder)
	if err != nil {
		dir.Close()
		root.Close()
		return nil, err
	}
	c := &counters{}
	s.doneMu.Lock()
	s.current = c
	s.doneMu.Unlock()
	return &run{s: s, root: root, rootDir: dir, rootFD: int(dir.Fd()), before: before, c: c}, nil
}
