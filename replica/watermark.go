package replica

import "container/heap"

// watermark tracks the index entries received from one peer for one folder
// that are still being worked on. Its Mark is the sequence up to which every
// entry is finished: only that far may the cursor be persisted (a restart
// resumes after it) and confirmed to the peer (which counts it as held). An
// entry that takes long — a large file, a peer that is gone — holds the mark
// back without stopping the entries behind it.
//
// A watermark is owned by one goroutine; it is not safe for concurrent use.
type watermark struct {
	received uint64  // highest sequence announced so far
	open     seqHeap // sequences started and not yet finished (lazy deletion)
	count    map[uint64]int
}

func newWatermark(start uint64) *watermark {
	return &watermark{received: start, count: map[uint64]int{}}
}

// Received notes that every entry up to seq has been announced and either
// started or found to need nothing.
func (w *watermark) Received(seq uint64) {
	w.received = max(w.received, seq)
}

// Start notes an entry with sequence seq that is now being worked on. The
// same sequence may be started more than once; each Start needs a Finish.
func (w *watermark) Start(seq uint64) {
	if w.count[seq] == 0 {
		heap.Push(&w.open, seq)
	}
	w.count[seq]++
	w.received = max(w.received, seq)
}

// Finish notes that one entry started with seq is done.
func (w *watermark) Finish(seq uint64) {
	n := w.count[seq]
	if n == 0 {
		return
	}
	if n == 1 {
		delete(w.count, seq)
	} else {
		w.count[seq] = n - 1
	}
}

// Open reports how many entries are still being worked on.
func (w *watermark) Open() int { return len(w.count) }

// Mark returns the highest sequence S such that every entry up to S is
// finished.
func (w *watermark) Mark() uint64 {
	for w.open.Len() > 0 {
		low := w.open[0]
		if w.count[low] > 0 {
			return low - 1
		}
		heap.Pop(&w.open)
	}
	return w.received
}

type seqHeap []uint64

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *seqHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
