package replica

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countingScanner is testScanner that also remembers every path it is
// given.
type countingScanner struct {
	testScanner
	mu      sync.Mutex
	scanned []string
}

func (s *countingScanner) ScanPaths(ctx context.Context, paths []string) ([]string, error) {
	s.mu.Lock()
	s.scanned = append(s.scanned, paths...)
	s.mu.Unlock()
	return s.testScanner.ScanPaths(ctx, paths)
}

func (s *countingScanner) saw(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.scanned, p)
}

// setMTime gives rel on n's disk the modification time t.
func (n *testNode) setMTime(rel string, t time.Time) {
	n.t.Helper()
	if err := os.Chtimes(filepath.Join(n.dir, rel), t, t); err != nil {
		n.t.Fatal(err)
	}
}

func TestPlacedFilesAreNotScannedAgain(t *testing.T) {
	a, b := pair(t)
	scan := &countingScanner{testScanner: testScanner{b}}
	b.engine.scan = scan
	ctx, cancel := context.WithCancel(context.Background())
	batches := make(chan Batch)
	var wg sync.WaitGroup
	for _, n := range []*testNode{a, b} {
		in := make(chan Batch)
		if n == b {
			in = batches
		}
		wg.Go(func() { n.engine.Run(ctx, in) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	content := map[string][]byte{}
	for i, rel := range []string{"old.txt", "fresh.txt", "edited.txt", "d/grown.txt"} {
		content[rel] = randomBytes(uint64(40+i), 3000)
		a.write(rel, content[rel])
		if rel != "fresh.txt" {
			a.setMTime(rel, old)
			a.record(rel)
		}
	}
	defer link(t, ctx, a, b)()
	for rel, data := range content {
		eventually(t, rel+" on b", hasContent(b, rel, data))
	}
	eventually(t, "b's records", func() bool {
		_, have, err := b.ix.Get("docroot", "d/grown.txt")
		return err == nil && have
	})

	// Local edits after the puller's renames: the same size and mtime
	// with other bytes (only the ctime tells), and a longer file.
	time.Sleep(50 * time.Millisecond) // past the file system's clock tick
	edited := randomBytes(99, 3000)
	if err := os.WriteFile(filepath.Join(b.dir, "edited.txt"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	b.setMTime("edited.txt", old)
	if err := os.WriteFile(filepath.Join(b.dir, "d/grown.txt"), randomBytes(98, 4000), 0o644); err != nil {
		t.Fatal(err)
	}
	b.setMTime("d/grown.txt", old)

	// The watcher reports the puller's renames; a last batch marks the end.
	send := func(bt Batch) {
		select {
		case batches <- bt:
		case <-time.After(10 * time.Second):
			t.Fatal("b's engine does not take batches")
		}
	}
	send(Batch{Paths: []string{"old.txt", "fresh.txt", "edited.txt", "d/grown.txt"}})
	send(Batch{Paths: []string{"end"}})
	eventually(t, "the batches scanned", func() bool { return scan.saw("end") })

	if scan.saw("old.txt") {
		t.Error("old.txt, untouched since the puller put it in place, was scanned again")
	}
	// A fresh mtime cannot vouch that the file was not written since.
	for _, rel := range []string{"fresh.txt", "edited.txt", "d/grown.txt"} {
		if !scan.saw(rel) {
			t.Errorf("%s was not scanned", rel)
		}
	}
	// Each file is spared once: a second report of it is scanned.
	send(Batch{Paths: []string{"old.txt"}})
	eventually(t, "old.txt scanned at its second report", func() bool { return scan.saw("old.txt") })
	// The edit was recorded as a local version and reaches a.
	eventually(t, "b's edit on a", hasContent(a, "edited.txt", edited))
}

func TestDropPlacedKeepsCompleteParallel(t *testing.T) {
	n := newTestNode(t, "n", 1, nil)
	old := time.Now().Add(-time.Hour)
	for _, rel := range []string{"a", "b", "c", "d"} {
		if err := os.WriteFile(filepath.Join(n.dir, rel), []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
		n.setMTime(rel, old)
	}
	f := n.engine
	f.scanMu.Lock()
	defer f.scanMu.Unlock()
	for _, rel := range []string{"b", "d"} {
		fi, err := os.Lstat(filepath.Join(n.dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		f.notePlaced(rel, fi)
	}
	paths := []string{"a", "b", "c", "d"}
	complete := []bool{true, false, false, true}
	gotPaths, gotComplete := f.dropPlaced(paths, complete)
	if want := []string{"a", "c"}; !slices.Equal(gotPaths, want) {
		t.Errorf("paths = %q, want %q", gotPaths, want)
	}
	if want := []bool{true, false}; !slices.Equal(gotComplete, want) {
		t.Errorf("complete = %v, want %v", gotComplete, want)
	}
	if !slices.Equal(paths, []string{"a", "b", "c", "d"}) || !slices.Equal(complete, []bool{true, false, false, true}) {
		t.Errorf("the caller's slices were changed: %q %v", paths, complete)
	}
	if len(f.placed) != 0 {
		t.Errorf("%d files still remembered after their check", len(f.placed))
	}
	// Nothing remembered: the same slices come back.
	if p, c := f.dropPlaced(paths, nil); len(p) != 4 || c != nil {
		t.Errorf("dropPlaced with nothing remembered = %q %v", p, c)
	}
}

// The watcher reports the puller's unnamed files under the kernel's names
// for them ("#<inode>", vfs.Folder.IsUnnamed): those reports are dropped,
// a real file's are not.
func TestDropPlacedUnnamedReports(t *testing.T) {
	n := newTestNode(t, "n", 1, nil)
	f := n.engine
	ds := f.fs.Dirs(0o755)
	defer ds.Close()
	tmp, err := ds.CreateNew("d/new", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Abort()
	fi, err := tmp.File().Stat()
	if err != nil {
		t.Fatal(err)
	}
	unnamed := fmt.Sprintf("d/#%d", fi.Sys().(*syscall.Stat_t).Ino)
	f.scanMu.Lock()
	defer f.scanMu.Unlock()
	got, _ := f.dropPlaced([]string{"d/#1", unnamed, "d/real", "#"}, nil)
	if want := []string{"d/#1", "d/real", "#"}; !slices.Equal(got, want) {
		t.Errorf("dropPlaced = %q, want %q", got, want)
	}
}

// TestFreshFilesClaimedForTheWatcher: the files of a batch flushed with
// syncfs that are new here are linked with a claim (vfs.Temp.OwnLink), so
// that the watcher drops their creation, and are not remembered for
// dropPlaced; one whose mtime is fresh is not claimed but remembered.
func TestFreshFilesClaimedForTheWatcher(t *testing.T) {
	a, b := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range []*testNode{a, b} {
		wg.Go(func() { n.engine.Run(ctx, make(chan Batch)) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	var rels []string
	for i := range 4 * flushEachMax {
		rel := fmt.Sprintf("d/f%03d.txt", i)
		a.write(rel, randomBytes(uint64(i), 100))
		if i > 0 {
			a.setMTime(rel, old)
		}
		a.record(rel)
		rels = append(rels, rel)
	}
	defer link(t, ctx, a, b)()
	eventually(t, "b's records", func() bool {
		for _, rel := range rels {
			if _, have, err := b.ix.Get("docroot", rel); err != nil || !have {
				return false
			}
		}
		return true
	})
	ino := func(rel string) uint64 {
		fi, err := os.Lstat(filepath.Join(b.dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	// Files that arrived in a batch of at most flushEachMax were given
	// temp names and renamed: those are remembered, not claimed.
	b.engine.scanMu.Lock()
	defer b.engine.scanMu.Unlock()
	claimedN := 0
	for i, rel := range rels {
		_, placed := b.engine.placed[rel]
		claimed := b.engine.fs.OwnCreated(rel, ino(rel))
		switch {
		case i == 0 && claimed:
			t.Errorf("%s, with a fresh mtime, was claimed", rel)
		case placed == claimed:
			t.Errorf("%s: remembered %v, claimed %v; want exactly one", rel, placed, claimed)
		}
		if claimed {
			claimedN++
		}
	}
	if claimedN < flushEachMax {
		t.Errorf("%d files claimed, want at least a batch flushed with syncfs (%d)", claimedN, flushEachMax)
	}
}
