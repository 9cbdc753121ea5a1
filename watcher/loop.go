package watcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"lockstep/vfs"
)

// loop is the state of one Run, owned by Run's goroutine: the event source,
// the set of watched directories and the settler. It turns filesystem
// events into settler input and keeps the watch set in step with the tree.
type loop struct {
	w      *Watcher
	log    *slog.Logger
	out    chan<- Batch
	s      *settler
	prefix string // root with a trailing separator

	src  source // nil while polling
	view *view  // src's, for Writing; nil with it
	dirs *dirSet

	// rebuild asks for the source to be recreated, every directory watched
	// afresh, just before the next rescan is emitted: after lost events the
	// watch set may miss directories whose creation was never seen.
	rebuild bool

	polling bool
	retry   func() bool // while polling: whether a poll tick should try watching again
	poll    *time.Ticker
}

func newLoop(w *Watcher, out chan<- Batch) *loop {
	prefix := w.root
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	return &loop{
		w:      w,
		log:    w.log,
		out:    out,
		s:      newSettler(w.opts.Settle, w.opts.Prompt, w.opts.MaxPending),
		prefix: prefix,
		dirs:   newDirSet(),
	}
}

func (l *loop) run(ctx context.Context) error {
	l.startWatching(ctx, time.Now())
	defer func() {
		if l.poll != nil {
			l.poll.Stop()
		}
	}()

	settleT := time.NewTimer(time.Hour)
	settleT.Stop()
	defer settleT.Stop()
	var armed time.Time

	var (
		periodic  *time.Timer
		periodicC <-chan time.Time
	)
	if l.w.opts.RescanInterval > 0 {
		periodic = time.NewTimer(jitter(l.w.opts.RescanInterval))
		periodicC = periodic.C
	}
	defer func() {
		if periodic != nil {
			periodic.Stop()
		}
	}()

	var held Batch
	holding := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		// Apply every event already delivered before deciding what has
		// settled: when the loop falls behind, a write queued behind a
		// timer must still count.
		l.drain(ctx)
		now := time.Now()
		l.s.Advance(now)
		if !holding {
			if l.rebuild && l.s.RescanDue() {
				l.rebuild = false
				if !l.polling {
					l.stopWatching()
					l.startWatching(ctx, now)
				}
			}
			held, holding = l.s.Take(l.w.opts.MaxBatch)
		}
		l.w.pending.Store(int64(l.s.Pending()))

		if next := l.s.Next(); !next.Equal(armed) {
			armed = next
			if next.IsZero() {
				settleT.Stop()
			} else {
				settleT.Reset(next.Sub(now))
			}
		}
		var (
			sendC chan<- Batch
			evC   <-chan fsnotify.Event
			errC  <-chan error
			pollC <-chan time.Time
		)
		if holding {
			sendC = l.out
		}
		if l.src != nil {
			evC, errC = l.src.Events(), l.src.Errors()
		}
		if l.poll != nil {
			pollC = l.poll.C
		}

		select {
		case <-ctx.Done():
			return nil
		case sendC <- held:
			l.w.batches.Add(1)
			l.w.paths.Add(uint64(len(held.Paths)))
			if held.Rescan {
				l.w.rescans.Add(1)
				l.log.Debug("rescan emitted", "op", string(held.Reason))
			}
			held, holding = Batch{}, false
		case <-settleT.C:
			armed = time.Time{}
		case ev, ok := <-evC:
			if !ok {
				l.sourceFailed(ctx, errors.New("event channel closed"), time.Now())
				continue
			}
			l.apply(ctx, ev, time.Now())
		case err, ok := <-errC:
			if !ok {
				l.sourceFailed(ctx, errors.New("error channel closed"), time.Now())
				continue
			}
			l.sourceError(err, time.Now())
		case <-l.w.reconf:
			rc, ok := l.w.takeReconfig()
			if !ok {
				continue
			}
			if rc.Settle > 0 && rc.Settle != l.w.opts.Settle {
				l.w.opts.Settle, l.w.opts.Prompt = rc.Settle, defaultPrompt(rc.Settle)
				l.s.setDelays(l.w.opts.Settle, l.w.opts.Prompt)
				armed = time.Time{} // re-arm the settle timer on the new delays
			}
			if rc.RescanInterval != 0 && rc.RescanInterval != l.w.opts.RescanInterval {
				l.w.opts.RescanInterval = rc.RescanInterval
				if periodic != nil {
					periodic.Stop()
					periodic, periodicC = nil, nil
				}
				if rc.RescanInterval > 0 {
					periodic = time.NewTimer(jitter(rc.RescanInterval))
					periodicC = periodic.C
				}
			}
			if rc.Rewatch {
				l.requestRescan(ReasonReconfigure, time.Now())
				l.rebuild = !l.polling
			}
		case <-periodicC:
			periodic.Reset(jitter(l.w.opts.RescanInterval))
			l.requestRescan(ReasonPeriodic, time.Now())
			l.rebuild = !l.polling
		case <-pollC:
			now := time.Now()
			l.requestRescan(ReasonPoll, now)
			if l.retry != nil && l.retry() {
				l.startWatching(ctx, now)
			}
		}
	}
}

