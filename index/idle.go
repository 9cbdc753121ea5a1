package index

import (
	"sync"
	"time"
	_ "unsafe" // for go:linkname

	"github.com/dgraph-io/badger/v4"
)

// Badger's compactors each wake every 50 ms to look for work, whether or
// not anything was written: on an idle node that was most of the daemon's
// CPU. Badger (v4.9) exports no way to pause them. NumCompactors 0 turns
// them off for good, and DB.Flatten, the only exported way to compact then,
// rewrites the whole tree into one level each time. So the index reaches
// the two unexported methods that Flatten and DropAll use to pause and
// resume them. TestIdlePausesCompactors fails if they no longer exist under
// these names (the build fails to link) or no longer stop and start the
// compactor goroutines.

//go:linkname badgerStopCompactions github.com/dgraph-io/badger/v4.(*DB).stopCompactions
func badgerStopCompactions(db *badger.DB)

//go:linkname badgerStartCompactions github.com/dgraph-io/badger/v4.(*DB).startCompactions
func badgerStartCompactions(db *badger.DB)

// defaultIdleAfter is how long after the last write the compactors are
// paused, provided no level needs compacting.
const defaultIdleAfter = 2 * time.Second

// idler pauses Badger's compactors while nothing is written and the tree
// needs no compaction, and resumes them before the next write. Every write
// to the database goes between begin and end. A paused tree stays as it
// was: reads do not need the compactors, and only writes (through memtable
// flushes) give them work.
type idler struct {
	db    *badger.DB
	after time.Duration

	mu      sync.Mutex
	writers int       // writes under way
	last    time.Time // end of the last write
	writes  uint64    // writes begun, maintenance excepted
	paused  bool
	// onPause is called (under mu) once the compactors are paused: the
	// pager's last round then also takes the tables that memtable
	// flushes wrote after the last write.
	onPause func()
	closed  bool
	armed   bool        // timer is set, or its check is running
	timer   *time.Timer // runs check
	wg      sync.WaitGroup
}

func newIdler(db *badger.DB, after time.Duration) *idler {
	d := &idler{db: db, after: after, last: time.Now()}
	d.mu.Lock()
	d.timer = time.AfterFunc(time.Hour, d.check)
	d.timer.Stop()
	d.arm(after)
	d.mu.Unlock()
	return d
}

// arm schedules a check in wait, unless one is already scheduled. The
// caller holds d.mu.
func (d *idler) arm(wait time.Duration) {
	if d.armed || d.closed {
		return
	}
	d.armed = true
	d.wg.Add(1)
	d.timer.Reset(wait)
}

// check pauses the compactors if the index has been idle long enough and
// no level needs compacting; otherwise it looks again later.
func (d *idler) check() {
	defer d.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed = false
	if d.closed || d.paused {
		return
	}
	if d.writers > 0 {
		d.arm(d.after)
		return
	}
	if wait := d.after - time.Since(d.last); wait > 0 {
		d.arm(wait)
		return
	}
	if compactionPending(d.db) {
		d.arm(d.after)
		return
	}
	badgerStopCompactions(d.db)
	d.paused = true
	if d.onPause != nil {
		d.onPause()
	}
}

// compactionPending reports whether a level is over its target, which is
// when a compactor would have work. Levels gives a level a score only then.
func compactionPending(db *badger.DB) bool {
	for _, l := range db.Levels() {
		if l.Score >= 1 {
			return true
		}
	}
	return false
}

// begin is called before a write: it resumes the compactors if they are
// paused, so that the memtable flushes the write may cause are compacted.
// Maintenance passes count false: it is not a change that calls for more
// maintenance.
func (d *idler) begin(count bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writers++
	if count {
		d.writes++
	}
	if d.paused && !d.closed {
		badgerStartCompactions(d.db)
		d.paused = false
	}
	d.arm(d.after)
}

// end is called after a write.
func (d *idler) end() {
	d.mu.Lock()
	d.writers--
	d.last = time.Now()
	d.mu.Unlock()
}

// writing brackets a write: `defer ix.idle.writing()()`.
func (d *idler) writing() func() {
	d.begin(true)
	return d.end
}

// maintaining brackets maintenance, which writes but does not count as a
// write for written.
func (d *idler) maintaining() func() {
	d.begin(false)
	return d.end
}

// written returns the number of writes begun so far, maintenance excepted.
func (d *idler) written() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// close stops the timer and waits for a check under way. The compactors,
// paused or not, are then Badger's to stop when it closes.
func (d *idler) close() {
	d.mu.Lock()
	d.closed = true
	if d.armed && d.timer.Stop() {
		d.armed = false
		d.wg.Done()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// isPaused reports whether the compactors are paused (tests).
func (d *idler) isPaused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}
