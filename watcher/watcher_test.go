package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// These tests run the real event source (liveSource) on real temporary
// directories.
// They wait for what they expect by receiving from Run's output against a
// deadline, never by sleeping.

const liveDeadline = 20 * time.Second

// liveSource is the source live tests use: the platform's default;
// TestLivePortableSource swaps in fsnotify.
var liveSource = defaultSource

// injector wraps a real source so that a test can feed errors into its
// error stream and refuse watches.
type injector struct {
	source
	errs chan error
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	addErr func(dir string) error
}

func newInjector(s source, addErr func(string) error) *injector {
	in := &injector{source: s, errs: make(chan error), done: make(chan struct{}), addErr: addErr}
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		for err := range s.Errors() {
			select {
			case in.errs <- err:
			case <-in.done:
				return
			}
		}
	}()
	return in
}

func (in *injector) Errors() <-chan error { return in.errs }

func (in *injector) Add(dir string) error {
	in.mu.Lock()
	f := in.addErr
	in.mu.Unlock()
	if f != nil {
		if err := f(dir); err != nil {
			return err
		}
	}
	return in.source.Add(dir)
}

func (in *injector) Close() error {
	close(in.done)
	err := in.source.Close()
	in.wg.Wait()
	return err
}

// liveRun is a Watcher on real fsnotify and what it has emitted so far.
type liveRun struct {
	w      *Watcher
	root   string
	out    chan Batch
	cancel context.CancelFunc
	done   chan error
	logs   *logCounter

	seen     map[string]int // path → times reported
	complete map[string]int // path → times reported complete
	rescans  []Reason

	stopOnce sync.Once

	mu        sync.Mutex
	injectors []*injector
}

// startLive starts a watcher on root; addErr, when not nil, is consulted
// before every real watch is added. It returns once the start rescan has
// arrived, that is once every directory is watched.
func startLive(t testing.TB, root string, opts Options, addErr func(string) error) *liveRun {
	t.Helper()
	r := &liveRun{root: root, out: make(chan Batch, 16), done: make(chan error, 1), logs: &logCounter{}, seen: map[string]int{}, complete: map[string]int{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(r.logs)
	}
	if opts.RescanInterval == 0 {
		opts.RescanInterval = -1
	}
	w, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.newSource = func() (source, error) {
		s, err := liveSource()
		if err != nil {
			return nil, err
		}
		in := newInjector(s, addErr)
		r.mu.Lock()
		r.injectors = append(r.injectors, in)
		r.mu.Unlock()
		return in, nil
	}
	r.w = w
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- w.Run(ctx, r.out) }()
	t.Cleanup(func() { r.stop(t) })
	if addErr == nil {
		r.waitFor(t, "the start rescan", func() bool { return slices.Contains(r.rescans, ReasonStart) })
		r.reset()
	}
	return r
}

func (r *liveRun) stop(t testing.TB) {
	r.stopOnce.Do(func() {
		r.cancel()
		for range r.out {
		}
		if err := <-r.done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
}

func (r *liveRun) injector(t testing.TB) *injector {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.injectors[len(r.injectors)-1]
}

func (r *liveRun) reset() {
	r.seen = map[string]int{}
	r.complete = map[string]int{}
	r.rescans = nil
}

// waitFor receives batches until cond holds, failing after liveDeadline.
func (r *liveRun) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(liveDeadline)
	defer deadline.Stop()
	for !cond() {
		select {
		case b, ok := <-r.out:
			if !ok {
				t.Fatalf("waiting for %s: output closed", what)
			}
			if b.Rescan {
				r.rescans = append(r.rescans, b.Reason)
			}
			for i, p := range b.Paths {
				r.seen[p]++
				if b.Complete != nil && b.Complete[i] {
					r.complete[p]++
				}
			}
		case <-deadline.C:
			t.Fatalf("no %s after %v; seen %d paths %v, rescans %v, stats %+v",
				what, liveDeadline, len(r.seen), sample(r.seen), r.rescans, r.w.Stats())
		}
	}
}

func (r *liveRun) waitSeen(t testing.TB, paths ...string) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("report of %q", paths), func() bool {
		for _, p := range paths {
			if r.seen[p] == 0 {
				return false
			}
		}
		return true
	})
}

// covered reports whether rel or a directory above it was reported: the
// scanner walks a reported directory, so that covers rel.
func (r *liveRun) covered(rel string) bool {
	for p := rel; p != "."; p = path.Dir(p) {
		if r.seen[p] > 0 {
			return true
		}
	}
	return false
}