// drainMax bounds how many queued events are applied before the loop
// looks at the settler again, so that a flood cannot starve sending.
const drainMax = 4096

// drain applies the events already waiting in the source, without blocking.
func (l *loop) drain(ctx context.Context) {
	for range drainMax {
		if l.src == nil {
			return
		}
		select {
		case ev, ok := <-l.src.Events():
			if !ok {
				return // the main select sees the closed channel
			}
			l.apply(ctx, ev, time.Now())
		default:
			return
		}
	}
}

// requestRescan asks the settler for a rescan, logging only a new request.
func (l *loop) requestRescan(reason Reason, now time.Time) {
	if _, wanted := l.s.RescanWanted(); !wanted {
		l.log.Debug("rescan requested", "op", string(reason))
	}
	l.s.Rescan(reason, now)
}

// add hands one path event to the settler.
func (l *loop) add(rel string, k kind, now time.Time) {
	if !l.s.Add(rel, k, now) {
		l.log.Warn("too many paths pending; rescanning the folder instead",
			"path", l.w.root, "max_pending", l.w.opts.MaxPending)
	}
}

// apply handles one event from the source and counts it applied.
func (l *loop) apply(ctx context.Context, ev fsnotify.Event, now time.Time) {
	l.event(ctx, ev, now)
	if l.view != nil {
		l.view.applied.Add(1)
	}
}

// event handles one filesystem event.
func (l *loop) event(ctx context.Context, ev fsnotify.Event, now time.Time) {
	l.w.events.Add(1)
	rel, ok := l.rel(ev.Name)
	if !ok {
		return
	}
	if rel == "" {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			l.fallback(fmt.Errorf("watch %s: the folder was removed or moved away", l.w.root), l.rootIsDir, now)
		}
		return
	}
	if ownName(rel) {
		return
	}
	// An unnamed file only ever has writes and attribute changes; a
	// creation, removal or rename under such a name is a real file's.
	if l.w.opts.Unnamed != nil && !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) && l.w.opts.Unnamed(rel) {
		return
	}
	if own := l.w.opts.Own; own != nil {
		if ev.Op&^opNotDir != fsnotify.Create {
			own.OwnOther(rel) // a creation is asked about in created, with its inode
		}
	}
	wasDir := l.dirs.has(rel)
	closes := l.src != nil && l.src.Closes()
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// Gone from here. A renamed directory shows up again as a Create
		// under its new name, which is watched afresh; the old name is
		// reported so the scanner sees what disappeared.
		if wasDir {
			l.unwatchTree(rel)
		}
		if !l.ignored(rel, wasDir) {
			l.add(rel, gone, now)
		}
	}
	if ev.Has(fsnotify.Create) {
		if own := l.w.opts.Own; own != nil && ev.Has(opNotDir) && !ev.Has(opMoved) && !l.ignored(rel, false) && own.OwnLinked(rel) {
			return
		}
		l.created(ctx, rel, ev.Has(opMoved), closes, now)
	}
	if ev.Has(fsnotify.Write) && !l.ignored(rel, false) {
		k := written
		if closes {
			k = opened
		}
		l.add(rel, k, now)
	}
	if ev.Has(fsnotify.Chmod) && !l.ignored(rel, wasDir) {
		l.add(rel, touched, now)
	}
	if ev.Has(opClosed) && !l.ignored(rel, false) {
		l.add(rel, finished, now)
	}
}

