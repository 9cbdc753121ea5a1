package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultSettle         = 50 * time.Millisecond
	DefaultRescanInterval = time.Hour
	DefaultPollInterval   = 10 * time.Second
	DefaultMaxPending     = 100_000
	DefaultMaxBatch       = 1000
)

// Own tells the events of files the watcher's own process linked into
// place (see Options.Own).
type Own interface {
	// OwnCreated: the regular file rel appeared (not by a rename) with
	// inode ino; true drops the event.
	OwnCreated(rel string, ino uint64) bool
	// OwnLinked: rel appeared (not by a rename) and the kernel says it is
	// not a directory; true drops the event without a look at the file,
	// false asks OwnCreated once it is known.
	OwnLinked(rel string) bool
	// OwnOther: anything else happened to rel.
	OwnOther(rel string)
	// OwnReset: events may have been lost; every claim ends.
	OwnReset()
}

// Options tune a Watcher. The zero value gives the defaults.
type Options struct {
	// Settle is how long a path must stay quiet after its last write
	// before it is reported. Default 50ms.
	Settle time.Duration
	// Prompt is how long a path must stay quiet after an event that by
	// itself leaves nothing half written: a file created or renamed into
	// place, a removal, a change of attributes. A write after such an event
	// puts the path back on the Settle clock. Default Settle/10, but more
	// than the file system's timestamp tick (5ms with 50ms and HZ=250); at most
	// Settle.
	Prompt time.Duration
	// RescanInterval is the period of the safety rescan that catches what
	// the kernel never reported (an unmount, a lost watch). It is jittered
	// by ±10% so that the nodes of a cluster do not rescan in step. Default
	// 1h; negative disables it.
	RescanInterval time.Duration
	// PollInterval is the period of full rescans while the folder cannot
	// be watched (Mode Polling). Default 10s.
	PollInterval time.Duration
	// Ignore reports whether a path (slash-separated, relative to the
	// root) is to be left alone; an ignored directory is not watched. It
	// is called from Run's goroutine only. Nil ignores nothing but
	// lockstep's own names, which are always ignored.
	Ignore func(rel string, isDir bool) bool
	// Unnamed reports whether a path is the name under which the kernel
	// reports a file being written with no name yet (O_TMPFILE: "#<inode>")
	// by lockstep itself; the writes and attribute changes reported under
	// it are dropped at once. Called from Run's goroutine only. Nil: none.
	Unnamed func(rel string) bool
	// Own, when set, claims the files lockstep linked into place itself
	// and recorded already (vfs.Folder's OwnCreated and friends): the
	// event of their creation is dropped. Called from
	// Run's goroutine only. Nil: none.
	Own Own
	// Logger receives state changes (watching, polling, overflows). Pass
	// one that already carries the folder id. Nil discards.
	Logger *slog.Logger
	// MaxPending bounds the paths held while they settle or wait for the
	// consumer; beyond it they collapse into one rescan. Default 100000.
	MaxPending int
	// MaxBatch bounds the paths in one Batch. Default 1000.
	MaxBatch int
}

// Batch is what Run emits: paths that may have changed, or a request to
// rescan the whole folder.
type Batch struct {
	// Paths are slash-separated, relative to the root, clean, never the
	// root itself and never one of lockstep's own names. A path may name a
	// file, a directory (scan it and everything below), or nothing any
	// more (it was removed or renamed away).
	Paths []string
	// Complete, when not nil, is parallel to Paths: true for a file that
	// its writer is known to be done with — it was renamed into place, or
	// closed after its last write, and not written since — so that a fresh
	// modification time is no reason to wait before recording it. Nil when
	// no path of the batch is known complete (always, where the event
	// source cannot tell: fsnotify).
	Complete []bool
	// Rescan asks for the whole folder to be scanned; Paths is empty then.
	Rescan bool
	// Reason says why, when Rescan is set.
	Reason Reason
}

// Reason says why a rescan was asked for.
type Reason string

const (
	ReasonStart        Reason = "start"         // watches are in place: scan once to see what happened before
	ReasonOverflow     Reason = "overflow"      // the kernel dropped events
	ReasonError        Reason = "error"         // the event source reported an error
	ReasonPeriodic     Reason = "periodic"      // the safety rescan
	ReasonPendingLimit Reason = "pending-limit" // more distinct paths than MaxPending were pending
	ReasonPoll         Reason = "poll"          // the folder is not watched: periodic scan instead
	ReasonReconfigure  Reason = "reconfigure"   // the ignore filter changed (Reconfigure)
)

