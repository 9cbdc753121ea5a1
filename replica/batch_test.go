package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/protocol"
)

// TestSmallFilesFetchedInBatches: toward a peer that answers chunk
// batches, small files come many to a request, and a large file's chunks
// come in batches too.
func TestSmallFilesFetchedInBatches(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	const n = 150
	want := map[string][]byte{}
	for i := range n {
		rel := fmt.Sprintf("d%d/f%03d.txt", i%3, i)
		want[rel] = randomBytes(uint64(i), 500+i*10)
		a.write(rel, want[rel])
	}
	big := randomBytes(7, 200<<10)
	a.write("big.bin", big)
	cut, conn := linkConns(t, ctx, a, b, nil, true)
	defer cut()
	for rel, data := range want {
		eventually(t, rel+" on b", hasContent(b, rel, data))
	}
	eventually(t, "big.bin on b", hasContent(b, "big.bin", big))
	rec, _, err := a.ix.Get("docroot", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	batches, singles := conn.batchd.Load(), conn.singles.Load()
	if batches < n/batchFiles || batches > n {
		t.Errorf("%d chunk batches for %d small files, want about %d", batches, n, (n+batchFiles-1)/batchFiles)
	}
	if singles != 0 {
		t.Errorf("%d single chunk requests, want none (the large file's %d chunks in batches)", singles, len(rec.Manifest.Chunks))
	}
}

// TestBatchedFetchFallsBack: a chunk that fails in a batch is asked for
// again on its own; a file whose chunk keeps failing is never written, not
// even in part, while the rest of its batch arrives.
func TestBatchedFetchFallsBack(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	once := []byte("fails once")
	always := randomBytes(3, 2000)
	a.write("once.txt", once)
	a.write("always.txt", always)
	others := map[string][]byte{}
	for i := range 10 {
		rel := fmt.Sprintf("other%d.txt", i)
		others[rel] = randomBytes(uint64(100+i), 700)
		a.write(rel, others[rel])
	}
	var failedOnce atomic.Bool
	fail := func(req protocol.ChunkRequest) error {
		switch req.Hash {
		case chunker.Sum(once):
			if failedOnce.CompareAndSwap(false, true) {
				return errors.New("injected failure")
			}
		case chunker.Sum(always):
			return errors.New("injected failure")
		}
		return nil
	}
	cut, conn := linkConns(t, ctx, a, b, fail, true)
	defer cut()
	eventually(t, "once.txt on b", hasContent(b, "once.txt", once))
	for rel, data := range others {
		eventually(t, rel+" on b", hasContent(b, rel, data))
	}
	if conn.batchd.Load() == 0 || conn.singles.Load() == 0 {
		t.Errorf("%d batches and %d single requests; want both, the failure asked for again alone", conn.batchd.Load(), conn.singles.Load())
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Lstat(filepath.Join(b.dir, "always.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("always.txt, whose chunk never arrived, is on disk: %v", err)
	}
	if b.engine.Counters.Retries.Load() == 0 {
		t.Error("the failing file was not queued again")
	}
}

// TestBatchedFetchUsesLocalCopies: in a group fetched with chunk batches,
// a small file whose chunk this node holds already is built from its own
// copy, the others fetched.
func TestBatchedFetchUsesLocalCopies(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	same := randomBytes(40, 900)
	b.write("mine.txt", same)
	a.write("copy.txt", same)
	others := map[string][]byte{}
	for i := range 8 {
		rel := fmt.Sprintf("other%d.txt", i)
		others[rel] = randomBytes(uint64(200+i), 600)
		a.write(rel, others[rel])
	}
	cut, conn := linkConns(t, ctx, a, b, nil, true)
	defer cut()
	eventually(t, "copy.txt on b", hasContent(b, "copy.txt", same))
	for rel, data := range others {
		eventually(t, rel+" on b", hasContent(b, rel, data))
	}
	if got := b.engine.Counters.ChunksLocal.Load(); got != 1 {
		t.Errorf("%d chunks copied locally, want copy.txt's", got)
	}
	if got := b.engine.Counters.ChunksFetched.Load(); got != int64(len(others)) {
		t.Errorf("%d chunks fetched, want %d", got, len(others))
	}
	if conn.batchd.Load() == 0 {
		t.Error("no chunk batches")
	}
}

// TestLargeFileBatchFallsBack: a large file's chunk that fails in its
// batch is asked for again on its own, and the file arrives whole.
func TestLargeFileBatchFallsBack(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	big := randomBytes(9, 300<<10)
	a.write("big.bin", big)
	rec, _, err := a.ix.Get("docroot", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	bad := rec.Manifest.Chunks[len(rec.Manifest.Chunks)/2].Hash
	var failedOnce atomic.Bool
	fail := func(req protocol.ChunkRequest) error {
		if req.Hash == bad && failedOnce.CompareAndSwap(false, true) {
			return errors.New("injected failure")
		}
		return nil
	}
	cut, conn := linkConns(t, ctx, a, b, fail, true)
	defer cut()
	eventually(t, "big.bin on b", hasContent(b, "big.bin", big))
	if conn.batchd.Load() == 0 || conn.singles.Load() != 1 {
		t.Errorf("%d batches and %d single requests; want batches and the failed chunk asked for again alone", conn.batchd.Load(), conn.singles.Load())
	}
}

func TestCutBatches(t *testing.T) {
	p1, p2, p3 := conflict.NodeID(1), conflict.NodeID(2), conflict.NodeID(3)
	step := func(length uint32, local bool, peers ...conflict.NodeID) Step {
		s := Step{Ref: chunker.Ref{Length: length}, Peers: peers}
		if local {
			s.Local = []Location{{Path: "x"}}
		}
		return s
	}
	batches := func(id conflict.NodeID) bool { return id != p2 }
	const k = 64 << 10
	for _, tc := range []struct {
		name  string
		steps []Step
		want  [][]int // the steps of each unit; a unit of one step not batched is {-i-1}
	}{
		{"none", nil, nil},
		{"one run", []Step{step(k, false, p1), step(k, false, p1), step(k, false, p1)}, [][]int{{0, 1, 2}}},
		{"local copy alone", []Step{step(k, false, p1), step(k, true, p1), step(k, false, p1)}, [][]int{{-2}, {0, 2}}},
		{"peer without batches alone", []Step{step(k, false, p2), step(k, false, p1)}, [][]int{{-1}, {1}}},
		{"no peer alone", []Step{step(k, false)}, [][]int{{-1}}},
		{"rotated peers", []Step{step(k, false, p1, p3), step(k, false, p3, p1), step(k, false, p1, p3)}, [][]int{{0, 2}, {1}}},
		{"bytes bound", []Step{step(largeBatchBytes/2, false, p1), step(largeBatchBytes/2, false, p1), step(1, false, p1)}, [][]int{{0, 1}, {2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]int
			for _, u := range cutBatches(tc.steps, batches) {
				if !u.batch {
					got = append(got, []int{-u.steps[0] - 1})
					continue
				}
				got = append(got, u.steps)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("units %v, want %v", got, tc.want)
			}
		})
	}
	// The chunk bound.
	many := make([]Step, largeBatchChunks+1)
	for i := range many {
		many[i] = step(1, false, p1)
	}
	units := cutBatches(many, batches)
	if len(units) != 2 || len(units[0].steps) != largeBatchChunks || units[0].maxLen != 1 || units[0].size != largeBatchChunks {
		t.Errorf("%d+1 chunks cut into %d units, the first of %d", largeBatchChunks, len(units), len(units[0].steps))
	}
}
