package index

import (
	"sync"
	"sync/atomic"
	"time"
)

// Badger v4 maps every table, value-log and memtable file with MAP_SHARED
// and has no option to read them with pread instead. Every page of those
// files that Badger writes (a new table is copied into its mapping) or
// reads (a compaction, a lookup) then stays in the process's resident set
// until the mapping goes: after a first scan, about the whole index. Those
// pages are the page cache's, not the process's, but they count in its RSS
// and VmHWM like its own memory, which is what an operator sees.
//
// So while the index is written, a pager looks every releaseInterval at
// the process's file-backed resident memory and, when it exceeds
// releaseBudget, reclaims the index's pages (madvise MADV_PAGEOUT on the
// shared file mappings under the index directory; see releaseMapped); it
// looks once more when Badger has finished compacting. The price is that
// pages read again come from the disk rather than from memory, which is
// why a release waits for the budget to fill rather than following every
// write. Reads alone do not arm the pager, so a rescan, which reads the
// whole index, keeps its speed (and peaks at about the index's size). A
// look costs a read of /proc/self/statm; a release a read of
// /proc/self/maps and one madvise per mapping (~1 ms for a million files'
// tables); nothing runs while the index is idle.
const (
	releaseInterval = 200 * time.Millisecond
	// releaseBudget is the file-backed resident memory (the program's
	// own text included, ~10 MiB) above which the index's pages are
	// reclaimed.
	releaseBudget = 32 << 20
)

// pager releases the index's mapped pages on a timer that index activity
// arms and that stops once the index is idle.
type pager struct {
	dir     string
	every   time.Duration
	release func(dir string) (int64, error) // releaseMapped; tests count calls
	busy    func() bool                     // compactors may be running without index calls
	// resident returns the file-backed resident bytes (fileResident), or
	// an error where they cannot be known (then every look releases).
	resident func() (int64, error)
	budget   atomic.Int64 // releaseBudget; tests lower it

	armed atomic.Bool // timer set, or its release running
	used  atomic.Bool // index written since the timer was set

	mu       sync.Mutex
	timer    *time.Timer
	closed   bool
	wg       sync.WaitGroup
	released atomic.Int64 // bytes of mappings released, for tests and logs
	releases atomic.Int64 // releases done, for tests
	failed   atomic.Bool  // releasing failed once: not tried again
}

func newPager(dir string, every time.Duration, busy func() bool) *pager {
	p := &pager{dir: dir, every: every, release: releaseMapped, resident: fileResident, busy: busy}
	p.budget.Store(releaseBudget)
	p.timer = time.AfterFunc(time.Hour, p.fire)
	p.timer.Stop()
	return p
}

// touch records a write to the index, which maps pages in.
// It is cheap enough for every call: two atomic operations, and a timer
// reset once per interval.
func (p *pager) touch() {
	p.used.Store(true)
	if p.armed.Load() || !p.armed.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.failed.Load() {
		p.armed.Store(false)
		return
	}
	p.wg.Add(1)
	p.timer.Reset(p.every)
}

// fire releases the mapped pages if they are over budget, and looks again
// an interval later while the index is still in use or Badger may still be
// compacting.
func (p *pager) fire() {
	defer p.wg.Done()
	p.used.Store(false)
	var err error
	if r, rerr := p.resident(); rerr != nil || r > p.budget.Load() {
		var n int64
		n, err = p.release(p.dir)
		p.released.Add(n)
		p.releases.Add(1)
	}
	busy := p.busy() // not under p.mu: the idler calls touch under its own lock
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		// A kernel without madvise, or no /proc: the pages just stay
		// resident, as they would without the pager.
		p.failed.Store(true)
	}
	if p.closed || p.failed.Load() || !(p.used.Load() || busy) {
		p.armed.Store(false)
		return
	}
	p.wg.Add(1)
	p.timer.Reset(p.every)
}

// close stops the timer and waits for a release under way.
func (p *pager) close() {
	p.mu.Lock()
	p.closed = true
	if p.armed.Load() && p.timer.Stop() {
		p.armed.Store(false)
		p.wg.Done()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
