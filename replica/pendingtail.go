package replica

import (
	"context"
	"errors"
	"slices"
	"sort"

	"lockstep/conflict"
	"lockstep/index"
)

// maxTail bounds how many sequences a pendingTail spans, and so its memory
// (some 100 bytes an entry, path included): beyond it, pending records are
// counted in the index at each status query instead. The tail is kept
// between queries, until a later query finds the peers caught up.
const maxTail = 1 << 18

// pendingTail mirrors, in memory, what status and observeCommits need of
// this node's records after a floor sequence (the lowest peer confirmation,
// or the sequence through which commits were reported if lower): each
// record's sequence, size, stamp and whether this node recorded it. Status
// counts a peer's pending records in it rather than by reading each of
// them from the index, and observeCommits finds the stamps of the versions
// just committed; both bring it up to date by reading only the records
// added since, and the sessions feed it what they read to send. A record leaves the index after its floor only when its path gets
// a newer one (read as such), when it is forgotten (tombstones every peer
// confirmed, at or below the floor) or when the index is reset (a new
// epoch: the tail starts over).
//
// It is not safe for concurrent use.
type pendingTail struct {
	valid   bool
	epoch   uint64
	floor   uint64            // every record after floor is held
	through uint64            // as of the index's sequence through
	entries []tailEntry       // increasing sequences, from head
	head    int               // entries before head are gone
	latest  map[string]uint64 // path → sequence of its record
}

type tailEntry struct {
	seq   uint64
	path  string
	bytes int64
	stamp conflict.Stamp
	local bool // recorded by this node (Origin)
	dead  bool // replaced by a newer record
}

// tailEntryOf is what the tail keeps of r; self is this node.
func tailEntryOf(r *index.Record, self conflict.NodeID) tailEntry {
	e := tailEntry{seq: r.Sequence, path: r.Path, stamp: r.Stamp, local: r.Origin == self}
	if !r.Deleted && r.Type == index.File {
		e.bytes = r.Size
	}
	return e
}

// reset empties the tail, to hold the records after floor of an index of
// epoch epoch.
func (t *pendingTail) reset(epoch, floor uint64) {
	*t = pendingTail{valid: true, epoch: epoch, floor: floor, through: floor, latest: map[string]uint64{}}
}

// add notes entry e, of a record read after through: it replaces its
// path's previous record.
func (t *pendingTail) add(e tailEntry) {
	if old, ok := t.latest[e.path]; ok {
		if i, found := t.find(old); found {
			t.entries[i].dead = true
		}
	}
	t.entries = append(t.entries, e)
	t.latest[e.path] = e.seq
	t.through = max(t.through, e.seq)
}

// find returns the position of the entry with sequence seq.
func (t *pendingTail) find(seq uint64) (int, bool) {
	live := t.entries[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq >= seq })
	return t.head + i, i < len(live) && live[i].seq == seq
}

// raise forgets the entries at or below floor, which no query asks for
// any more.
func (t *pendingTail) raise(floor uint64) {
	if floor <= t.floor {
		return
	}
	t.floor = floor
	for t.head < len(t.entries) && t.entries[t.head].seq <= floor {
		e := &t.entries[t.head]
		if !e.dead {
			delete(t.latest, e.path)
		}
		*e = tailEntry{}
		t.head++
	}
	if t.head == len(t.entries) {
		t.entries, t.head = t.entries[:0], 0
	} else if t.head >= len(t.entries)/2 {
		t.entries = append(t.entries[:0], t.entries[t.head:]...)
		t.head = 0
	}
	t.through = max(t.through, floor)
}

// count returns what is pending after sequence after (at least the
// floor): the live entries after it.
func (t *pendingTail) count(after uint64) pending {
	live := t.entries[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq > after })
	var p pending
	oldest := conflict.Stamp(0)
	for j := range live[i:] {
		e := &live[i+j]
		if e.dead {
			continue
		}
		p.files++
		p.bytes += e.bytes
		// Stamps order as their times do.
		if p.files == 1 || e.stamp < oldest {
			oldest = e.stamp
		}
	}
	if p.files > 0 {
		p.oldest = oldest.Time()
	}
	return p
}

// localStamps returns the stamps of this node's records after sequence
// from and up to through, in sequence order.
func (t *pendingTail) localStamps(from, through uint64) []conflict.Stamp {
	live := t.entries[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq > from })
	var out []conflict.Stamp
	for j := i; j < len(live) && live[j].seq <= through; j++ {
		if e := &live[j]; e.local && !e.dead {
			out = append(out, e.stamp)
		}
	}
	return out
}

// tailPlan is how to answer queries for the records after floor in an
// index of epoch epoch whose highest sequence is seq, with tail t.
type tailPlan int

const (
	tailScan  tailPlan = iota // too many sequences to mirror: read the index
	tailReset                 // start the tail over from floor
	tailKeep                  // raise the tail to floor and read what is new
)

// planTail decides how to bring the tail up to date.
func planTail(valid bool, tailEpoch, tailFloor, epoch, floor, seq uint64) tailPlan {
	switch {
	case seq > floor && seq-floor > maxTail:
		return tailScan
	case !valid || tailEpoch != epoch || floor < tailFloor:
		return tailReset
	default:
		return tailKeep
	}
}

