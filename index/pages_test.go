package index

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestPagerRunsWhileUsed checks the pager's timer: it releases while the
// index is used or busy, stops when neither, costs nothing when idle, and
// Close waits for a release under way.
func TestPagerRunsWhileUsed(t *testing.T) {
	var calls atomic.Int64
	var busy atomic.Bool
	p := newPager("/nonexistent", 5*time.Millisecond, busy.Load)
	p.release = func(string) (int64, error) { calls.Add(1); return 1, nil }
	var resident atomic.Int64 // over budget until the test says otherwise
	resident.Store(releaseBudget + 1)
	p.resident = func() (int64, error) { return resident.Load(), nil }

	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d releases before any use", n)
	}
	p.touch()
	waitFor(t, "a release after a use", func() bool { return calls.Load() >= 1 })
	waitFor(t, "the pager to stop once unused", func() bool { return !p.armed.Load() })
	n := calls.Load()
	time.Sleep(50 * time.Millisecond)
	if got := calls.Load(); got != n {
		t.Fatalf("%d releases while idle", got-n)
	}

	// Busy (Badger compacting) keeps it going without any use.
	busy.Store(true)
	p.touch()
	waitFor(t, "releases while busy", func() bool { return calls.Load() >= n+5 })
	busy.Store(false)
	waitFor(t, "the pager to stop once not busy", func() bool { return !p.armed.Load() })

	// Under budget, the pager looks but leaves the pages resident.
	resident.Store(releaseBudget)
	busy.Store(true)
	n = calls.Load()
	p.touch()
	time.Sleep(50 * time.Millisecond)
	if got := calls.Load(); got != n {
		t.Fatalf("%d releases under budget", got-n)
	}
	if !p.armed.Load() {
		t.Fatal("the pager stopped looking while busy")
	}
	resident.Store(releaseBudget + 1)
	waitFor(t, "a release once over budget", func() bool { return calls.Load() > n })
	busy.Store(false)
	waitFor(t, "the pager to stop once not busy", func() bool { return !p.armed.Load() })

	// A failing release stops the pager for good.
	p.release = func(string) (int64, error) { calls.Add(1); return 0, os.ErrPermission }
	busy.Store(true)
	p.touch()
	waitFor(t, "the failed release", func() bool { return p.failed.Load() })
	n = calls.Load()
	p.touch()
	time.Sleep(50 * time.Millisecond)
	if got := calls.Load(); got != n {
		t.Fatalf("%d releases after one failed", got-n)
	}
	p.close()
}
