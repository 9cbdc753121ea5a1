package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
)

// These tests drive Run with a fake event source inside a synctest bubble:
// time is fake, so every duration below is exact and nothing sleeps for
// real. The directory tree is real, because Run looks at it.

// recv waits for the next batch and says how long it took.
func recv(t *testing.T, out <-chan Batch) (Batch, time.Duration) {
	t.Helper()
	start := time.Now()
	b, ok := <-out
	if !ok {
		t.Fatal("out closed")
	}
	return b, time.Since(start)
}

// expectQuiet checks that no batch arrives within d.
func expectQuiet(t *testing.T, out <-chan Batch, d time.Duration) {
	t.Helper()
	select {
	case b := <-out:
		t.Fatalf("unexpected batch %+v", b)
	case <-time.After(d):
	}
}

// started starts a fake run and consumes the start rescan.
func started(t *testing.T, root string, opts Options, sources *fakeSources) *fakeRun {
	t.Helper()
	r := startFake(t, root, opts, sources)
	b, took := recv(t, r.out)
	if !b.Rescan || b.Reason != ReasonStart {
		t.Fatalf("first batch %+v, want the start rescan", b)
	}
	if want := r.w.opts.Settle; took != want {
		t.Fatalf("start rescan after %v, want %v", took, want)
	}
	return r
}

func mkdirs(t testing.TB, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t testing.TB, root, rel string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, rel), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunWatchesTreeAtStart(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a/b", "c", "cache/deep", ".lockstep-staging/x")
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{Ignore: func(rel string, isDir bool) bool { return rel == "cache" && isDir }}, sources)
		defer r.stop(t)
		want := []string{root, filepath.Join(root, "a"), filepath.Join(root, "a/b"), filepath.Join(root, "c")}
		if got := sources.live(t).watchList(); !slices.Equal(got, want) {
			t.Fatalf("watched %q, want %q (ignored and .lockstep dirs are not watched)", got, want)
		}
		if st := r.w.Stats(); st.WatchedDirs != 4 || st.Rescans != 1 || st.Batches != 1 {
			t.Fatalf("stats %+v, want 4 watched dirs, 1 rescan, 1 batch", st)
		}
		if m := r.w.Mode(); m.State != Watching {
			t.Fatalf("mode %+v, want watching", m)
		}
	})
}

func TestRunRepeatedWritesReportOnceAfterQuiet(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{}, &fakeSources{})
		defer r.stop(t)
		begin := time.Now()
		var last time.Time
		for at := time.Duration(0); at <= 200*time.Millisecond; at += 10 * time.Millisecond {
			time.Sleep(begin.Add(at).Sub(time.Now()))
			r.send(t, fsnotify.Write, "log.txt")
			last = time.Now()
		}
		b, _ := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"log.txt"}) {
			t.Fatalf("batch %+v, want [log.txt]", b)
		}
		if quiet := time.Since(last); quiet != DefaultSettle {
			t.Fatalf("reported %v after the last write, want exactly the settle time %v", quiet, DefaultSettle)
		}
		expectQuiet(t, r.out, time.Second)
		if st := r.w.Stats(); st.Events != 21 || st.Paths != 1 {
			t.Fatalf("stats %+v, want 21 events and 1 path", st)
		}
	})
}

func TestRunPathsSettleIndependently(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{}, &fakeSources{})
		defer r.stop(t)
		begin := time.Now()
		r.send(t, fsnotify.Write, "a")
		time.Sleep(30 * time.Millisecond)
		r.send(t, fsnotify.Write, "b")
		for _, want := range []struct {
			path string
			at   time.Duration
		}{{"a", 50 * time.Millisecond}, {"b", 80 * time.Millisecond}} {
			b, _ := recv(t, r.out)
			if !slices.Equal(b.Paths, []string{want.path}) || time.Since(begin) != want.at {
				t.Fatalf("batch %+v at %v, want [%s] at %v", b, time.Since(begin), want.path, want.at)
			}
		}
	})
}

