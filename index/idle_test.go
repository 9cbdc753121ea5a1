package index

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"lockstep/chunker"
)

// compactorGoroutines counts Badger's compactor goroutines in the process.
func compactorGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "(*levelsController).runCompactor(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// compactorsBecome waits until there are n compactor goroutines: one that
// has signalled its end may still be on its way out for a moment.
func compactorsBecome(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := compactorGoroutines()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d compactor goroutines, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wideFile is a file record of 50 chunks, unique to i: about 8 KiB of
// record, sequence entry and chunk locations.
func wideFile(i int) Record {
	r := Record{Path: fmt.Sprintf("d%02d/file%06d", i%50, i), Type: File, Mode: 0o644,
		Version: vec(uint64(local), 1), Origin: local}
	for c := range 50 {
		r.Manifest.Chunks = append(r.Manifest.Chunks, chunker.Ref{Hash: chunker.Sum(fmt.Appendf(nil, "%d/%d", i, c)), Length: 1000})
		r.Size += 1000
	}
	return r
}

// TestIdlePausesCompactors checks that Badger's compactors stop once the
// index is idle, stay stopped through a long idle spell, and come back for
// the next writes: so many that, uncompacted, they would fill level 0
// past the point where Badger stalls every write. It is also the check
// that the unexported Badger methods idle.go links to still exist and
// still stop and start the compactor goroutines.
func TestIdlePausesCompactors(t *testing.T) {
	compactorsBecome(t, 0) // those of other tests' indexes are gone
	dir := t.TempDir()
	ix, err := Open(dir, Options{idleAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ix.Close() }()
	if n := compactorGoroutines(); n != numCompactors {
		t.Fatalf("%d compactor goroutines after Open, want %d", n, numCompactors)
	}
	waitFor(t, "the idle index pauses its compactors", ix.idle.isPaused)
	compactorsBecome(t, 0)
	time.Sleep(20 * ix.opts.idleAfter)
	if n := compactorGoroutines(); n != 0 || !ix.idle.isPaused() {
		t.Fatalf("after a long idle spell: %d compactor goroutines, paused %v; want 0, paused", n, ix.idle.isPaused())
	}

	// Reads do not wake them.
	if _, _, err := ix.Get("f", "nothing"); err != nil {
		t.Fatal(err)
	}
	if !ix.idle.isPaused() {
		t.Fatal("a read resumed the compactors")
	}

	put(t, ix, "f", wideFile(0))
	if ix.idle.isPaused() {
		t.Fatal("still paused after a write")
	}
	compactorsBecome(t, numCompactors)

	// Write several times what level 0 holds before Badger stalls writes
	// (NumLevelZeroTablesStall memtables), in batches, pausing between
	// some so that the compactors are paused and resumed on the way.
	const files = 12000
	stall := int64(8 * memTableSize)
	done := make(chan error, 1)
	go func() {
		batch := make([]Record, 0, 100)
		for i := 1; i < files; i++ {
			batch = append(batch, wideFile(i))
			if len(batch) == cap(batch) || i == files-1 {
				if err := ix.Put("f", batch); err != nil {
					done <- err
					return
				}
				batch = batch[:0]
			}
			if i%3000 == 0 {
				time.Sleep(4 * ix.opts.idleAfter)
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("writes stalled: the compactors did not resume")
	}
	var below int64
	for _, l := range ix.db.Levels() {
		if l.Level > 0 {
			below += l.Size
		}
	}
	t.Logf("%d bytes below level 0 after the writes", below)
	if below < stall {
		t.Errorf("%d bytes compacted below level 0, want more than the %d level 0 holds before stalling", below, stall)
	}
	waitFor(t, "the compactors pause again", ix.idle.isPaused)
	compactorsBecome(t, 0)
	checkConsistent(t, ix)
	info, err := ix.Info("f")
	if err != nil {
		t.Fatal(err)
	}
	if info.Files != files {
		t.Fatalf("%d files in the index, want %d", info.Files, files)
	}

	// Closing a paused index is clean, and everything is there again.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	compactorsBecome(t, 0)
	ix, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, files / 2, files - 1} {
		want := wideFile(i)
		got, ok, err := ix.Get("f", want.Path)
		if err != nil || !ok || len(got.Manifest.Chunks) != len(want.Manifest.Chunks) || got.Manifest.Chunks[49] != want.Manifest.Chunks[49] {
			t.Fatalf("after reopening, %s: %v %v %v", want.Path, ok, err, got.Manifest.Chunks)
		}
	}
	checkConsistent(t, ix)
}

// TestIdleConcurrentWrites pauses and resumes the compactors as often as it
// can while several goroutines write and read (for the race detector),
// and closes the index while a pause may be under way.
func TestIdleConcurrentWrites(t *testing.T) {
	ix, err := Open(t.TempDir(), Options{idleAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if err := ix.Put("f", []Record{fileRec(fmt.Sprintf("w%d/%d", w, i), fmt.Sprintf("%d.%d", w, i))}); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := ix.Get("f", fmt.Sprintf("w%d/%d", w, i/2)); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	checkConsistent(t, ix)
	info, err := ix.Info("f")
	if err != nil {
		t.Fatal(err)
	}
	if info.Files != 800 {
		t.Errorf("%d files, want 800", info.Files)
	}
	time.Sleep(time.Millisecond)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	compactorsBecome(t, 0)
}