// created handles a name that appeared, by creation or by a rename into
// the folder (moved). A new directory is watched at once, with everything
// below it, and then reported itself: the scanner walks it, which covers
// files created in it before its watch existed.
func (l *loop) created(ctx context.Context, rel string, moved, closes bool, now time.Time) {
	fi, err := os.Lstat(l.abs(rel))
	if err != nil || !fi.IsDir() {
		// A file, a symlink (never followed), or already gone again (its
		// removal event is on the way): report it either way.
		if l.ignored(rel, false) {
			return
		}
		if own := l.w.opts.Own; own != nil && !moved && err == nil && fi.Mode().IsRegular() && own.OwnCreated(rel, inoOf(fi)) {
			return
		}
		k := createdKind(fi, err, moved, closes)
		l.add(rel, k, now)
		if k == placed {
			if w := placedWait(ctimeOf(fi), now, l.s.prompt); w > placedQuiet {
				l.s.NotBefore(rel, now.Add(w))
			}
		}
		return
	}
	if l.ignored(rel, true) || l.src == nil {
		return
	}
	if l.dirs.has(rel) {
		if l.dirs.sameDir(rel, inoOf(fi)) {
			// Found by its parent's listing before this event of its
			// creation was read: its watches are current, and removing
			// them would drop the events already queued for it.
			l.add(rel, touched, now)
			return
		}
		// Another directory under that name, whose predecessor's removal
		// was never seen (lost events): the old watches are stale.
		l.unwatchTree(rel)
	}
	// A directory just created (not renamed into place) may hold files
	// created before its watch existed, whose writers were not seen to
	// open them: an empty one is taken to be open, as its creation would
	// have said.
	var empty func(rel string)
	if closes && !moved {
		empty = func(f string) { l.add(f, opened, now) }
	}
	if err := l.watchTree(ctx, rel, empty); err != nil {
		l.watchFailed(ctx, err, now)
		return
	}
	l.add(rel, touched, now)
}

// placedWait is how long a file renamed into place at now, with ctime
// ctime, waits before it is reported: until Writing can tell that every
// event up to that ctime has been read (a timestamp tick past it), so that
// the scanner reads the file at once rather than retrying it. A ctime that
// would ask for more than the prompt time (clocks disagree) is ignored.
func placedWait(ctime, now time.Time, prompt time.Duration) time.Duration {
	if ctime.IsZero() {
		return 0
	}
	w := ctime.Add(timeTick + 200*time.Microsecond).Sub(now)
	if w > prompt {
		return 0
	}
	return w
}

// createdKind decides how a new non-directory name settles, from its
// lstat (fi, err), whether it was renamed into place (moved: only a source
// that closes tells) and whether the source reports closes.
//
//   - Renamed into place: its writer finished it elsewhere (atomic
//     writers, uploads, rsync): placed.
//   - Created, with closes reported: a regular file with one link was
//     opened by a writer, whose close will be seen: opened, held until
//     then. A second link to an existing file (ln) has no writer.
//   - Without closes: a non-empty file is taken to be complete (renamed
//     into place, most likely); a write after this event is on its way
//     and puts it back on the settle clock. An empty one was most likely
//     just opened by a writer that has not written yet, so it gets the
//     full settle time.
//
// Symlinks, special files and names already gone again are touched.
func createdKind(fi os.FileInfo, err error, moved, closes bool) kind {
	if err != nil || !fi.Mode().IsRegular() {
		return touched
	}
	if moved {
		return placed
	}
	if closes {
		if links(fi) > 1 {
			return touched
		}
		return opened
	}
	if fi.Size() == 0 {
		return written
	}
	return touched
}