// keepFloor is the lowest sequence the tail must hold records after for
// observeCommits: the one through which commits were reported (MaxUint64
// when they are not timed).
func (f *Folder) keepFloor() uint64 {
	if f.opts.Events.Committed == nil {
		return ^uint64(0)
	}
	return f.observedTail.Load()
}

// tailFloor is the floor the tail is raised to: the lowest peer
// confirmation, or keepFloor if lower. The caller holds tailMu, so that
// the floor only rises while a caller uses confirmations it read.
func (f *Folder) tailFloor() uint64 {
	return min(f.lowestConfirmed(), f.keepFloor())
}

// syncTail brings the tail up to date with the index whose epoch and
// highest sequence info holds, to hold every record after need at least.
// It reports false, with the tail emptied, when that spans too many
// sequences. The caller holds tailMu.
func (f *Folder) syncTail(ctx context.Context, info index.FolderInfo, need uint64) (bool, error) {
	floor := min(need, info.Sequence, f.tailFloor())
	t := &f.tail
	switch planTail(t.valid, t.epoch, t.floor, info.Epoch, floor, info.Sequence) {
	case tailScan:
		*t = pendingTail{}
		return false, nil
	case tailReset:
		t.reset(info.Epoch, floor)
	case tailKeep:
		t.raise(floor)
	}
	if info.Sequence > t.through {
		err := f.ix.Since(ctx, f.id, t.through, func(r index.Record) error {
			t.add(tailEntryOf(&r, f.opts.Self))
			return nil
		})
		if err != nil {
			*t = pendingTail{}
			return false, err
		}
		// Read after info: everything up to its sequence was there.
		t.through = max(t.through, info.Sequence)
	}
	return true, nil
}

// feedTail adds to the tail the records sendBatch read after cursor, in
// sequence order, from the index of epoch epoch, so that neither status
// nor observeCommits reads them again. Every record after cursor up to
// the last one was read. A tail not kept yet starts at cursor when no
// query would need it lower; a kept one is raised first.
func (f *Folder) feedTail(epoch, cursor uint64, es []tailEntry) {
	if len(es) == 0 {
		return
	}
	last := es[len(es)-1].seq
	f.tailMu.Lock()
	defer f.tailMu.Unlock()
	floor := f.tailFloor()
	t := &f.tail
	if !t.valid {
		if cursor > floor || last-cursor > maxTail {
			return
		}
		t.reset(epoch, cursor)
	}
	if t.epoch == epoch {
		t.raise(min(floor, cursor))
	}
	if t.epoch != epoch || cursor > t.through || last <= t.through {
		return
	}
	if last-t.floor > maxTail {
		*t = pendingTail{}
		return
	}
	for _, e := range es {
		if e.seq > t.through {
			t.add(e)
		}
	}
	t.through = last
}

// lowestConfirmed returns the lowest confirmation among the peers
// (MaxUint64 with none).
func (f *Folder) lowestConfirmed() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	low := ^uint64(0)
	for _, p := range f.peers {
		low = min(low, p.progress.Confirmed)
	}
	return low
}

// pendingAfter returns, for each sequence in afters, what is pending after
// it in the index whose epoch and highest sequence info holds: from the
// tail, brought up to date first, unless it would span too many sequences.
func (f *Folder) pendingAfter(ctx context.Context, info index.FolderInfo, afters []uint64) ([]pending, error) {
	out := make([]pending, len(afters))
	if len(afters) == 0 {
		return out, nil
	}
	f.tailMu.Lock()
	defer f.tailMu.Unlock()
	return f.pendingAfterLocked(ctx, info, afters)
}

// pendingAfterLocked is pendingAfter with tailMu held.
func (f *Folder) pendingAfterLocked(ctx context.Context, info index.FolderInfo, afters []uint64) ([]pending, error) {
	out := make([]pending, len(afters))
	if len(afters) == 0 {
		return out, nil
	}
	ok, err := f.syncTail(ctx, info, slices.Min(afters))
	if err != nil {
		return nil, err
	}
	for i, after := range afters {
		switch {
		case after >= info.Sequence:
		case ok:
			out[i] = f.tail.count(after)
		default:
			p, err := f.pendingSince(ctx, after)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
	}
	return out, nil
}

// committedStamps returns the stamps of this node's records after
// sequence from and up to through, in sequence order, in the index whose
// epoch and highest sequence info holds.
func (f *Folder) committedStamps(ctx context.Context, info index.FolderInfo, from, through uint64) ([]conflict.Stamp, error) {
	f.tailMu.Lock()
	defer f.tailMu.Unlock()
	ok, err := f.syncTail(ctx, info, from)
	if err != nil {
		return nil, err
	}
	if ok && f.tail.floor <= from {
		return f.tail.localStamps(from, through), nil
	}
	var out []conflict.Stamp
	err = f.ix.Since(ctx, f.id, from, func(r index.Record) error {
		if r.Sequence > through {
			return errDone
		}
		if r.Origin == f.opts.Self {
			out = append(out, r.Stamp)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return nil, err
	}
	return out, nil
}