func TestRunRenameIntoPlaceIsPrompt(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "index.html")
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{}, &fakeSources{})
		defer r.stop(t)

		// mv .lockstep-tmp index.html: the source name is ours, the
		// target appears complete.
		r.send(t, fsnotify.Rename, ".lockstep-tmp-1")
		r.send(t, fsnotify.Create, "index.html")
		b, took := recv(t, r.out)
		if want := defaultPrompt(DefaultSettle); !slices.Equal(b.Paths, []string{"index.html"}) || took != want {
			t.Fatalf("batch %+v after %v, want [index.html] after the prompt time %v", b, took, want)
		}

		// A file created in place, empty until its writer gets going, then
		// written for a while: it waits for quiet.
		f, err := os.Create(filepath.Join(root, "upload.bin"))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		begin := time.Now()
		r.send(t, fsnotify.Create, "upload.bin")
		var last time.Time
		for range 8 {
			time.Sleep(15 * time.Millisecond)
			r.send(t, fsnotify.Write, "upload.bin")
			last = time.Now()
		}
		b, _ = recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"upload.bin"}) {
			t.Fatalf("batch %+v, want [upload.bin]", b)
		}
		if quiet := time.Since(last); quiet != DefaultSettle {
			t.Fatalf("upload.bin reported %v after its last write (%v after its creation), want %v",
				quiet, time.Since(begin), DefaultSettle)
		}
	})
}

func TestRunNewDirectoryIsWatchedThenReported(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		// mkdir -p a/b/c; echo > a/b/c/f — all before the watcher saw a.
		mkdirs(t, root, "a/b/c")
		writeFile(t, root, "a/b/c/f")
		r.send(t, fsnotify.Create, "a")
		// Events from the new watches arrive while a is pending: they are
		// covered by a's report and only move its deadline.
		r.send(t, fsnotify.Create, "a/b/c/f")
		r.send(t, fsnotify.Write, "a/b/c/f")
		last := time.Now()
		b, _ := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"a"}) || time.Since(last) != DefaultSettle {
			t.Fatalf("batch %+v %v after the last event, want [a] after %v", b, time.Since(last), DefaultSettle)
		}
		want := []string{root}
		for _, d := range []string{"a", "a/b", "a/b/c"} {
			want = append(want, filepath.Join(root, d))
		}
		if got := sources.live(t).watchList(); !slices.Equal(got, want) {
			t.Fatalf("watched %q, want %q", got, want)
		}
		writeFile(t, root, "a/b/c/g")
		r.send(t, fsnotify.Create, "a/b/c/g")
		if b, _ := recv(t, r.out); !slices.Equal(b.Paths, []string{"a/b/c/g"}) {
			t.Fatalf("batch %+v, want [a/b/c/g]", b)
		}
	})
}

func TestRunDirectoryRenamedAway(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "old/sub/deeper", "other")
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		if err := os.Rename(filepath.Join(root, "old"), filepath.Join(root, "new")); err != nil {
			t.Fatal(err)
		}
		r.send(t, fsnotify.Rename, "old")
		r.send(t, fsnotify.Create, "new")
		b, _ := recv(t, r.out)
		slices.Sort(b.Paths)
		if !slices.Equal(b.Paths, []string{"new", "old"}) {
			t.Fatalf("batch %+v, want old and new", b)
		}
		src := sources.live(t)
		var want []string
		for _, d := range []string{"", "new", "new/sub", "new/sub/deeper", "other"} {
			want = append(want, filepath.Join(root, d))
		}
		if got := src.watchList(); !slices.Equal(got, want) {
			t.Fatalf("watched %q, want %q", got, want)
		}
		removed := src.removedList()
		wantRemoved := []string{filepath.Join(root, "old"), filepath.Join(root, "old/sub"), filepath.Join(root, "old/sub/deeper")}
		if !slices.Equal(removed, wantRemoved) {
			t.Fatalf("removed %q, want %q", removed, wantRemoved)
		}
		if st := r.w.Stats(); st.WatchedDirs != 5 {
			t.Fatalf("WatchedDirs %d, want 5", st.WatchedDirs)
		}
	})
}