// watchTree adds a watch to rel and to every directory below it that is
// not ignored. Each directory is listed after its own watch exists, so a
// subdirectory created meanwhile is either listed or announced by an
// event. Directories that vanish meanwhile are skipped; the watch limit
// stops the walk with a *WatchLimitError; a failure on the root is
// returned; other failures are counted and logged. empty, when not nil,
// is called with every empty regular file found (not ignored).
func (l *loop) watchTree(ctx context.Context, rel string, empty func(rel string)) error {
	stack := []string{rel}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		abs := l.abs(d)
		if err := l.src.Add(abs); err != nil {
			switch {
			case isWatchLimit(err):
				return l.limitError(ctx, abs, err)
			case d == "":
				return fmt.Errorf("watch %s: %w", abs, err)
			case isGone(err):
			default:
				l.w.errs.Add(1)
				l.log.Warn("cannot watch directory; changes in it are seen by rescans only", "path", abs, "err", err)
			}
			continue
		}
		l.dirs.add(d)
		ino, err := l.listDirs(abs, d, func(sub string) { stack = append(stack, sub) }, empty)
		l.dirs.setIno(d, ino)
		if err != nil && !isGone(err) {
			l.w.errs.Add(1)
			l.log.Warn("cannot list directory", "path", abs, "err", err)
		}
	}
	l.w.watched.Store(int64(l.dirs.len()))
	return nil
}

// listDirs calls fn with every subdirectory of dir that is not ignored,
// and empty (when not nil) with every empty regular file that is not,
// and returns the directory's inode number (0 if unknown). It reads the
// directory in slices so that a huge one costs bounded memory.
func (l *loop) listDirs(abs, rel string, fn, empty func(rel string)) (uint64, error) {
	f, err := os.Open(abs)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var ino uint64
	if fi, err := f.Stat(); err == nil {
		ino = inoOf(fi)
	}
	for {
		ents, err := f.ReadDir(512)
		for _, e := range ents {
			sub := e.Name()
			if rel != "" {
				sub = rel + "/" + sub
			}
			switch {
			case e.IsDir():
				if !l.ignored(sub, true) {
					fn(sub)
				}
			case empty != nil && e.Type().IsRegular():
				if fi, err := e.Info(); err == nil && fi.Size() == 0 && !l.ignored(sub, false) {
					empty(sub)
				}
			}
		}
		if err == io.EOF {
			return ino, nil
		}
		if err != nil {
			return ino, err
		}
	}
}

// unwatchTree drops the watches of rel and everything below it. The kernel
// has often dropped them already (the directory is gone); that is fine.
func (l *loop) unwatchTree(rel string) {
	l.dirs.removeTree(rel, func(r string) {
		if l.src == nil {
			return
		}
		if err := l.src.Remove(l.abs(r)); err != nil {
			l.log.Debug("unwatch", "path", r, "err", err)
		}
	})
	l.w.watched.Store(int64(l.dirs.len()))
}

// limitError builds the operator-facing error for an exhausted watch
// limit, counting the directories the folder needs.
func (l *loop) limitError(ctx context.Context, dir string, err error) error {
	limit, rerr := l.w.watchLimit()
	if rerr != nil {
		limit = 0
	}
	return &WatchLimitError{Root: l.w.root, Dir: dir, Limit: limit, Needed: l.countDirs(ctx), Err: err}
}

// countDirs counts the directories that need a watch, the root included.
func (l *loop) countDirs(ctx context.Context) int {
	n := 0
	stack := []string{""}
	for len(stack) > 0 && ctx.Err() == nil {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		_, _ = l.listDirs(l.abs(d), d, func(sub string) { stack = append(stack, sub) }, nil)
	}
	return n
}

// watchFailed handles an error from watchTree while watching.
func (l *loop) watchFailed(ctx context.Context, err error, now time.Time) {
	if ctx.Err() != nil {
		return
	}
	var le *WatchLimitError
	if errors.As(err, &le) {
		limit := le.Limit
		l.fallback(err, func() bool {
			n, err := l.w.watchLimit()
			return err == nil && n > limit
		}, now)
		return
	}
	l.fallback(err, l.rootIsDir, now)
}

// startWatching creates the event source and watches the whole tree, then
// asks for the start rescan. When that is impossible it falls back to
// polling.
func (l *loop) startWatching(ctx context.Context, now time.Time) {
	begin := time.Now()
	src, err := l.w.newSource()
	if err != nil {
		l.fallback(instancesError(l.w.root, err), func() bool { return true }, now)
		return
	}
	l.src = src
	l.view = &view{src: src}
	l.w.view.Store(l.view)
	l.dirs = newDirSet()
	if err := l.watchTree(ctx, "", nil); err != nil {
		l.watchFailed(ctx, err, now)
		return
	}
	if l.poll != nil {
		l.poll.Stop()
		l.poll = nil
	}
	wasPolling := l.polling
	l.polling, l.retry = false, nil
	l.w.setMode(Watching, "")
	if wasPolling {
		l.log.Info("watching the folder again", "path", l.w.root, "dirs", l.dirs.len(), "dur", time.Since(begin))
	} else {
		l.log.Debug("watching", "path", l.w.root, "dirs", l.dirs.len(), "dur", time.Since(begin))
	}
	l.requestRescan(ReasonStart, now)
}

