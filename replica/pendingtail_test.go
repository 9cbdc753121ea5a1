package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"lockstep/chunker"

	"lockstep/conflict"
	"lockstep/index"
)

// tailOp is one step on a pendingTail: add a record, or raise the floor.
type tailOp struct {
	raise   uint64 // raise to this floor instead of adding
	seq     uint64
	path    string
	size    int64
	deleted bool
	dir     bool
	ms      uint64 // stamp time
}

func TestPendingTail(t *testing.T) {
	at := func(ms uint64) time.Time { return conflict.MakeStamp(ms, 0).Time() }
	tests := []struct {
		name  string
		floor uint64
		ops   []tailOp
		after uint64
		want  pending
	}{
		{"empty", 0, nil, 0, pending{}},
		{"files, a directory and a deletion", 0, []tailOp{
			{seq: 1, path: "d", dir: true, ms: 100},
			{seq: 2, path: "d/a", size: 10, ms: 200},
			{seq: 3, path: "d/b", size: 20, ms: 150},
			{seq: 4, path: "c", deleted: true, size: 99, ms: 300},
		}, 0, pending{files: 4, bytes: 30, oldest: at(100)}},
		{"after a confirmation", 0, []tailOp{
			{seq: 1, path: "a", size: 1, ms: 100},
			{seq: 2, path: "b", size: 2, ms: 300},
			{seq: 3, path: "c", size: 4, ms: 200},
		}, 1, pending{files: 2, bytes: 6, oldest: at(200)}},
		{"a replaced record counts once, as its newest", 0, []tailOp{
			{seq: 1, path: "a", size: 1, ms: 100},
			{seq: 2, path: "b", size: 2, ms: 150},
			{seq: 3, path: "a", size: 5, ms: 200},
		}, 0, pending{files: 2, bytes: 7, oldest: at(150)}},
		{"replaced by a deletion", 0, []tailOp{
			{seq: 1, path: "a", size: 1, ms: 100},
			{seq: 2, path: "a", deleted: true, ms: 200},
		}, 0, pending{files: 1, oldest: at(200)}},
		{"replacing a record below the floor", 5, []tailOp{
			{seq: 6, path: "a", size: 3, ms: 100},
			{raise: 6},
			{seq: 7, path: "a", size: 4, ms: 200},
		}, 6, pending{files: 1, bytes: 4, oldest: at(200)}},
		{"raised past everything", 0, []tailOp{
			{seq: 1, path: "a", size: 1, ms: 100},
			{seq: 2, path: "b", size: 1, ms: 100},
			{raise: 2},
		}, 2, pending{}},
		{"raised, then more", 0, []tailOp{
			{seq: 1, path: "a", size: 1, ms: 100},
			{seq: 2, path: "b", size: 2, ms: 110},
			{seq: 3, path: "c", size: 4, ms: 120},
			{raise: 2},
			{seq: 4, path: "b", size: 8, ms: 130},
			{seq: 5, path: "a", size: 16, ms: 140},
		}, 2, pending{files: 3, bytes: 28, oldest: at(120)}},
		{"a lower raise is ignored", 0, []tailOp{
			{seq: 1, path: "a", size: 1, ms: 100},
			{seq: 2, path: "b", size: 2, ms: 110},
			{raise: 1},
		}, 1, pending{files: 1, bytes: 2, oldest: at(110)}},
	}
	for _, tt := range tests {
		var tail pendingTail
		tail.reset(7, tt.floor)
		for _, op := range tt.ops {
			if op.raise > 0 {
				tail.raise(op.raise)
				continue
			}
			r := index.Record{Path: op.path, Sequence: op.seq, Size: op.size, Deleted: op.deleted, Type: index.File, Stamp: conflict.MakeStamp(op.ms, 0)}
			if op.dir {
				r.Type = index.Dir
			}
			tail.add(tailEntryOf(&r, 0))
		}
		if got := tail.count(tt.after); got != tt.want {
			t.Errorf("%s: count(%d) = %+v, want %+v", tt.name, tt.after, got, tt.want)
		}
	}
}