func sample(m map[string]int) []string {
	var s []string
	for p := range m {
		s = append(s, p)
		if len(s) == 10 {
			break
		}
	}
	slices.Sort(s)
	return s
}

func TestLiveNestedCreation(t *testing.T) {
	root := t.TempDir()
	r := startLive(t, root, Options{}, nil)
	mkdirs(t, root, "a/b/c")
	writeFile(t, root, "a/b/c/f")
	r.waitFor(t, "a/b/c/f covered", func() bool { return r.covered("a/b/c/f") })
	// Until nothing is pending: a file created under a directory whose
	// report is still pending is covered by that report, not its own.
	r.waitFor(t, "nothing pending", func() bool { return r.w.Stats().Pending == 0 })
	// The new tree is watched: a file created in its deepest directory is
	// reported by its own name.
	r.reset()
	writeFile(t, root, "a/b/c/g")
	r.waitSeen(t, "a/b/c/g")
	if st := r.w.Stats(); st.WatchedDirs != 4 {
		t.Fatalf("WatchedDirs %d, want 4", st.WatchedDirs)
	}
}

func TestLiveDirectoryRename(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "x/y")
	r := startLive(t, root, Options{}, nil)
	writeFile(t, root, "x/y/f")
	r.waitSeen(t, "x/y/f")
	r.reset()
	if err := os.Rename(filepath.Join(root, "x"), filepath.Join(root, "z")); err != nil {
		t.Fatal(err)
	}
	r.waitSeen(t, "x", "z")
	writeFile(t, root, "z/y/g")
	r.waitSeen(t, "z/y/g")
	if r.seen["x/y/g"] > 0 {
		t.Fatal("a file under the new name was reported under the old one: a stale watch survived")
	}
	if st := r.w.Stats(); st.WatchedDirs != 3 || st.Errors != 0 {
		t.Fatalf("stats %+v, want 3 watched dirs (root, z, z/y) and no errors", st)
	}
	// Renamed out of the folder: reported, unwatched.
	r.reset()
	if err := os.Rename(filepath.Join(root, "z"), filepath.Join(t.TempDir(), "gone")); err != nil {
		t.Fatal(err)
	}
	r.waitSeen(t, "z")
	if st := r.w.Stats(); st.WatchedDirs != 1 {
		t.Fatalf("WatchedDirs %d after the move out, want 1", st.WatchedDirs)
	}
}

func TestLiveRemoveWatchedTree(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "d/e/f", "d/g")
	for _, p := range []string{"d/1", "d/e/2", "d/e/f/3", "d/g/4"} {
		writeFile(t, root, p)
	}
	r := startLive(t, root, Options{}, nil)
	if st := r.w.Stats(); st.WatchedDirs != 5 {
		t.Fatalf("WatchedDirs %d, want 5", st.WatchedDirs)
	}
	if err := os.RemoveAll(filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	r.waitSeen(t, "d")
	if st := r.w.Stats(); st.WatchedDirs != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v, want only the root watched and no errors", st)
	}
	if n := r.logs.count(slog.LevelWarn) + r.logs.count(slog.LevelError); n != 0 {
		t.Fatalf("%d warnings or errors logged for a plain removal", n)
	}
	// The same name again is watched afresh.
	r.reset()
	mkdirs(t, root, "d/e")
	r.waitSeen(t, "d")
	writeFile(t, root, "d/e/new")
	r.waitSeen(t, "d/e/new")
}

func TestLiveStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm of 10k files: skipped with -short")
	}
	root := t.TempDir()
	r := startLive(t, root, Options{}, nil)
	files := storm(t, root, 100, 10, 10)
	start := time.Now()
	r.waitFor(t, "every file covered", func() bool {
		for _, f := range files {
			if !r.covered(f) {
				return false
			}
		}
		return true
	})
	st := r.w.Stats()
	t.Logf("%d files in 1100 directories covered %v after the last was written: %d paths reported in %d batches, %d events",
		len(files), time.Since(start), st.Paths, st.Batches, st.Events)
	if len(r.rescans) > 0 || st.Overflows > 0 {
		t.Fatalf("rescans %v, %d overflows: the storm was not followed event by event", r.rescans, st.Overflows)
	}
	if st.WatchedDirs != 1+100+100*10 {
		t.Fatalf("WatchedDirs %d, want %d", st.WatchedDirs, 1+100+1000)
	}
}