func TestRunIgnoresFilteredAndOwnNames(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "sub")
	synctest.Test(t, func(t *testing.T) {
		var calls sync.Map
		ignore := func(rel string, isDir bool) bool {
			calls.Store(rel, isDir)
			return (rel == "cache" && isDir) || strings.HasSuffix(rel, ".swp")
		}
		sources := &fakeSources{}
		r := started(t, root, Options{Ignore: ignore}, sources)
		defer r.stop(t)
		mkdirs(t, root, "cache/x", ".lockstep-staging/y")
		writeFile(t, root, ".lockstep-tmp-7")
		r.send(t, fsnotify.Create, "cache")
		r.send(t, fsnotify.Write, "sub/.page.swp")
		r.send(t, fsnotify.Create, ".lockstep-staging")
		r.send(t, fsnotify.Create, ".lockstep-tmp-7")
		r.send(t, fsnotify.Write, ".lockstep-tmp-7")
		r.send(t, fsnotify.Write, "sub/.lockstep-tmp-8")
		r.send(t, fsnotify.Write, "sub/page.html")
		b, _ := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"sub/page.html"}) {
			t.Fatalf("batch %+v, want only sub/page.html", b)
		}
		for _, d := range sources.live(t).watchList() {
			if strings.Contains(d, "cache") || strings.Contains(d, ".lockstep") {
				t.Fatalf("ignored directory %s is watched", d)
			}
		}
		if isDir, ok := calls.Load("cache"); !ok || isDir != true {
			t.Fatalf("Ignore was called for cache with isDir=%v (called: %v), want true", isDir, ok)
		}
		if _, ok := calls.Load(".lockstep-tmp-7"); ok {
			t.Fatal("Ignore was consulted for a .lockstep name, which is ignored before any filter")
		}
	})
}

// The writes and attribute changes of lockstep's own unnamed files come
// under the kernel's name for them and are dropped; a real file reported
// under such a name by its creation is not.
func TestRunDropsUnnamedFiles(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "sub")
	synctest.Test(t, func(t *testing.T) {
		unnamed := func(rel string) bool { return strings.HasSuffix(rel, "#42") }
		sources := &fakeSources{}
		r := started(t, root, Options{Unnamed: unnamed}, sources)
		defer r.stop(t)
		r.send(t, fsnotify.Write, "sub/#42")
		r.send(t, fsnotify.Chmod, "sub/#42")
		r.send(t, fsnotify.Write, "sub/page.html")
		b, _ := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"sub/page.html"}) {
			t.Fatalf("batch %+v, want only sub/page.html", b)
		}
		writeFile(t, root, "#42")
		r.send(t, fsnotify.Create, "#42")
		b, _ = recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"#42"}) {
			t.Fatalf("batch %+v, want the real file #42", b)
		}
	})
}

func TestRunOverflowRescansAndRebuildsWatches(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a")
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		first := sources.live(t)
		r.send(t, fsnotify.Write, "a/f") // pending, then covered by the rescan
		// Directories created while events were being lost have no watch.
		mkdirs(t, root, "a/lost/deep")
		first.errors <- fsnotify.ErrEventOverflow
		first.errors <- fsnotify.ErrEventOverflow
		b, took := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonOverflow || took != DefaultSettle {
			t.Fatalf("batch %+v after %v, want an overflow rescan after %v", b, took, DefaultSettle)
		}
		expectQuiet(t, r.out, time.Second)
		st := r.w.Stats()
		if st.Overflows != 2 || st.Rescans != 2 || st.Errors != 0 {
			t.Fatalf("stats %+v, want 2 overflows, 2 rescans (start and one coalesced), 0 errors", st)
		}
		if sources.count() != 2 || !first.closed {
			t.Fatalf("%d sources (first closed: %v), want the first closed and a second one", sources.count(), first.closed)
		}
		if got := sources.live(t).watchList(); !slices.Contains(got, filepath.Join(root, "a/lost/deep")) {
			t.Fatalf("after the rebuild watched %q, want a/lost/deep among them", got)
		}
	})
}

func TestRunSourceErrorRescans(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		sources.live(t).errors <- fmt.Errorf("read inotify: %w", syscall.EIO)
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonError {
			t.Fatalf("batch %+v, want an error rescan", b)
		}
		if st := r.w.Stats(); st.Errors != 1 || st.Overflows != 0 {
			t.Fatalf("stats %+v, want 1 error", st)
		}
	})
}

// logCounter is a slog handler that keeps the records at Warn and above.
type logCounter struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