// State is what a watcher is doing.
type State string

const (
	Stopped  State = "stopped"  // Run is not running
	Watching State = "watching" // every directory has a watch
	Polling  State = "polling"  // no watches; a full rescan every PollInterval
)

// Mode is a watcher's state for status output. Polling is a degraded mode
// that the daemon shows as a warning, with Reason.
type Mode struct {
	State  State
	Reason string // why Polling: the error that made watching impossible
	Since  time.Time
}

// Stats are counters since New, for status and metrics.
type Stats struct {
	Events      uint64 // filesystem events received
	Batches     uint64 // batches emitted, rescans included
	Paths       uint64 // paths emitted
	Rescans     uint64 // rescan batches emitted
	Overflows   uint64 // kernel event-queue overflows
	Errors      uint64 // event-source errors and watches that could not be added
	WatchedDirs int    // directories watched now
	Pending     int    // paths waiting to settle or to be sent
}

// Watcher watches one folder recursively and reports paths that may have
// changed once they have settled. It knows nothing of what changed; the
// consumer stats what it is told about.
type Watcher struct {
	root string
	opts Options
	log  *slog.Logger

	// Seams for tests.
	newSource  func() (source, error)
	watchLimit func() (int, error)

	running atomic.Bool
	writing atomic.Pointer[writers] // the running loop's; nil when Run is not running
	view    atomic.Pointer[view]    // the running loop's source; nil while there is none

	events, batches, paths, rescans, overflows, errs atomic.Uint64
	watched, pending                                 atomic.Int64

	modeMu sync.Mutex
	mode   Mode

	// reconf wakes Run to apply next (Reconfigure).
	reconf    chan struct{}
	reconfMu  sync.Mutex
	next      Reconfig
	reconfSet bool
}

// Reconfig is what Reconfigure changes in a watcher.
type Reconfig struct {
	// Settle replaces Options.Settle (and Prompt its default); 0
	// keeps it.
	Settle time.Duration
	// RescanInterval replaces Options.RescanInterval; 0 keeps it and a
	// negative value disables the safety rescan.
	RescanInterval time.Duration
	// Rewatch watches every directory afresh and asks for a full rescan:
	// to apply an Ignore filter whose answers changed.
	Rewatch bool
}

// Reconfigure changes a watcher's settings; a running Run applies them
// promptly, a later Run from its start. Safe from any goroutine. Calls
// that Run has not applied yet merge, the later settings winning.
func (w *Watcher) Reconfigure(rc Reconfig) {
	w.reconfMu.Lock()
	if rc.Settle != 0 {
		w.next.Settle = rc.Settle
	}
	if rc.RescanInterval != 0 {
		w.next.RescanInterval = rc.RescanInterval
	}
	w.next.Rewatch = w.next.Rewatch || rc.Rewatch
	w.reconfSet = true
	w.reconfMu.Unlock()
	select {
	case w.reconf <- struct{}{}:
	default:
	}
}

// takeReconfig returns the settings Reconfigure left, if any.
func (w *Watcher) takeReconfig() (Reconfig, bool) {
	w.reconfMu.Lock()
	defer w.reconfMu.Unlock()
	rc, ok := w.next, w.reconfSet
	w.next, w.reconfSet = Reconfig{}, false
	return rc, ok
}