// storm creates tops×subs directories with files files each, from several
// goroutines as fast as they go, and returns the files' relative paths.
func storm(tb testing.TB, root string, tops, subs, files int) []string {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, tops)
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				for j := range subs {
					dir := filepath.Join(root, fmt.Sprintf("t%03d", i), fmt.Sprintf("s%02d", j))
					if err := os.MkdirAll(dir, 0o755); err != nil {
						errs <- err
						return
					}
					for k := range files {
						if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.html", k)), []byte("<p>"+strconv.Itoa(k)), 0o644); err != nil {
							errs <- err
							return
						}
					}
				}
			}
		})
	}
	for i := range tops {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	var all []string
	for i := range tops {
		for j := range subs {
			for k := range files {
				all = append(all, fmt.Sprintf("t%03d/s%02d/f%02d.html", i, j, k))
			}
		}
	}
	return all
}

func TestLiveInjectedOverflow(t *testing.T) {
	root := t.TempDir()
	r := startLive(t, root, Options{}, nil)
	r.injector(t).errs <- fsnotify.ErrEventOverflow
	r.waitFor(t, "an overflow rescan", func() bool { return slices.Contains(r.rescans, ReasonOverflow) })
	// The first scan's rescan and the overflow's may be one batch when the
	// overflow comes before the first batch is out.
	if st := r.w.Stats(); st.Overflows != 1 || st.Rescans < 1 || st.Rescans > 2 {
		t.Fatalf("stats %+v, want 1 overflow and 1 or 2 rescans", st)
	}
	// The watches were rebuilt and work.
	writeFile(t, root, "after")
	r.waitSeen(t, "after")
}

func TestLiveInjectedWatchLimit(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a/b", "c")
	limit, err := readWatchLimit()
	if err != nil {
		t.Fatalf("read the real limit: %v", err)
	}
	refuse := func(dir string) error {
		if dir == filepath.Join(root, "c") {
			return fmt.Errorf("inotify_add_watch: %w", syscall.ENOSPC)
		}
		return nil
	}
	r := startLive(t, root, Options{PollInterval: 100 * time.Millisecond}, refuse)
	r.waitFor(t, "two poll rescans", func() bool {
		n := 0
		for _, reason := range r.rescans {
			if reason == ReasonPoll {
				n++
			}
		}
		return n >= 2
	})
	m := r.w.Mode()
	if m.State != Polling {
		t.Fatalf("mode %+v, want polling", m)
	}
	for _, want := range []string{"fs.inotify.max_user_watches is " + strconv.Itoa(limit), "needs 4 directory watches", filepath.Join(root, "c")} {
		if !strings.Contains(m.Reason, want) {
			t.Errorf("reason %q does not say %q", m.Reason, want)
		}
	}
	if n := r.logs.count(slog.LevelError); n != 1 {
		t.Fatalf("%d error records, want 1", n)
	}
	if st := r.w.Stats(); st.WatchedDirs != 0 {
		t.Fatalf("WatchedDirs %d while polling, want 0", st.WatchedDirs)
	}
}

func TestLiveIgnore(t *testing.T) {
	root := t.TempDir()
	ignore := func(rel string, isDir bool) bool {
		return (rel == "cache" && isDir) || strings.HasSuffix(rel, ".tmp")
	}
	r := startLive(t, root, Options{Ignore: ignore}, nil)
	mkdirs(t, root, "cache/x", ".lockstep-staging/y")
	writeFile(t, root, "cache/x/page")
	writeFile(t, root, ".lockstep-staging/y/chunk")
	writeFile(t, root, "draft.tmp")
	writeFile(t, root, ".lockstep-tmp-1")
	if err := os.Rename(filepath.Join(root, ".lockstep-tmp-1"), filepath.Join(root, "final.html")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "cache/x/later")
	writeFile(t, root, "sentinel")
	r.waitSeen(t, "final.html", "sentinel")
	if len(r.seen) != 2 {
		t.Fatalf("reported %v, want only final.html and sentinel", r.seen)
	}
	if st := r.w.Stats(); st.WatchedDirs != 1 {
		t.Fatalf("WatchedDirs %d, want 1: ignored directories are not watched", st.WatchedDirs)
	}
}

