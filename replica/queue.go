package replica

import (
	"container/heap"
	"context"
	"strings"
	"time"

	"lockstep/conflict"
	"lockstep/protocol"
)

// maxQueue bounds the pull queue: beyond it, HandleIndex blocks and the
// peer's stream waits, so a peer announcing a million files costs bounded
// memory.
const maxQueue = 20000

// item is one path to bring up to a peer's version.
type item struct {
	info protocol.FileInfo
	// sources are the peers that announced exactly info's version.
	sources []conflict.NodeID
	// holders are those of sources whose announcement was of their
	// current index, with its epoch: once applied, the version is not
	// announced back to them (echo.go).
	holders []peerEpoch
	// waits are the announcements this item completes: each holds back
	// its peer's watermark until the item is done.
	waits     []wait
	attempts  int
	notBefore time.Time
	lastErr   error
	// pos is the item's place in the heap that holds it (queue.due when
	// it is due, else queue.later); -1 while it is in neither.
	pos int
}

type wait struct {
	peer conflict.NodeID
	seq  uint64
}

// queue holds the items waiting for the puller. It is guarded by
// Folder.mu, except for the tokens, which bound its size.
//
// Every queued item is in items and in one of two heaps: due, ordered for
// applying (applyOrder), holds the items that may be taken; later, ordered
// by notBefore, those waiting out a backoff (or that did when queued). take moves the items whose
// time has come from later to due and pops the batch off due, so a take
// costs in proportion to the batch, not to the whole queue.
type queue struct {
	items  map[string]*item
	due    itemHeap
	later  itemHeap
	tokens chan struct{}
	wake   *signal
}

func newQueue() *queue {
	q := &queue{items: map[string]*item{}, tokens: make(chan struct{}, maxQueue), wake: newSignal()}
	q.due.less = func(a, b *item) bool { return applyOrder(&a.info, &b.info) }
	q.later.less = func(a, b *item) bool { return a.notBefore.Before(b.notBefore) }
	return q
}

// itemHeap is a container/heap of items that keeps each item's pos.
type itemHeap struct {
	items []*item
	less  func(a, b *item) bool
}

func (h *itemHeap) Len() int           { return len(h.items) }
func (h *itemHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *itemHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].pos, h.items[j].pos = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.pos = len(h.items)
	h.items = append(h.items, it)
}
func (h *itemHeap) Pop() any {
	n := len(h.items) - 1
	it := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	it.pos = -1
	return it
}

// put adds it to items and to the heap it belongs in.
func (q *queue) put(it *item) {
	q.items[it.info.Path] = it
	if it.notBefore.IsZero() {
		heap.Push(&q.due, it)
	} else {
		heap.Push(&q.later, it)
	}
}

// unheap removes it from whichever heap holds it.
func (q *queue) unheap(it *item) {
	if it.pos < 0 {
		return
	}
	if it.pos < len(q.due.items) && q.due.items[it.pos] == it {
		heap.Remove(&q.due, it.pos)
	} else if it.pos < len(q.later.items) && q.later.items[it.pos] == it {
		heap.Remove(&q.later, it.pos)
	}
	it.pos = -1
}

// len returns the number of queued items; Folder.mu must be held.
func (q *queue) len() int { return len(q.items) }

// add queues fi, announced by peer from, or merges it into the item queued
// for the same path. It blocks while the queue is full.
func (q *queue) add(ctx context.Context, f *Folder, from conflict.NodeID, epoch uint64, fi *protocol.FileInfo) error {
	select {
	case q.tokens <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	w := wait{peer: from, seq: fi.Sequence}
	var holder []peerEpoch
	if p := f.peers[from]; p != nil {
		p.wm.Start(fi.Sequence)
		if p.progress.PeerEpoch == epoch {
			holder = []peerEpoch{{from, epoch}}
		}
	}
	it, ok := q.items[fi.Path]
	if ok {
		<-q.tokens // merged: the existing item holds the slot
		it.waits = append(it.waits, w)
		switch conflict.Resolve(infoVersion(&it.info), infoVersion(fi)) {
		case conflict.Take, conflict.TakeConflict:
			// Its place in the heaps changes: deleted or not, due now.
			q.unheap(it)
			it.info = *fi
			it.sources = []conflict.NodeID{from}
			it.holders = holder
			it.attempts, it.notBefore = 0, time.Time{}
			q.put(it)
		default:
			if it.info.Version.Compare(fi.Version) == conflict.Equal && !containsNode(it.sources, from) {
				it.sources = append(it.sources, from)
				it.holders = append(it.holders, holder...)
			}
		}
	} else {
		q.put(&item{info: *fi, sources: []conflict.NodeID{from}, holders: holder, waits: []wait{w}, pos: -1})
	}
	f.mu.Unlock()
	q.wake.Notify()
	return nil
}

// requeue puts back an item that failed, to be retried after a backoff, or
// merges it into a newer item for the same path. Folder.mu must be held.
func (q *queue) requeue(it *item, now time.Time) {
	it.attempts++
	// 200 ms, 400 ms … 25.6 s: the first retries are quick, because the
	// usual cause is a connection replaced by its duplicate at startup.
	delay := time.Duration(1<<min(it.attempts, 8)) * 100 * time.Millisecond
	it.notBefore = now.Add(delay)
	if newer, ok := q.items[it.info.Path]; ok {
		newer.waits = append(newer.waits, it.waits...)
		<-q.tokens
		return
	}
	q.put(it)
}

// take removes and returns up to n items that are due, ordered for
// applying: directories before their contents, deletions deepest first
// after everything else. Items whose path is busy (still being applied in
// another version; busy may be nil) stay queued. It also returns when the
// next item not yet due is. Folder.mu must be held.
func (q *queue) take(now time.Time, n int, busy func(path string) bool) ([]*item, time.Time) {
	for q.later.Len() > 0 && !q.later.items[0].notBefore.After(now) {
		heap.Push(&q.due, heap.Pop(&q.later))
	}
	var due, held []*item
	for len(due) < n && q.due.Len() > 0 {
		it := heap.Pop(&q.due).(*item)
		if busy != nil && busy(it.info.Path) {
			held = append(held, it)
			continue
		}
		delete(q.items, it.info.Path)
		due = append(due, it)
	}
	for _, it := range held {
		heap.Push(&q.due, it)
	}
	var next time.Time
	if q.later.Len() > 0 {
		next = q.later.items[0].notBefore
	}
	return due, next
}

// clear drops every queued item (a resync starts the peers' streams
// over). Folder.mu must be held.
func (q *queue) clear() {
	for path, it := range q.items {
		delete(q.items, path)
		it.pos = -1
		<-q.tokens
	}
	q.due.items, q.later.items = nil, nil
}

// release frees the queue slots of finished items.
func (q *queue) release(n int) {
	for range n {
		<-q.tokens
	}
}

// applyOrder sorts creations before deletions; creations shallow first
// (a directory before what it holds), deletions deep first (contents
// before their directory).
func applyOrder(a, b *protocol.FileInfo) bool {
	if a.Deleted != b.Deleted {
		return !a.Deleted
	}
	da, db := strings.Count(a.Path, "/"), strings.Count(b.Path, "/")
	if da != db {
		if a.Deleted {
			return da > db
		}
		return da < db
	}
	return a.Path < b.Path
}

func containsNode(ids []conflict.NodeID, id conflict.NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