// New returns a watcher for the folder at root. It starts nothing and
// touches nothing on disk; Run does.
func New(root string, opts Options) (*Watcher, error) {
	if root == "" {
		return nil, errors.New("watcher: empty folder path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	if opts.Settle < 0 || opts.Prompt < 0 || opts.PollInterval < 0 || opts.MaxPending < 0 || opts.MaxBatch < 0 {
		return nil, fmt.Errorf("watch %s: negative option", root)
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Prompt == 0 {
		opts.Prompt = defaultPrompt(opts.Settle)
	}
	opts.Prompt = min(opts.Prompt, opts.Settle)
	if opts.RescanInterval == 0 {
		opts.RescanInterval = DefaultRescanInterval
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		root:       abs,
		opts:       opts,
		log:        log,
		newSource:  defaultSource,
		watchLimit: readWatchLimit,
		mode:       Mode{State: Stopped},
		reconf:     make(chan struct{}, 1),
	}, nil
}

// Root returns the absolute path of the watched folder.
func (w *Watcher) Root() string { return w.root }

// Run watches the folder and sends batches to out until ctx ends, then
// closes out and returns nil. It first emits a rescan (ReasonStart) once
// every directory is watched, so that a consumer scanning then misses
// nothing that happened before. A send blocks only Run's sending: events
// keep being read and coalesce while the consumer is slow.
//
// Run returns an error only when the folder cannot be watched at all at
// start (missing, not a directory). Problems later — the watch limit, the
// root going away — switch to Polling (see Mode) and are logged, never
// silent. One Run at a time; it returns after every goroutine it started
// has exited.
func (w *Watcher) Run(ctx context.Context, out chan<- Batch) error {
	defer close(out)
	if !w.running.CompareAndSwap(false, true) {
		return fmt.Errorf("watch %s: already running", w.root)
	}
	defer w.running.Store(false)
	fi, err := os.Stat(w.root)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.root, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("watch %s: not a directory", w.root)
	}
	l := newLoop(w, out)
	w.writing.Store(l.s.writers)
	defer w.writing.Store(nil)
	defer w.view.Store(nil)
	defer l.stopWatching()
	defer w.setMode(Stopped, "")
	return l.run(ctx)
}

// Writing reports whether a writer may still have the file rel (relative
// to the root, slash-separated) open, for a scanner about to read it;
// changed is the file's ctime. It is true when the event source reported
// the file created or written, and not closed, removed or renamed away
// since — for at most max(2s, 40×Settle) from its opening, after which it
// is reported as it is — and also, for as long, when events of a change
// at changed may not have been read yet (the watcher is behind). A
// scanner leaves such a file alone: its close reports it again.
//
// Always false where closes are not reported (fsnotify), while polling and
// when Run is not running. Safe from any goroutine.
func (w *Watcher) Writing(rel string, changed time.Time) bool {
	v := w.view.Load()
	if v == nil || !v.src.Closes() {
		return false
	}
	hold := holdTime(w.opts.Settle)
	if !v.caughtUp(changed) {
		return time.Since(changed) < hold
	}
	// Only now: the events up to changed are applied to the set.
	return w.writing.Load().has(rel)
}

// view is what Writing needs of the loop's current event source.
type view struct {
	src     source
	applied atomic.Uint64 // events of src the loop has applied
	synced  atomic.Int64  // Unix ns: every event of a change before it has been applied
}

// timeTick is the coarsest tick of file timestamps: a ctime may be this
// much earlier than the change that set it. File systems stamp with the
// kernel's coarse clock, whose resolution is one jiffy (4 ms at HZ=250).
var timeTick = timestampTick()

// maxTimeTick is used where the coarse clock's resolution is unknown.
const maxTimeTick = 10 * time.Millisecond

// defaultPrompt is the prompt time for a settle time: a tenth of it, but
// longer than a timestamp tick, so that by the time a path is reported the
// scanner can tell that every event of its last change has been read.
func defaultPrompt(settle time.Duration) time.Duration {
	return min(max(settle/10, timeTick+time.Millisecond), settle)
}

// caughtUp reports whether every event of a change whose ctime is changed
// has been applied by the loop.
func (v *view) caughtUp(changed time.Time) bool {
	c := changed.Add(timeTick).UnixNano()
	if c < v.synced.Load() {
		return true
	}
	t, sent, ok := v.src.Sync()
	if !ok || v.applied.Load() < sent {
		return false
	}
	for {
		old := v.synced.Load()
		if t.UnixNano() <= old || v.synced.CompareAndSwap(old, t.UnixNano()) {
			break
		}
	}
	return c < t.UnixNano()
}

// Stats returns the counters; safe to call at any time from any goroutine.
func (w *Watcher) Stats() Stats {
	return Stats{
		Events:      w.events.Load(),
		Batches:     w.batches.Load(),
		Paths:       w.paths.Load(),
		Rescans:     w.rescans.Load(),
		Overflows:   w.overflows.Load(),
		Errors:      w.errs.Load(),
		WatchedDirs: int(w.watched.Load()),
		Pending:     int(w.pending.Load()),
	}
}

// Mode returns what the watcher is doing; safe from any goroutine.
func (w *Watcher) Mode() Mode {
	w.modeMu.Lock()
	defer w.modeMu.Unlock()
	return w.mode
}

func (w *Watcher) setMode(s State, reason string) {
	w.modeMu.Lock()
	defer w.modeMu.Unlock()
	if w.mode.State == s && w.mode.Reason == reason {
		return
	}
	w.mode = Mode{State: s, Reason: reason, Since: time.Now()}
}

// jitter returns d ± 10%.
func jitter(d time.Duration) time.Duration {
	j := int64(d / 10)
	if j <= 0 {
		return d
	}
	return d + time.Duration(rand.Int64N(2*j+1)-j)
}
