package replica

import (
	"context"
	"errors"
	"sort"
	"time"

	"lockstep/conflict"
)

// Events are the engine's callbacks for observability. A nil field is not
// called. They are called from the engine's goroutines and must not block.
type Events struct {
	// Committed is called once for each version recorded by this node
	// since it started, when that version becomes committed — held
	// durably by a quorum of nodes in a quorum folder, by every peer in an
	// async folder — with the time since it was recorded. A version
	// replaced by a newer one before it was committed is not reported. A
	// folder with no peer to wait for reports nothing.
	Committed func(latency time.Duration)
}

// maxRecordTimes bounds how many record times a folder keeps for versions
// not committed yet; older ones are then timed by their stamps, to the
// millisecond.
const maxRecordTimes = 1 << 16

// recordTimes remembers when this node's recent local versions were
// recorded, by stamp, to time them until they are committed. Stamps are
// added in increasing order (the clock issues them so). It is not safe for
// concurrent use.
type recordTimes struct {
	max  int
	q    []stampTime // increasing stamps from q[head]
	head int
	// first is the first stamp added; lost the highest one forgotten to
	// stay within max (0 if none).
	first, lost conflict.Stamp
}

type stampTime struct {
	s  conflict.Stamp
	at time.Time
}

func (r *recordTimes) len() int { return len(r.q) - r.head }

// add notes that the version stamped s was recorded at at. When max are
// held, the older half is forgotten.
func (r *recordTimes) add(s conflict.Stamp, at time.Time) {
	if n := len(r.q); n > r.head && s <= r.q[n-1].s {
		return // out of order: not timed rather than misplaced
	}
	if r.first == 0 {
		r.first = s
	}
	if r.len() >= r.max {
		drop := max(r.len()/2, 1)
		r.lost = r.q[r.head+drop-1].s
		r.head += drop
	}
	if r.head > 0 && r.head >= len(r.q)/2 {
		r.q = append(r.q[:0], r.q[r.head:]...)
		r.head = 0
	}
	r.q = append(r.q, stampTime{s, at})
}

// take returns when the version stamped s was recorded, and forgets it
// and every older stamp: versions are committed in the order they were
// recorded, so an older one still here was replaced before it was
// committed. A forgotten version's time is its stamp's, to the
// millisecond. ok is false for a version recorded before the first add.
func (r *recordTimes) take(s conflict.Stamp) (at time.Time, ok bool) {
	live := r.q[r.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].s >= s })
	switch {
	case i < len(live) && live[i].s == s:
		at, ok = live[i].at, true
		i++
	case r.first != 0 && s >= r.first && s <= r.lost:
		at, ok = s.Time(), true
	}
	r.head += i
	if r.head == len(r.q) {
		r.q, r.head = r.q[:0], 0
	}
	return at, ok
}

// Stamp issues the stamp of a new local version of this folder recorded
// at now: the node's clock, noting the time so that Events.Committed can
// report how long the version took to be committed. The folder's scanner
// uses it as its clock.
func (f *Folder) Stamp(now time.Time) conflict.Stamp {
	s := f.opts.Clock.Now(now)
	if f.opts.Events.Committed != nil {
		f.mu.Lock()
		f.recorded.add(s, now)
		f.mu.Unlock()
	}
	return s
}

var errDone = errors.New("done")

// observeCommits reports through Events.Committed the local versions that
// became committed since the last call; at is when the confirmation that
// committed them arrived.
func (f *Folder) observeCommits(at time.Time) error {
	if f.opts.Events.Committed == nil {
		return nil
	}
	f.commitMu.Lock()
	defer f.commitMu.Unlock()
	f.mu.Lock()
	confirmed := make([]uint64, 0, len(f.peers))
	for _, p := range f.peers {
		confirmed = append(confirmed, p.progress.Confirmed)
	}
	// A version confirmed was stamped before: read after the confirmations.
	none := f.recorded.first == 0
	f.mu.Unlock()
	through := f.committedThrough(confirmed)
	if through == ^uint64(0) || through <= f.observed {
		return nil // nothing waits for a confirmation, or nothing new
	}
	from := f.observed
	f.observed = through
	defer f.observedTail.Store(through)
	if none {
		// No local version recorded since the start (a node that only
		// receives): nothing to time, no need to read the records.
		return nil
	}
	info, err := f.ix.Info(f.id)
	if err != nil {
		return err
	}
	stamps, err := f.committedStamps(context.Background(), info, from, through)
	if err != nil {
		return err
	}
	lat := make([]time.Duration, 0, len(stamps))
	f.mu.Lock()
	for _, s := range stamps {
		if t, ok := f.recorded.take(s); ok {
			lat = append(lat, max(at.Sub(t), 0))
		}
	}
	f.mu.Unlock()
	for _, d := range lat {
		f.opts.Events.Committed(d)
	}
	return nil
}