// stopWatching closes the source, dropping every watch.
func (l *loop) stopWatching() {
	if l.src != nil {
		if err := l.src.Close(); err != nil {
			l.log.Debug("close watcher", "path", l.w.root, "err", err)
		}
		l.src = nil
	}
	l.view = nil
	l.w.view.Store(nil)
	l.dirs = newDirSet()
	l.w.watched.Store(0)
}

// fallback gives up watching: the folder is rescanned every PollInterval
// until retry says that watching may work again. It is never silent: the
// error is logged (once per distinct cause) and shown by Mode.
func (l *loop) fallback(err error, retry func() bool, now time.Time) {
	l.stopWatching()
	l.s.writers.clear() // no close will be seen
	l.w.errs.Add(1)
	reason := err.Error()
	if !l.polling || l.w.Mode().Reason != reason {
		l.log.Error("folder is not watched; scanning it periodically instead", "path", l.w.root,
			"dur", l.w.opts.PollInterval, "err", err)
	}
	l.polling, l.retry = true, retry
	l.w.setMode(Polling, reason)
	if l.poll == nil {
		l.poll = time.NewTicker(l.w.opts.PollInterval)
	}
	l.requestRescan(ReasonPoll, now)
}

// ownReset ends the claims of Options.Own: their events may be lost.
func (l *loop) ownReset() {
	if l.w.opts.Own != nil {
		l.w.opts.Own.OwnReset()
	}
}

// sourceError handles an error the event source reported.
func (l *loop) sourceError(err error, now time.Time) {
	reason := ReasonError
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		reason = ReasonOverflow
		l.w.overflows.Add(1)
	} else {
		l.w.errs.Add(1)
	}
	l.ownReset()
	if _, wanted := l.s.RescanWanted(); !wanted {
		if reason == ReasonOverflow {
			l.log.Warn("kernel dropped events; rescanning the folder (raise "+maxQueuedEventsSysctl+" if this repeats)",
				"path", l.w.root, "err", err)
		} else {
			l.log.Warn("watcher error; rescanning the folder", "path", l.w.root, "err", err)
		}
	}
	l.requestRescan(reason, now)
	l.rebuild = true
}

// sourceFailed handles a source that stopped delivering: start afresh.
func (l *loop) sourceFailed(ctx context.Context, err error, now time.Time) {
	l.w.errs.Add(1)
	l.ownReset()
	l.log.Warn("watcher stopped; restarting it", "path", l.w.root, "err", err)
	l.stopWatching()
	l.startWatching(ctx, now)
	l.requestRescan(ReasonError, now)
}

func (l *loop) rootIsDir() bool {
	fi, err := os.Stat(l.w.root)
	return err == nil && fi.IsDir()
}

// rel maps an event's absolute name to a slash path relative to the root;
// "" is the root itself.
func (l *loop) rel(name string) (string, bool) {
	if name == l.w.root {
		return "", true
	}
	if !strings.HasPrefix(name, l.prefix) {
		return "", false
	}
	return filepath.ToSlash(name[len(l.prefix):]), true
}

func (l *loop) abs(rel string) string {
	if rel == "" {
		return l.w.root
	}
	return l.prefix + filepath.FromSlash(rel)
}

func (l *loop) ignored(rel string, isDir bool) bool {
	return ownName(rel) || (l.w.opts.Ignore != nil && l.w.opts.Ignore(rel, isDir))
}

// ownName reports whether any component of rel is one of lockstep's own
// temporary or staging names, which never produce work.
func ownName(rel string) bool {
	for rel != "" {
		name := rel
		if i := strings.IndexByte(rel, '/'); i >= 0 {
			name, rel = rel[:i], rel[i+1:]
		} else {
			rel = ""
		}
		if strings.HasPrefix(name, vfs.TempPrefix) {
			return true
		}
	}
	return false
}