func TestRunWatchLimitFallsBackToPolling(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a/b", "c", "cache")
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		limit := 8192
		full := true
		sources := &fakeSources{addErr: func(dir string) error {
			mu.Lock()
			defer mu.Unlock()
			if full && dir == filepath.Join(root, "a/b") {
				return syscall.ENOSPC
			}
			return nil
		}}
		logs := &logCounter{}
		opts := Options{
			PollInterval: 5 * time.Second,
			Logger:       slog.New(logs),
			Ignore:       func(rel string, isDir bool) bool { return rel == "cache" },
		}
		sources.limit = func() (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return limit, nil
		}
		r := startFake(t, root, opts, sources)
		defer r.stop(t)
		begin := time.Now()
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonPoll {
			t.Fatalf("first batch %+v, want a poll rescan", b)
		}
		m := r.w.Mode()
		if m.State != Polling {
			t.Fatalf("mode %+v, want polling", m)
		}
		for _, want := range []string{"fs.inotify.max_user_watches is 8192", "needs 4 directory watches", root, "no space left on device"} {
			if !strings.Contains(m.Reason, want) {
				t.Errorf("mode reason %q does not say %q", m.Reason, want)
			}
		}
		if st := r.w.Stats(); st.WatchedDirs != 0 || st.Errors != 1 {
			t.Fatalf("stats %+v, want no watches left and 1 error", st)
		}
		if !sources.live(t).closed {
			t.Fatal("the source was not closed on falling back")
		}
		// A full rescan every PollInterval, and the error is logged once.
		for i := 1; i <= 3; i++ {
			b, _ := recv(t, r.out)
			if !b.Rescan || b.Reason != ReasonPoll {
				t.Fatalf("batch %+v, want a poll rescan", b)
			}
			if at, want := time.Since(begin), time.Duration(i)*opts.PollInterval+DefaultSettle; at != want {
				t.Fatalf("poll rescan %d at %v, want %v", i, at, want)
			}
		}
		if n := logs.count(slog.LevelError); n != 1 {
			t.Fatalf("%d error records, want exactly 1", n)
		}
		// The operator raises the limit: watching resumes at the next poll.
		mu.Lock()
		limit, full = 524288, false
		mu.Unlock()
		if b, _ := recv(t, r.out); !b.Rescan {
			t.Fatalf("batch %+v, want a rescan", b)
		}
		if m := r.w.Mode(); m.State != Watching || m.Reason != "" {
			t.Fatalf("mode %+v, want watching again", m)
		}
		if st := r.w.Stats(); st.WatchedDirs != 4 {
			t.Fatalf("WatchedDirs %d, want 4", st.WatchedDirs)
		}
		writeFile(t, root, "a/b/f")
		r.send(t, fsnotify.Create, "a/b/f")
		if b, _ := recv(t, r.out); !slices.Equal(b.Paths, []string{"a/b/f"}) {
			t.Fatalf("batch %+v, want [a/b/f]", b)
		}
	})
}

func TestRunWatchLimitOnNewDirectory(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		full := false
		sources := &fakeSources{addErr: func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if full {
				return fmt.Errorf("add watch: %w", syscall.ENOSPC)
			}
			return nil
		}}
		sources.limit = func() (int, error) { return 100, nil }
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		mu.Lock()
		full = true
		mu.Unlock()
		mkdirs(t, root, "new/one", "new/two")
		r.send(t, fsnotify.Create, "new")
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonPoll {
			t.Fatalf("batch %+v, want a poll rescan", b)
		}
		if m := r.w.Mode(); m.State != Polling || !strings.Contains(m.Reason, "is 100 and folder "+root+" needs 4 directory watches") {
			t.Fatalf("mode %+v, want polling naming the limit and 4 directories", m)
		}
	})
}