// TestPendingTailCompacts checks that raising keeps the entries and the
// map bounded by what is after the floor, with replacements in between.
func TestPendingTailCompacts(t *testing.T) {
	var tail pendingTail
	tail.reset(1, 0)
	paths := []string{"a", "b", "c"}
	for seq := uint64(1); seq <= 1000; seq++ {
		r := index.Record{Path: paths[seq%3], Sequence: seq, Size: 1, Type: index.File, Stamp: conflict.MakeStamp(seq, 0)}
		tail.add(tailEntryOf(&r, 0))
		if seq > 10 {
			tail.raise(seq - 10)
		}
		if n := len(tail.entries) - tail.head; n > 10 {
			t.Fatalf("after %d: %d entries held", seq, n)
		}
		if len(tail.latest) > 3 {
			t.Fatalf("after %d: %d paths held", seq, len(tail.latest))
		}
		if p := tail.count(tail.floor); p.files != 3 && seq > 10 {
			t.Fatalf("after %d: %d files pending, want 3", seq, p.files)
		}
	}
}

func TestPlanTail(t *testing.T) {
	tests := []struct {
		name                 string
		valid                bool
		tailEpoch, tailFloor uint64
		epoch, floor, seq    uint64
		want                 tailPlan
	}{
		{"first query", false, 0, 0, 1, 0, 100, tailReset},
		{"same epoch, floor risen", true, 1, 10, 1, 20, 100, tailKeep},
		{"same epoch and floor", true, 1, 10, 1, 10, 100, tailKeep},
		{"floor went back", true, 1, 10, 1, 5, 100, tailReset},
		{"index reset", true, 1, 10, 2, 10, 100, tailReset},
		{"too many sequences", true, 1, 0, 1, 0, maxTail + 1, tailScan},
		{"just enough", false, 0, 0, 1, 0, maxTail, tailReset},
		{"all confirmed", true, 1, 10, 1, 100, 100, tailKeep},
	}
	for _, tt := range tests {
		if got := planTail(tt.valid, tt.tailEpoch, tt.tailFloor, tt.epoch, tt.floor, tt.seq); got != tt.want {
			t.Errorf("%s: planTail = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPendingAfterMatchesIndex checks pendingAfter, which keeps a tail,
// against counting in the index, through writes, replacements, deletions,
// rising and falling confirmations and a reset of the index.
func TestPendingAfterMatchesIndex(t *testing.T) {
	ix, err := index.Open(t.TempDir(), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	f := &Folder{ix: ix, id: "f"}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	version := conflict.Vector{{Node: 0xa, Value: 1}}
	put := func(n int) {
		recs := make([]index.Record, n)
		for i := range recs {
			r := &recs[i]
			r.Path = fmt.Sprintf("p%d", rng.IntN(40))
			r.Type = index.File
			r.Version = version
			r.Origin = 0xa
			r.Stamp = conflict.MakeStamp(uint64(1000+rng.IntN(1000)), 0)
			if rng.IntN(5) == 0 {
				r.Deleted = true
			} else if size := rng.IntN(3); size > 0 {
				r.Size = int64(size)
				r.Manifest.Chunks = []chunker.Ref{{Hash: chunker.Hash{byte(i)}, Length: uint32(size)}}
			}
		}
		if err := ix.Put("f", recs); err != nil {
			t.Fatal(err)
		}
	}
	var confirmed uint64
	check := func(step int) {
		info, err := ix.Info("f")
		if err != nil {
			t.Fatal(err)
		}
		// A confirmation that mostly rises, now and then from scratch.
		if confirmed = min(confirmed+uint64(rng.IntN(6)), info.Sequence); step%50 == 49 {
			confirmed = 0
		}
		low := confirmed
		afters := []uint64{low, low + uint64(rng.IntN(5)), info.Sequence, info.Sequence + 1}
		got, err := f.pendingAfter(ctx, info, afters)
		if err != nil {
			t.Fatal(err)
		}
		for i, after := range afters {
			want, err := f.pendingSince(ctx, after)
			if err != nil {
				t.Fatal(err)
			}
			if got[i] != want {
				t.Fatalf("step %d: after %d of %d: tail counts %+v, index %+v", step, after, info.Sequence, got[i], want)
			}
		}
	}
	for step := range 200 {
		if step == 120 {
			if _, err := ix.ResetFolder("f"); err != nil {
				t.Fatal(err)
			}
		}
		put(rng.IntN(6))
		check(step)
	}
}

// TestTailFedMatchesIndex checks the tail fed by what sendBatch reads,
// and the stamps observeCommits takes from it, against the index.
func TestTailFedMatchesIndex(t *testing.T) {
	ix, err := index.Open(t.TempDir(), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	f := &Folder{ix: ix, id: "f"}
	f.opts.Self = 0xa
	f.opts.Events.Committed = func(time.Duration) {}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	put := func(n int) {
		recs := make([]index.Record, n)
		for i := range recs {
			r := &recs[i]
			r.Path = fmt.Sprintf("p%d", rng.IntN(30))
			r.Type = index.File
			r.Origin = conflict.NodeID(0xa + rng.IntN(2))
			r.Version = conflict.Vector{{Node: r.Origin, Value: 1}}
			r.Stamp = conflict.MakeStamp(uint64(1000+rng.IntN(1000)), 0)
			r.Deleted = rng.IntN(5) == 0
		}
		if err := ix.Put("f", recs); err != nil {
			t.Fatal(err)
		}
	}
	// indexStamps is what observeCommits read from the index before.
	indexStamps := func(from, through uint64) []conflict.Stamp {
		var out []conflict.Stamp
		err := ix.Since(ctx, "f", from, func(r index.Record) error {
			if r.Sequence <= through && r.Origin == 0xa {
				out = append(out, r.Stamp)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var confirmed, observed, cursor uint64
	for step := range 300 {
		put(rng.IntN(6))
		info, err := ix.Info("f")
		if err != nil {
			t.Fatal(err)
		}
		// A session sends a batch of at most 4 records after its cursor.
		var read []tailEntry
		err = ix.Since(ctx, "f", cursor, func(r index.Record) error {
			read = append(read, tailEntryOf(&r, 0xa))
			if len(read) == 4 {
				return errDone
			}
			return nil
		})
		if err != nil && err != errDone {
			t.Fatal(err)
		}
		f.feedTail(info.Epoch, cursor, read)
		if len(read) > 0 {
			cursor = read[len(read)-1].seq
		}
		// The peer confirms part of what it was sent; commits are observed.
		confirmed = min(cursor, confirmed+uint64(rng.IntN(5)))
		if confirmed > observed {
			got, err := f.committedStamps(ctx, info, observed, confirmed)
			if err != nil {
				t.Fatal(err)
			}
			if want := indexStamps(observed, confirmed); !slices.Equal(got, want) {
				t.Fatalf("step %d: stamps after %d through %d: tail %v, index %v", step, observed, confirmed, got, want)
			}
			observed = confirmed
			f.observedTail.Store(observed)
		}
		if step%3 == 0 {
			got, err := f.pendingAfter(ctx, info, []uint64{confirmed})
			if err != nil {
				t.Fatal(err)
			}
			want, err := f.pendingSince(ctx, confirmed)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != want {
				t.Fatalf("step %d: after %d: tail counts %+v, index %+v", step, confirmed, got[0], want)
			}
		}
		if step%100 == 99 {
			// The peer rebuilt its index: streamed from the start.
			confirmed, observed, cursor = 0, 0, 0
			f.observedTail.Store(0)
		}
	}
	if !f.tail.valid {
		t.Error("the tail was not kept")
	}
}
