package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"lockstep/conflict"
	"lockstep/protocol"
)

func queueFolder() *Folder {
	return &Folder{peers: map[conflict.NodeID]*peer{}, queue: newQueue()}
}

func addInfo(t *testing.T, f *Folder, fi protocol.FileInfo) {
	t.Helper()
	if err := f.queue.add(context.Background(), f, 1, 0, &fi); err != nil {
		t.Fatal(err)
	}
}

func paths(items []*item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.info.Path)
	}
	return out
}

// take hands out batches in applying order, across batches too, as a sort
// of the whole queue would.
func TestQueueTakeOrder(t *testing.T) {
	f := queueFolder()
	rng := rand.New(rand.NewPCG(1, 2))
	var all []protocol.FileInfo
	for i := range 500 {
		fi := protocol.FileInfo{Path: fmt.Sprintf("d%d/%s", rng.IntN(5), fmt.Sprint(i)), Deleted: rng.IntN(4) == 0, Version: conflict.Vector{{Node: 1, Value: 1}}}
		if rng.IntN(3) == 0 {
			fi.Path = fmt.Sprintf("x%d", i)
		}
		all = append(all, fi)
		addInfo(t, f, fi)
	}
	slices.SortFunc(all, func(a, b protocol.FileInfo) int {
		switch {
		case applyOrder(&a, &b):
			return -1
		case applyOrder(&b, &a):
			return 1
		}
		return 0
	})
	now := time.Unix(1000, 0)
	var got []string
	for f.queue.len() > 0 {
		batch, next := f.queue.take(now, 64, nil)
		if len(batch) == 0 || len(batch) > 64 || !next.IsZero() {
			t.Fatalf("take returned %d items, next %v", len(batch), next)
		}
		got = append(got, paths(batch)...)
	}
	var want []string
	for _, fi := range all {
		want = append(want, fi.Path)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("taken in the wrong order:\n got %v\nwant %v", got[:10], want[:10])
	}
}

// An item requeued after a failure waits out its backoff; a newer version
// announced meanwhile is due at once and keeps its place by applyOrder.
func TestQueueBackoffAndMerge(t *testing.T) {
	f := queueFolder()
	now := time.Unix(1000, 0)
	v := func(n uint64) conflict.Vector { return conflict.Vector{{Node: 1, Value: n}} }
	addInfo(t, f, protocol.FileInfo{Path: "a/b", Version: v(1)})
	addInfo(t, f, protocol.FileInfo{Path: "c", Version: v(1)})
	batch, _ := f.queue.take(now, 10, nil)
	if !slices.Equal(paths(batch), []string{"c", "a/b"}) {
		t.Fatalf("first take = %v", paths(batch))
	}
	f.queue.requeue(batch[0], now)
	f.queue.requeue(batch[1], now)
	batch, next := f.queue.take(now, 10, nil)
	if len(batch) != 0 || next != now.Add(200*time.Millisecond) {
		t.Fatalf("take during backoff = %v, next %v", paths(batch), next)
	}
	// A newer version of a/b that deletes it: due now, after everything
	// not deleted.
	addInfo(t, f, protocol.FileInfo{Path: "a/b", Version: v(2), Deleted: true})
	addInfo(t, f, protocol.FileInfo{Path: "z/y/x", Version: v(1)})
	batch, next = f.queue.take(now, 10, nil)
	if !slices.Equal(paths(batch), []string{"z/y/x", "a/b"}) || next != now.Add(200*time.Millisecond) {
		t.Fatalf("take = %v, next %v", paths(batch), next)
	}
	if !batch[1].info.Deleted {
		t.Fatal("the merged item lost the newer version")
	}
	batch, next = f.queue.take(now.Add(200*time.Millisecond), 10, nil)
	if !slices.Equal(paths(batch), []string{"c"}) || !next.IsZero() || f.queue.len() != 0 {
		t.Fatalf("take after the backoff = %v, next %v, %d left", paths(batch), next, f.queue.len())
	}
	// clear empties both heaps.
	addInfo(t, f, protocol.FileInfo{Path: "q", Version: v(1)})
	batch, _ = f.queue.take(now, 10, nil)
	f.queue.requeue(batch[0], now)
	addInfo(t, f, protocol.FileInfo{Path: "r", Version: v(1)})
	f.queue.clear()
	if batch, next := f.queue.take(now.Add(time.Hour), 10, nil); len(batch) != 0 || !next.IsZero() || f.queue.len() != 0 {
		t.Fatalf("after clear: %v, next %v", paths(batch), next)
	}
}

// A path still being applied in another version stays queued, without
// holding back the items after it.
func TestQueueTakeSkipsBusy(t *testing.T) {
	f := queueFolder()
	for _, p := range []string{"a", "b", "c", "d"} {
		addInfo(t, f, protocol.FileInfo{Path: p, Version: conflict.Vector{{Node: 1, Value: 1}}})
	}
	now := time.Unix(1000, 0)
	busy := func(p string) bool { return p == "a" || p == "c" }
	batch, _ := f.queue.take(now, 10, busy)
	if !slices.Equal(paths(batch), []string{"b", "d"}) || f.queue.len() != 2 {
		t.Fatalf("take = %v with %d left, want [b d] and 2", paths(batch), f.queue.len())
	}
	if batch, _ := f.queue.take(now, 10, busy); len(batch) != 0 {
		t.Fatalf("took busy paths %v", paths(batch))
	}
	batch, _ = f.queue.take(now, 1, nil)
	if !slices.Equal(paths(batch), []string{"a"}) {
		t.Fatalf("take once free = %v, want [a]", paths(batch))
	}
}

// TestQueueHolders: the peers that announced an item's version are its
// holders only when they announced it from the index they have now.
func TestQueueHolders(t *testing.T) {
	f := queueFolder()
	for id, epoch := range map[conflict.NodeID]uint64{1: 10, 2: 20, 3: 30} {
		p := &peer{wm: newWatermark(0)}
		p.progress.PeerEpoch = epoch
		f.peers[id] = p
	}
	v := conflict.Vector{{Node: 9, Value: 1}}
	fi := protocol.FileInfo{Path: "x", Type: protocol.File, Version: v, Sequence: 1}
	ctx := context.Background()
	for _, a := range []struct {
		from  conflict.NodeID
		epoch uint64
	}{{1, 10}, {2, 19}, {3, 30}} {
		if err := f.queue.add(ctx, f, a.from, a.epoch, &fi); err != nil {
			t.Fatal(err)
		}
	}
	it := f.queue.items["x"]
	want := []peerEpoch{{1, 10}, {3, 30}}
	if !slices.Equal(it.holders, want) || len(it.sources) != 3 {
		t.Fatalf("holders %v, sources %v; want holders %v and 3 sources", it.holders, it.sources, want)
	}
	// A later version replaces them with its own announcer.
	later := fi
	later.Version = conflict.Vector{{Node: 9, Value: 2}}
	later.Sequence = 2
	if err := f.queue.add(ctx, f, 2, 20, &later); err != nil {
		t.Fatal(err)
	}
	if want := []peerEpoch{{2, 20}}; !slices.Equal(it.holders, want) {
		t.Fatalf("holders %v after a later version, want %v", it.holders, want)
	}
}
