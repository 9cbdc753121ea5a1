package vfs

import (
	"sync"
	"sync/atomic"
	"time"
)

// A file linked into place by Commit (an unnamed file of CreateNew) comes
// back from the folder's watch as the creation of its name (the writes and
// the close before it are reported under "#<inode>", see IsUnnamed). When
// its writer has recorded it already, that tells nothing new, yet a
// watcher would stat the file, hold it until it settles, and have a
// scanner look at it again. Temp.OwnLink asks Commit to claim the link:
// note the name and inode before it. The watcher asks OwnCreated when a
// regular file appears and drops the event it claims. Any other event on
// the name (OwnOther) ends the claim, and a change made by anyone after
// the link is reported as usual. A claim matches only its own inode and
// expires after ownLinkTTL, so one whose event was never read (a watch
// overflow, no watcher at all) cannot swallow a later file's.
type ownLinks struct {
	n       atomic.Int64 // len(m), read without the lock
	mu      sync.Mutex
	m       map[string]ownLink
	expired time.Time // when the map was last swept for expired claims
}

type ownLink struct {
	ino   uint64
	noted time.Time
	// linked: Commit's link succeeded, so the name did not exist just
	// before it. The first creation event of the name read after that is
	// this link's, or one whose removal event follows it (the name had to
	// be free for the link): OwnLinked needs no inode to tell.
	linked bool
}

const (
	// maxOwnLinks bounds the claims held; past it, links are not claimed
	// and their events are reported as before.
	maxOwnLinks = 1 << 14
	// ownLinkTTL is how long a claim waits for its events.
	ownLinkTTL = 10 * time.Second
)

var ownNow = time.Now

func (o *ownLinks) note(rel string, ino uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[string]ownLink)
	}
	now := ownNow()
	if _, ok := o.m[rel]; !ok && len(o.m) >= maxOwnLinks {
		// Full: claims are not being taken (no watcher). Sweep at most
		// once per TTL, not at every link.
		if now.Sub(o.expired) < ownLinkTTL {
			return false
		}
		o.expired = now
		o.expire(now)
		if len(o.m) >= maxOwnLinks {
			return false
		}
	}
	o.m[rel] = ownLink{ino: ino, noted: now}
	o.n.Store(int64(len(o.m)))
	return true
}

// expire drops the claims past their time. o.mu is held.
func (o *ownLinks) expire(now time.Time) {
	for rel, l := range o.m {
		if now.Sub(l.noted) >= ownLinkTTL {
			delete(o.m, rel)
		}
	}
	o.n.Store(int64(len(o.m)))
}

// linked marks the claim on rel as linked (see ownLink).
func (o *ownLinks) linked(rel string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l, ok := o.m[rel]; ok {
		l.linked = true
		o.m[rel] = l
	}
}

func (o *ownLinks) drop(rel string) {
	if o.n.Load() == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, rel)
	o.n.Store(int64(len(o.m)))
}

// OwnCreated reports whether the regular file rel, which just appeared
// with inode number ino, was linked there by Temp.Commit with a claim
// (Temp.OwnLink): its creation event is then not worth reporting. The
// claim ends either way. Safe from any goroutine.
func (f *Folder) OwnCreated(rel string, ino uint64) bool {
	var matched bool
	f.own.take(rel, func(l ownLink) bool {
		matched = l.ino == ino && ownNow().Sub(l.noted) < ownLinkTTL
		return true
	})
	return matched
}

// take ends the claim on rel if end says so of it, reporting whether
// there was one that ended.
func (o *ownLinks) take(rel string, end func(ownLink) bool) bool {
	if o.n.Load() == 0 {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	l, ok := o.m[rel]
	if !ok || !end(l) {
		return false
	}
	delete(o.m, rel)
	o.n.Store(int64(len(o.m)))
	return true
}

// OwnLinked reports whether the creation of rel, a name the kernel says is
// not a directory, is the event of a link Temp.Commit claimed and made, so
// that it is not worth reporting, and ends the claim if so. Unlike
// OwnCreated it needs no lstat of rel: it answers only for a claim whose
// link succeeded (see ownLink), and false otherwise, leaving the claim to
// OwnCreated. Safe from any goroutine.
func (f *Folder) OwnLinked(rel string) bool {
	return f.own.take(rel, func(l ownLink) bool {
		return l.linked && ownNow().Sub(l.noted) < ownLinkTTL
	})
}

// OwnOther ends any claim on rel: something else happened to it.
func (f *Folder) OwnOther(rel string) { f.own.drop(rel) }

// OwnReset ends every claim: the watcher lost events (an overflow) and
// rescans.
func (f *Folder) OwnReset() {
	o := &f.own
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.m)
	o.n.Store(0)
}

// OwnLink asks Commit to claim the link of this unnamed file (see
// ownLinks), for a writer that records the file itself once it is
// committed. It does nothing for a file with a temp name, whose rename
// the watcher reports as it is.
func (t *Temp) OwnLink() { t.own = t.unnamed }