func TestRunPeriodicRescan(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{RescanInterval: time.Hour}, sources)
		defer r.stop(t)
		for i := range 3 {
			b, took := recv(t, r.out)
			if !b.Rescan || b.Reason != ReasonPeriodic {
				t.Fatalf("batch %+v, want a periodic rescan", b)
			}
			// Jittered ±10%; the first one counts from the start, a settle
			// time before the start rescan was received.
			lo, hi := 54*time.Minute, 66*time.Minute+DefaultSettle
			if i == 0 {
				lo -= DefaultSettle
			}
			if took < lo || took > hi {
				t.Fatalf("periodic rescan %d after %v, want within [%v, %v]", i, took, lo, hi)
			}
		}
		if n := sources.count(); n != 4 {
			t.Fatalf("%d sources, want the watches rebuilt at each periodic rescan (4)", n)
		}
	})
}

func TestRunSlowConsumer(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{MaxBatch: 100}, &fakeSources{})
		defer r.stop(t)
		// Nobody receives for a while: the same file is written again and
		// again, 500 other files appear.
		for i := range 10 {
			r.send(t, fsnotify.Write, "hot")
			for j := range 50 {
				r.send(t, fsnotify.Write, fmt.Sprintf("f%03d", i*50+j))
			}
			time.Sleep(100 * time.Millisecond)
		}
		hot := 0
		files := map[string]bool{}
		for len(files) < 500 || hot == 0 {
			b, _ := recv(t, r.out)
			if b.Rescan || len(b.Paths) > 100 {
				t.Fatalf("batch of %d paths (rescan %v), want at most MaxBatch and no rescan", len(b.Paths), b.Rescan)
			}
			for _, p := range b.Paths {
				if p == "hot" {
					hot++
				} else if files[p] {
					t.Fatalf("%s reported twice", p)
				} else {
					files[p] = true
				}
			}
		}
		expectQuiet(t, r.out, time.Second)
		// One batch was already taken and held when the consumer stalled;
		// everything after it coalesced.
		if hot > 2 {
			t.Fatalf("hot reported %d times, want at most 2", hot)
		}
		if st := r.w.Stats(); st.Pending != 0 {
			t.Fatalf("Pending %d after draining, want 0", st.Pending)
		}
	})
}

func TestRunPendingLimitCollapsesIntoRescan(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		logs := &logCounter{}
		r := started(t, root, Options{MaxPending: 100, Logger: slog.New(logs)}, &fakeSources{})
		defer r.stop(t)
		for i := range 1000 {
			r.send(t, fsnotify.Write, fmt.Sprintf("dir%d/file%d", i%7, i))
			if st := r.w.Stats(); st.Pending > 100 {
				t.Fatalf("Pending %d, beyond MaxPending", st.Pending)
			}
		}
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonPendingLimit {
			t.Fatalf("batch %+v, want a pending-limit rescan", b)
		}
		expectQuiet(t, r.out, time.Second)
		if n := logs.count(slog.LevelWarn); n != 1 {
			t.Fatalf("%d warnings, want 1", n)
		}
	})
}

func TestRunRootRemovedAndBack(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "docroot")
	mkdirs(t, root, "a")
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{PollInterval: time.Second}, sources)
		defer r.stop(t)
		if err := os.RemoveAll(root); err != nil {
			t.Fatal(err)
		}
		sources.live(t).events <- fsnotify.Event{Name: root, Op: fsnotify.Remove}
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonPoll {
			t.Fatalf("batch %+v, want a poll rescan", b)
		}
		if m := r.w.Mode(); m.State != Polling || !strings.Contains(m.Reason, "removed or moved") {
			t.Fatalf("mode %+v, want polling because the root went away", m)
		}
		// Still gone at the next poll: still polling, one more source tried.
		if b, _ := recv(t, r.out); !b.Rescan {
			t.Fatalf("batch %+v, want a rescan", b)
		}
		if m := r.w.Mode(); m.State != Polling {
			t.Fatalf("mode %+v, want polling", m)
		}
		mkdirs(t, root, "b")
		if b, _ := recv(t, r.out); !b.Rescan {
			t.Fatalf("batch %+v, want a rescan", b)
		}
		if m := r.w.Mode(); m.State != Watching {
			t.Fatalf("mode %+v, want watching once the root is back", m)
		}
		if got := sources.live(t).watchList(); !slices.Equal(got, []string{root, filepath.Join(root, "b")}) {
			t.Fatalf("watched %q", got)
		}
	})
}