func TestLiveRootRemovedAndBack(t *testing.T) {
	root := filepath.Join(t.TempDir(), "docroot")
	mkdirs(t, root, "a")
	r := startLive(t, root, Options{PollInterval: 100 * time.Millisecond}, nil)
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "a poll rescan", func() bool { return slices.Contains(r.rescans, ReasonPoll) })
	if m := r.w.Mode(); m.State != Polling || !strings.Contains(m.Reason, "removed or moved") {
		t.Fatalf("mode %+v, want polling because the root went away", m)
	}
	mkdirs(t, root, "b")
	r.waitFor(t, "watching again", func() bool { return r.w.Mode().State == Watching })
	r.reset()
	writeFile(t, root, "b/f")
	r.waitSeen(t, "b/f")
}

// TestLivePortableSource runs the basic live scenarios on fsnotify, the
// source of other platforms and the fallback: nothing is ever complete or
// held as open there.
func TestLivePortableSource(t *testing.T) {
	liveSource = newNotifySource
	t.Cleanup(func() { liveSource = defaultSource })
	t.Run("nested creation", TestLiveNestedCreation)
	t.Run("directory rename", TestLiveDirectoryRename)
	root := t.TempDir()
	r := startLive(t, root, Options{}, nil)
	staging := t.TempDir()
	writeFile(t, staging, "page.html")
	if err := os.Rename(filepath.Join(staging, "page.html"), filepath.Join(root, "page.html")); err != nil {
		t.Skipf("staging is on another filesystem: %v", err)
	}
	r.waitSeen(t, "page.html")
	if len(r.complete) != 0 {
		t.Fatalf("complete %v from fsnotify, which cannot tell", r.complete)
	}
	if r.w.Writing("page.html", time.Now()) {
		t.Fatal("Writing true from fsnotify, which cannot tell")
	}
}

// TestLiveRenameIntoPlaceIsComplete: a file renamed into the folder is
// reported complete where the source tells renames from creations.
func TestLiveRenameIntoPlaceIsComplete(t *testing.T) {
	root := t.TempDir()
	r := startLive(t, root, Options{}, nil)
	staging := filepath.Join(root, ".lockstep-staging") // never reported, same filesystem
	mkdirs(t, root, ".lockstep-staging")
	writeFile(t, staging, "page.html")
	if err := os.Rename(filepath.Join(staging, "page.html"), filepath.Join(root, "page.html")); err != nil {
		t.Fatal(err)
	}
	r.waitSeen(t, "page.html")
	if !r.w.view.Load().src.Closes() {
		t.Skip("the event source does not report renames and closes on this platform")
	}
	if r.complete["page.html"] == 0 {
		t.Fatalf("page.html reported but not complete; seen %v", r.seen)
	}
}

// TestLiveStalledWriter: a file created and left open without data, for
// longer than the settle time, is held back and shown as Writing; its
// close reports it, complete.
func TestLiveStalledWriter(t *testing.T) {
	root := t.TempDir()
	const settle = 20 * time.Millisecond
	r := startLive(t, root, Options{Settle: settle}, nil)
	if !r.w.view.Load().src.Closes() {
		t.Skip("the event source does not report closes on this platform")
	}
	f, err := os.Create(filepath.Join(root, "upload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	ctime := statCtime(fi)
	// Writing is true from the start: until the create event is read,
	// because the watcher is behind; then because the file is open.
	if !r.w.Writing("upload.bin", ctime) {
		t.Fatal("a file just created and open is not Writing")
	}
	// The writer stalls for five settle times: nothing is reported.
	stall := time.NewTimer(5 * settle)
	defer stall.Stop()
	for waiting := true; waiting; {
		select {
		case b := <-r.out:
			if slices.Contains(b.Paths, "upload.bin") {
				t.Fatalf("upload.bin reported while still open and empty: %+v", b)
			}
		case <-stall.C:
			waiting = false
		}
	}
	if !r.w.Writing("upload.bin", ctime) {
		t.Fatal("a file open for writing is not Writing after the settle time")
	}
	if _, err := f.Write([]byte("content")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.waitSeen(t, "upload.bin")
	if r.complete["upload.bin"] == 0 {
		t.Fatalf("upload.bin reported after its close but not complete")
	}
	if r.w.Writing("upload.bin", ctime) {
		t.Fatal("a closed file is still Writing")
	}
}

func statCtime(fi os.FileInfo) time.Time {
	st := fi.Sys().(*syscall.Stat_t)
	return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
}
