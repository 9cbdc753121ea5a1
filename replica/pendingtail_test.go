package replica

import (
	"testing"
	"time"

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
			tail.add(&r)
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
		tail.add(&r)
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