func TestRunInstanceLimitFallsBack(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{initErr: fmt.Errorf("couldn't initialize inotify: %w", syscall.EMFILE)}
		r := startFake(t, root, Options{}, sources)
		defer r.stop(t)
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonPoll {
			t.Fatalf("batch %+v, want a poll rescan", b)
		}
		if m := r.w.Mode(); m.State != Polling || !strings.Contains(m.Reason, "fs.inotify.max_user_instances") {
			t.Fatalf("mode %+v, want polling naming fs.inotify.max_user_instances", m)
		}
	})
}

func TestRunMissingRoot(t *testing.T) {
	w, err := New(filepath.Join(t.TempDir(), "nope"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Batch, 1)
	err = w.Run(context.Background(), out)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Run = %v, want an error naming the folder", err)
	}
	if _, ok := <-out; ok {
		t.Fatal("out not closed")
	}
	if m := w.Mode(); m.State != Stopped {
		t.Fatalf("mode %+v, want stopped", m)
	}
}

func TestRunTwiceAtOnce(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{}, &fakeSources{})
		defer r.stop(t)
		out := make(chan Batch)
		if err := r.w.Run(context.Background(), out); err == nil || !strings.Contains(err.Error(), "already running") {
			t.Fatalf("second Run = %v, want already running", err)
		}
	})
}

func TestNewOptions(t *testing.T) {
	w, err := New("relative/dir", Options{Settle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(w.Root()) {
		t.Fatalf("root %q is not absolute", w.Root())
	}
	o := w.opts
	if o.Prompt != 20*time.Millisecond || o.RescanInterval != time.Hour || o.PollInterval != 10*time.Second ||
		o.MaxPending != 100_000 || o.MaxBatch != 1000 {
		t.Fatalf("defaults %+v", o)
	}
	if w, _ := New("/x", Options{Settle: 10 * time.Millisecond, Prompt: time.Second}); w.opts.Prompt != 10*time.Millisecond {
		t.Fatalf("Prompt %v, want clamped to Settle", w.opts.Prompt)
	}
	for _, o := range []Options{{Settle: -1}, {MaxPending: -1}, {PollInterval: -time.Second}} {
		if _, err := New("/x", o); err == nil {
			t.Fatalf("New(%+v) accepted a negative option", o)
		}
	}
	if _, err := New("", Options{}); err == nil {
		t.Fatal("New accepted an empty path")
	}
}

func TestOwnName(t *testing.T) {
	for rel, want := range map[string]bool{
		".lockstep":                true,
		".lockstep-tmp-1":          true,
		"a/.lockstep-staging/x/y":  true,
		"a/b/.lockstepfoo":         true,
		"a/lockstep":               false,
		"a/x.lockstep":             false,
		".lock":                    false,
		"docs/.lockste":            false,
		".lockstep-staging/nested": true,
	} {
		if got := ownName(rel); got != want {
			t.Errorf("ownName(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestWatchLimitErrorText(t *testing.T) {
	err := &WatchLimitError{Root: "/srv/www", Dir: "/srv/www/a", Limit: 8192, Needed: 12034, Err: syscall.ENOSPC}
	msg := err.Error()
	for _, want := range []string{"/srv/www/a", "fs.inotify.max_user_watches is 8192", "needs 12034", "sysctl -w fs.inotify.max_user_watches=65536"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if !isWatchLimit(err) {
		t.Error("the error does not unwrap to ENOSPC")
	}
	if msg := (&WatchLimitError{Root: "/r", Dir: "/r", Needed: 3, Err: syscall.ENOSPC}).Error(); !strings.Contains(msg, "is unreadable") {
		t.Errorf("%q: want the unreadable limit said so", msg)
	}
}

// TestRunClosesTimeline: with a source that reports renames and closes, a
// file renamed into place is reported after placedQuiet, complete; a
// file created and left open is held (Writing says so) until its close,
// then reported after the prompt time, complete; one never closed is
// reported as it is after the hold time.
func TestRunClosesTimeline(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"moved.html", "upload.bin", "stuck.log"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{closes: true}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		prompt := r.w.opts.Prompt

		r.send(t, fsnotify.Create|opMoved, "moved.html")
		b, took := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"moved.html"}) || !slices.Equal(b.Complete, []bool{true}) || took != placedQuiet {
			t.Fatalf("rename into place: %+v after %v, want [moved.html] complete after %v", b, took, placedQuiet)
		}

		r.send(t, fsnotify.Create, "upload.bin")
		begin := time.Now()
		synctest.Wait() // the event is applied
		if !r.w.Writing("upload.bin", begin.Add(-time.Minute)) {
			t.Fatal("a file created and not closed is not Writing")
		}
		expectQuiet(t, r.out, time.Second) // far past the settle time
		r.send(t, fsnotify.Write, "upload.bin")
		r.send(t, opClosed, "upload.bin")
		b, took = recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"upload.bin"}) || !slices.Equal(b.Complete, []bool{true}) || took != prompt {
			t.Fatalf("closed: %+v after %v, want [upload.bin] complete after %v", b, took, prompt)
		}
		if r.w.Writing("upload.bin", begin.Add(-time.Minute)) {
			t.Fatal("a closed file is still Writing")
		}

		r.send(t, fsnotify.Create, "stuck.log")
		b, took = recv(t, r.out)
		hold := holdTime(r.w.opts.Settle)
		if !slices.Equal(b.Paths, []string{"stuck.log"}) || b.Complete != nil || took != hold {
			t.Fatalf("never closed: %+v after %v, want [stuck.log], not complete, after %v", b, took, hold)
		}
		if r.w.Writing("stuck.log", time.Now().Add(-time.Minute)) {
			t.Fatal("a file held for the hold time is still Writing")
		}
	})
}

