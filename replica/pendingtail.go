package replica

import (
	"context"
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

// pendingTail mirrors, in memory, what status needs of this node's records
// after a floor sequence (the lowest confirmation among the peers): each
// record's sequence, size and stamp. Status counts a peer's pending
// records in it rather than by reading each of them from the index, and
// brings it up to date by reading only the records added since the last
// query. A record leaves the index after its floor only when its path gets
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
	dead  bool // replaced by a newer record
}

// reset empties the tail, to hold the records after floor of an index of
// epoch epoch.
func (t *pendingTail) reset(epoch, floor uint64) {
	*t = pendingTail{valid: true, epoch: epoch, floor: floor, through: floor, latest: map[string]uint64{}}
}

// add notes record r, read after through: it replaces its path's
// previous record.
func (t *pendingTail) add(r *index.Record) {
	e := tailEntry{seq: r.Sequence, path: r.Path, stamp: r.Stamp}
	if !r.Deleted && r.Type == index.File {
		e.bytes = r.Size
	}
	if old, ok := t.latest[r.Path]; ok {
		if i, found := t.find(old); found {
			t.entries[i].dead = true
		}
	}
	t.entries = append(t.entries, e)
	t.latest[r.Path] = r.Sequence
	t.through = max(t.through, r.Sequence)
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

// pendingAfter returns, for each sequence in afters, what is pending after
// it in the index whose epoch and highest sequence info holds: from the
// tail, brought up to date first, unless it would span too many sequences.
func (f *Folder) pendingAfter(ctx context.Context, info index.FolderInfo, afters []uint64) ([]pending, error) {
	out := make([]pending, len(afters))
	if len(afters) == 0 {
		return out, nil
	}
	floor := min(slices.Min(afters), info.Sequence)
	f.tailMu.Lock()
	defer f.tailMu.Unlock()
	t := &f.tail
	switch planTail(t.valid, t.epoch, t.floor, info.Epoch, floor, info.Sequence) {
	case tailScan:
		*t = pendingTail{}
		for i, after := range afters {
			if after >= info.Sequence {
				continue
			}
			p, err := f.pendingSince(ctx, after)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	case tailReset:
		t.reset(info.Epoch, floor)
	case tailKeep:
		t.raise(floor)
	}
	if info.Sequence > t.through {
		err := f.ix.Since(ctx, f.id, t.through, func(r index.Record) error {
			t.add(&r)
			return nil
		})
		if err != nil {
			*t = pendingTail{}
			return nil, err
		}
		// Read after info: everything up to its sequence was there.
		t.through = max(t.through, info.Sequence)
	}
	for i, after := range afters {
		if after < info.Sequence {
			out[i] = t.count(after)
		}
	}
	return out, nil
}
