package watcher

import (
	"sync"
	"time"
)

// maxWriters bounds the files tracked as open for writing. Past it, more
// are not tracked: they are reported and scanned as where closes are not
// seen at all.
const maxWriters = 4096

// writers is the set of files that a writer has open, as far as the event
// source tells: created or written, and neither closed, removed nor
// renamed away since — for at most the hold time, after which a file is
// reported as it is. The scanner leaves these files alone (Watcher.Writing)
// so that a writer that stalls between creating and filling a file does
// not get the empty file recorded; the close reports it again.
//
// Run's goroutine updates it (through the settler); Watcher.Writing reads
// it from any goroutine, hence the lock.
type writers struct {
	hold time.Duration

	mu   sync.Mutex
	open map[string]time.Time // path → when it was opened
	next time.Time            // no file expires before; zero when none is open
}

// setHold changes the hold time (a reloaded settle time).
func (w *writers) setHold(hold time.Duration) {
	w.mu.Lock()
	w.hold = hold
	w.mu.Unlock()
}

func newWriters(hold time.Duration) *writers {
	return &writers{hold: hold, open: map[string]time.Time{}}
}

// note applies an event of kind k on path at now: opened adds the path
// (keeping its first opening), finished and gone remove it.
func (w *writers) note(path string, k kind, now time.Time) {
	if k != opened && k != finished && k != placed && k != gone {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if k != opened {
		delete(w.open, path)
		return
	}
	if _, ok := w.open[path]; ok || len(w.open) >= maxWriters {
		return
	}
	w.open[path] = now
	if exp := now.Add(w.hold); w.next.IsZero() || exp.Before(w.next) {
		w.next = exp
	}
}

// has reports whether path is open for writing.
func (w *writers) has(path string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.open[path]
	return ok
}

// Next returns when expire next has something to do; zero for never.
func (w *writers) Next() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// expire drops the files opened at least the hold time before now and
// returns them, sorted by nothing: they are to be reported as they are.
func (w *writers) expire(now time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next.IsZero() || w.next.After(now) {
		return nil
	}
	var out []string
	w.next = time.Time{}
	for p, at := range w.open {
		exp := at.Add(w.hold)
		if !exp.After(now) {
			out = append(out, p)
			delete(w.open, p)
		} else if w.next.IsZero() || exp.Before(w.next) {
			w.next = exp
		}
	}
	return out
}

// clear forgets every file: nothing is known of writers any more.
func (w *writers) clear() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.open = map[string]time.Time{}
	w.next = time.Time{}
}