// TestRunNewDirectoryEmptyFilesHeld: in a directory just created, an
// empty file (created before the watch existed: its opening was not seen)
// is taken to be open; one with data is not.
func TestRunNewDirectoryEmptyFilesHeld(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{closes: true}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		mkdirs(t, root, "new")
		writeFile(t, root, "new/full")
		if err := os.WriteFile(filepath.Join(root, "new/empty"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r.send(t, fsnotify.Create, "new")
		synctest.Wait() // the event is applied
		old := time.Now().Add(-time.Minute)
		if !r.w.Writing("new/empty", old) {
			t.Error("an empty file in a new directory is not Writing")
		}
		if r.w.Writing("new/full", old) {
			t.Error("a file with data in a new directory is Writing")
		}
		b, _ := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"new"}) {
			t.Fatalf("batch %+v, want [new]", b)
		}
		r.send(t, opClosed, "new/empty")
		b, _ = recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"new/empty"}) {
			t.Fatalf("batch %+v, want [new/empty]", b)
		}
	})
}

// TestRunCreatedDirAlreadyWatched: the creation event of a directory that
// its parent's listing already found and watched (the event was still
// queued) keeps its watches; a directory that replaced a watched one
// whose removal was never seen is watched afresh.
func TestRunCreatedDirAlreadyWatched(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a/b")
	synctest.Test(t, func(t *testing.T) {
		sources := &fakeSources{}
		r := started(t, root, Options{}, sources)
		defer r.stop(t)
		src := sources.live(t)
		r.send(t, fsnotify.Create, "a/b") // late: b was listed with a at the start
		if b, _ := recv(t, r.out); !slices.Equal(b.Paths, []string{"a/b"}) {
			t.Fatalf("batch %+v, want a/b", b)
		}
		removed := src.removedList()
		if len(removed) != 0 {
			t.Fatalf("watches removed %q for a directory that was already watched", removed)
		}
		// Replaced behind the watcher's back: the old watch is stale.
		if err := os.Rename(filepath.Join(root, "a/b"), filepath.Join(root, "old")); err != nil {
			t.Fatal(err)
		}
		mkdirs(t, root, "a/b")
		r.send(t, fsnotify.Create, "a/b")
		if b, _ := recv(t, r.out); !slices.Equal(b.Paths, []string{"a/b"}) {
			t.Fatalf("batch %+v, want a/b", b)
		}
		removed = src.removedList()
		if !slices.Equal(removed, []string{filepath.Join(root, "a/b")}) {
			t.Fatalf("removed %q, want the replaced directory's watch", removed)
		}
		if w := src.watchList(); !slices.Contains(w, filepath.Join(root, "a/b")) {
			t.Fatalf("watched %q, want a/b watched again", w)
		}
	})
}
