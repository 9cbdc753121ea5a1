package watcher

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fakeSource is an event source the test drives by hand. Its channels are
// unbuffered so that, inside a synctest bubble, a send returns only once
// Run has taken the event.
type fakeSource struct {
	events chan fsnotify.Event
	errors chan error

	mu      sync.Mutex
	watched map[string]bool
	removed []string
	closed  bool
	addErr  func(dir string) error // nil: every Add succeeds
	closes  bool                   // reports opMoved and opClosed, as the Linux inotify source does
	sent    atomic.Uint64          // events sent by send
}

func (f *fakeSource) Add(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		if err := f.addErr(dir); err != nil {
			return err
		}
	}
	f.watched[dir] = true
	return nil
}

func (f *fakeSource) Remove(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.watched[dir] {
		return fsnotify.ErrNonExistentWatch
	}
	delete(f.watched, dir)
	f.removed = append(f.removed, dir)
	return nil
}

func (f *fakeSource) Closes() bool { return f.closes }
func (f *fakeSource) Sync() (time.Time, uint64, bool) {
	return time.Now(), f.sent.Load(), f.closes
}
func (f *fakeSource) Events() <-chan fsnotify.Event { return f.events }
func (f *fakeSource) Errors() <-chan error          { return f.errors }

func (f *fakeSource) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("closed twice")
	}
	f.closed = true
	return nil
}

// removedList returns the watches removed so far, sorted.
func (f *fakeSource) removedList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.removed))
}

func (f *fakeSource) watchList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var l []string
	for d := range f.watched {
		l = append(l, d)
	}
	slices.Sort(l)
	return l
}

// fakeSources hands out fake sources to a Watcher and remembers them; the
// last one is the live one.
type fakeSources struct {
	mu      sync.Mutex
	all     []*fakeSource
	addErr  func(dir string) error
	initErr error
	limit   func() (int, error) // stands in for /proc/sys/fs/inotify/max_user_watches when set
	closes  bool                // the sources report opMoved and opClosed
}

func (fs *fakeSources) new() (source, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.initErr != nil {
		return nil, fs.initErr
	}
	f := &fakeSource{
		events:  make(chan fsnotify.Event),
		errors:  make(chan error),
		watched: map[string]bool{},
		addErr:  fs.addErr,
		closes:  fs.closes,
	}
	fs.all = append(fs.all, f)
	return f, nil
}

func (fs *fakeSources) live(t *testing.T) *fakeSource {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.all) == 0 {
		t.Fatal("no source was created")
	}
	return fs.all[len(fs.all)-1]
}

func (fs *fakeSources) count() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.all)
}

// fakeRun is a Watcher running on fake sources over a real directory.
type fakeRun struct {
	w       *Watcher
	root    string
	sources *fakeSources
	out     chan Batch
	cancel  context.CancelFunc
	done    chan error
}

func startFake(t *testing.T, root string, opts Options, sources *fakeSources) *fakeRun {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.newSource = sources.new
	if sources.limit != nil {
		w.watchLimit = sources.limit
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &fakeRun{w: w, root: w.Root(), sources: sources, out: make(chan Batch), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx, r.out) }()
	return r
}

// stop ends Run and checks that it returned nil and closed out.
func (r *fakeRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	for range r.out {
	}
	if err := <-r.done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
}

func (r *fakeRun) send(t *testing.T, op fsnotify.Op, rel string) {
	t.Helper()
	src := r.sources.live(t)
	src.sent.Add(1)
	src.events <- fsnotify.Event{Name: filepath.Join(r.root, filepath.FromSlash(rel)), Op: op}
}
