package replica

import (
	"context"
	"sort"
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
	// waits are the announcements this item completes: each holds back
	// its peer's watermark until the item is done.
	waits     []wait
	attempts  int
	notBefore time.Time
	lastErr   error
}

type wait struct {
	peer conflict.NodeID
	seq  uint64
}

// queue holds the items waiting for the puller. It is guarded by
// Folder.mu, except for the tokens, which bound its size.
type queue struct {
	items  map[string]*item
	tokens chan struct{}
	wake   *signal
}

func newQueue() *queue {
	return &queue{items: map[string]*item{}, tokens: make(chan struct{}, maxQueue), wake: newSignal()}
}

// len returns the number of queued items; Folder.mu must be held.
func (q *queue) len() int { return len(q.items) }

// add queues fi, announced by peer from, or merges it into the item queued
// for the same path. It blocks while the queue is full.
func (q *queue) add(ctx context.Context, f *Folder, from conflict.NodeID, fi *protocol.FileInfo) error {
	select {
	case q.tokens <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	w := wait{peer: from, seq: fi.Sequence}
	if p := f.peers[from]; p != nil {
		p.wm.Start(fi.Sequence)
	}
	it, ok := q.items[fi.Path]
	if ok {
		<-q.tokens // merged: the existing item holds the slot
		it.waits = append(it.waits, w)
		switch conflict.Resolve(infoVersion(&it.info), infoVersion(fi)) {
		case conflict.Take, conflict.TakeConflict:
			it.info = *fi
			it.sources = []conflict.NodeID{from}
			it.attempts, it.notBefore = 0, time.Time{}
		default:
			if it.info.Version.Compare(fi.Version) == conflict.Equal && !containsNode(it.sources, from) {
				it.sources = append(it.sources, from)
			}
		}
	} else {
		q.items[fi.Path] = &item{info: *fi, sources: []conflict.NodeID{from}, waits: []wait{w}}
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
	q.items[it.info.Path] = it
}

// take removes and returns up to n items that are due, ordered for
// applying: directories before their contents, deletions deepest first
// after everything else. It also returns when the next item not yet due
// is. Folder.mu must be held.
func (q *queue) take(now time.Time, n int) ([]*item, time.Time) {
	var due []*item
	var next time.Time
	for _, it := range q.items {
		if it.notBefore.After(now) {
			if next.IsZero() || it.notBefore.Before(next) {
				next = it.notBefore
			}
			continue
		}
		due = append(due, it)
	}
	sort.Slice(due, func(i, j int) bool { return applyOrder(&due[i].info, &due[j].info) })
	if len(due) > n {
		due = due[:n]
	}
	for _, it := range due {
		delete(q.items, it.info.Path)
	}
	return due, next
}

// clear drops every queued item (a resync starts the peers' streams
// over). Folder.mu must be held.
func (q *queue) clear() {
	for path := range q.items {
		delete(q.items, path)
		<-q.tokens
	}
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
