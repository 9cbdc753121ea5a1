package watcher

import (
	"container/heap"
	"strings"
	"time"
)

// kind says what an event tells about a path's content, which decides how
// long the path must stay quiet before it is reported.
type kind uint8

const (
	// written: data was written (inotify IN_MODIFY). More writes may follow,
	// so the path waits the full settle time after the last one.
	written kind = iota
	// touched: the path appeared (created or renamed into place), or had
	// its attributes changed. None of these leaves a file half written by
	// itself, so the path waits only the prompt time; a write that follows
	// pushes it back to the full settle time.
	touched
	// opened: a file was created or written by a writer whose close will
	// be seen (the source reports IN_CLOSE_WRITE). Like written, and the
	// path is held, up to the hold time, until that close arrives.
	opened
	// finished: the writer is done with the file: it was closed after
	// writing (IN_CLOSE_WRITE). The path is reported after the prompt
	// time, whatever writes came before, and tagged complete.
	finished
	// placed: a regular file was renamed into place (IN_MOVED_TO), as
	// atomic writers, uploads and rsync do: it was finished elsewhere.
	// Like finished, but reported after only placedQuiet: what follows such
	// a rename in the same process (PHP's chmod after move_uploaded_file)
	// comes within microseconds. (The loop also holds it until a timestamp
	// tick past its ctime, placedWait, so that Writing can tell its events
	// were read when the scanner asks.)
	placed
	// gone: the path was removed or renamed away. Prompt, and whatever was
	// known of a writer no longer applies.
	gone
)

// placedQuiet is how long a file renamed into place must stay quiet before
// it is reported (at most the prompt time).
const placedQuiet = time.Millisecond

// pathState is what the settler knows of one pending path.
type pathState struct {
	quiet    time.Time // the path has been quiet long enough for its last event's kind
	open     bool      // a writer has it open: created or written, not closed since
	openedAt time.Time // when open last became true
	complete bool      // the last content event was a finished or placed
	placed   bool      // complete by a rename into place: attribute changes wait only placedQuiet
}

// next is the pure transition of a path's state on an event of kind k at
// now.
func (st pathState) next(k kind, now time.Time, settle, prompt time.Duration) pathState {
	later := func(d time.Duration) time.Time {
		if t := now.Add(d); t.After(st.quiet) {
			return t
		}
		return st.quiet
	}
	switch k {
	case written:
		st.quiet, st.complete, st.placed = later(settle), false, false
	case opened:
		st.quiet, st.complete, st.placed = later(settle), false, false
		if !st.open {
			st.open, st.openedAt = true, now
		}
	case finished, placed:
		// Earlier writes no longer matter: their writer is done.
		d := prompt
		if k == placed {
			d = min(prompt, placedQuiet)
		}
		st.quiet, st.open, st.complete, st.placed = now.Add(d), false, true, k == placed
	case gone:
		st.quiet, st.open, st.complete, st.placed = later(prompt), false, false, false
	default: // touched
		if st.placed {
			st.quiet = later(min(prompt, placedQuiet))
		} else {
			st.quiet = later(prompt)
		}
	}
	return st
}

// due is when a path in state st may be reported: once quiet, but while a
// writer has it open, not before that writer has had hold to close it.
func (st pathState) due(hold time.Duration) time.Time {
	if st.open {
		if h := st.openedAt.Add(hold); h.After(st.quiet) {
			return h
		}
	}
	return st.quiet
}

// entry is one path waiting to settle (index >= 0, in the heap) or settled
// and waiting to be taken (index == -1, referenced from the ready queue).
type entry struct {
	path     string
	st       pathState
	deadline time.Time // st.due: when it may be taken
	since    time.Time // first event; bounds how long a directory absorbs its children's
	seq      uint64    // insertion order: ties on deadline leave in arrival order
	index    int
	gen      uint64 // bumped on every state change; stale ready references skip
}

type readyRef struct {
	e   *entry
	gen uint64
}

// settler is the decision core of the watcher: which paths are quiet enough
// to report, and when the whole folder must be rescanned instead. It does
// no I/O and reads no clock: every method takes now. One goroutine owns it.
//
// Invariants:
//   - a path is in entries at most once; a path whose ancestor directory is
//     pending is not added (the ancestor's report makes the scanner walk it),
//     the ancestor's deadline moves instead — but only while the ancestor
//     has been pending for less than maxWait, so that a busy new directory
//     is still reported, and its later changes path by path;
//   - a path is taken only once now >= its deadline; its deadline is the
//     latest of (event time + delay of that event's kind) over its events
//     since the last finished one (a rename into place, a close after
//     writing), which alone resets it; and while a writer has the path
//     open, not before the hold time since it was opened;
//   - len(entries) <= max; one more distinct path drops every entry and asks
//     for a rescan, so memory stays bounded whatever the event rate;
//   - while a rescan is wanted, per-path events are not recorded: the rescan
//     that is still to be emitted covers them.
type settler struct {
	settle  time.Duration
	prompt  time.Duration
	maxWait time.Duration // longest a rescan, or a directory, waits for its subtree to go quiet
	hold    time.Duration // longest a path is held while a writer has it open
	max     int

	writers *writers // files open for writing; kept across rescans

	entries map[string]*entry
	waiting entryHeap
	ready   []readyRef // FIFO from head; references whose gen moved on are skipped
	head    int
	live    int // entries in the ready queue that are still ready
	seq     uint64

	rescan struct {
		wanted   bool
		due      bool
		reason   Reason
		since    time.Time
		deadline time.Time
	}
}

func newSettler(settle, prompt time.Duration, maxPending int) *settler {
	return &settler{
		settle:  settle,
		prompt:  prompt,
		maxWait: max(time.Second, 20*settle),
		hold:    holdTime(settle),
		max:     maxPending,
		writers: newWriters(holdTime(settle)),
		entries: make(map[string]*entry),
	}
}

// setDelays changes the settle and prompt times; paths already waiting
// keep the deadlines they have.
func (s *settler) setDelays(settle, prompt time.Duration) {
	s.settle, s.prompt = settle, min(prompt, settle)
	s.maxWait = max(time.Second, 20*settle)
	s.hold = holdTime(settle)
	s.writers.setHold(s.hold)
}

// holdTime is the longest a file that a writer keeps open is held back:
// long enough for a writer stalled between creating and filling a file
// under load, short enough that a file held open for appending (a log) is
// still reported now and then.
func holdTime(settle time.Duration) time.Duration {
	return max(2*time.Second, 40*settle)
}

func (s *settler) delay(k kind) time.Duration {
	switch k {
	case written, opened:
		return s.settle
	case placed:
		return min(s.prompt, placedQuiet)
	}
	return s.prompt
}

// Add records an event of kind k for path at now. It reports false when the
// event made the pending set overflow into a rescan.
func (s *settler) Add(path string, k kind, now time.Time) bool {
	s.writers.note(path, k, now)
	if s.rescan.wanted {
		s.extendRescan(now)
		return true
	}
	if e := s.find(path); e != nil {
		if e.path == path {
			e.st = e.st.next(k, now, s.settle, s.prompt)
			s.reschedule(e)
			return true
		}
		if now.Sub(e.since) < s.maxWait {
			// Below a pending directory: its report covers path. (A
			// child a writer still has open is skipped by that scan, as
			// Writing says, and reported again once closed.)
			if q := now.Add(s.delay(k)); q.After(e.st.quiet) {
				e.st.quiet = q
			}
			s.reschedule(e)
			return true
		}
	}
	if len(s.entries) >= s.max {
		s.Rescan(ReasonPendingLimit, now)
		return false
	}
	s.seq++
	e := &entry{path: path, st: pathState{}.next(k, now, s.settle, s.prompt), since: now, seq: s.seq}
	e.deadline = s.dueOf(e)
	s.entries[path] = e
	heap.Push(&s.waiting, e)
	return true
}

// dueOf is when e may be reported.
func (s *settler) dueOf(e *entry) time.Time { return e.st.due(s.hold) }

// find returns the entry for path or for its nearest pending ancestor.
func (s *settler) find(path string) *entry {
	for p := path; ; {
		if e, ok := s.entries[p]; ok {
			return e
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return nil
		}
		p = p[:i]
	}
}

// reschedule moves e's deadline to what its state says now. A settled
// entry that sees a new event is no longer quiet: it goes back to waiting.
func (s *settler) reschedule(e *entry) {
	d := s.dueOf(e)
	if e.index < 0 {
		e.gen++
		s.live--
		e.deadline = d
		heap.Push(&s.waiting, e)
		return
	}
	if !d.Equal(e.deadline) {
		e.deadline = d
		heap.Fix(&s.waiting, e.index)
	}
}

// NotBefore keeps a pending path from being reported before t (its quiet
// time moves, as if an event had asked for that delay). A path not pending
// on its own is left alone.
func (s *settler) NotBefore(path string, t time.Time) {
	e := s.entries[path]
	if e == nil || !t.After(e.st.quiet) {
		return
	}
	e.st.quiet = t
	s.reschedule(e)
}

// Rescan asks for the whole folder to be scanned. Every pending path is
// dropped: the rescan covers it. The rescan itself settles like a path —
// it is due once the folder has been quiet for the settle time — but waits
// at most maxWait, so a folder that never goes quiet is still rescanned.
func (s *settler) Rescan(reason Reason, now time.Time) {
	if s.rescan.wanted {
		s.extendRescan(now)
		return
	}
	s.rescan.wanted = true
	s.rescan.due = false
	s.rescan.reason = reason
	s.rescan.since = now
	s.rescan.deadline = now.Add(s.settle)
	// Fresh containers: a map keeps its buckets after clear, and the point
	// of giving up on per-path state is to give its memory back.
	s.entries = make(map[string]*entry)
	s.waiting = nil
	s.ready, s.head, s.live = nil, 0, 0
}

func (s *settler) extendRescan(now time.Time) {
	if s.rescan.due {
		return
	}
	d := now.Add(s.settle)
	if limit := s.rescan.since.Add(s.maxWait); d.After(limit) {
		d = limit
	}
	if d.After(s.rescan.deadline) {
		s.rescan.deadline = d
	}
}

// RescanWanted reports whether a rescan is pending, and why.
func (s *settler) RescanWanted() (Reason, bool) {
	return s.rescan.reason, s.rescan.wanted
}

// RescanDue reports whether a rescan has settled and is next to be taken.
func (s *settler) RescanDue() bool { return s.rescan.due }

// Advance moves every path whose deadline has passed to the ready queue.
// A file open for writing for the hold time is reported as it is.
func (s *settler) Advance(now time.Time) {
	for _, p := range s.writers.expire(now) {
		if e, ok := s.entries[p]; ok {
			if e.st.open {
				e.st.open = false
				s.reschedule(e)
			}
			continue
		}
		s.Add(p, touched, now)
	}
	for len(s.waiting) > 0 && !s.waiting[0].deadline.After(now) {
		e := heap.Pop(&s.waiting).(*entry)
		e.gen++
		s.ready = append(s.ready, readyRef{e: e, gen: e.gen})
		s.live++
	}
	if s.rescan.wanted && !s.rescan.due && !s.rescan.deadline.After(now) {
		s.rescan.due = true
	}
}

// Next returns when Advance next has something to do; the zero time when
// nothing is waiting. Settled paths already in the ready queue do not count.
func (s *settler) Next() time.Time {
	var next time.Time
	if len(s.waiting) > 0 {
		next = s.waiting[0].deadline
	}
	if s.rescan.wanted && !s.rescan.due && (next.IsZero() || s.rescan.deadline.Before(next)) {
		next = s.rescan.deadline
	}
	if w := s.writers.Next(); !w.IsZero() && (next.IsZero() || w.Before(next)) {
		next = w
	}
	return next
}

// Take removes and returns the next batch: a due rescan first, otherwise
// up to maxPaths settled paths in the order they settled. It reports false when
// nothing is ready. The returned slice belongs to the caller.
func (s *settler) Take(maxPaths int) (Batch, bool) {
	if s.rescan.due {
		b := Batch{Rescan: true, Reason: s.rescan.reason}
		s.rescan.wanted, s.rescan.due = false, false
		return b, true
	}
	if s.live == 0 {
		s.ready, s.head = s.ready[:0], 0
		return Batch{}, false
	}
	n := min(maxPaths, s.live)
	paths := make([]string, 0, n)
	var complete []bool
	for s.head < len(s.ready) && len(paths) < n {
		r := s.ready[s.head]
		s.ready[s.head] = readyRef{}
		s.head++
		if r.gen != r.e.gen {
			continue
		}
		if r.e.st.complete && complete == nil {
			complete = make([]bool, len(paths), n)
		}
		if complete != nil {
			complete = append(complete, r.e.st.complete)
		}
		paths = append(paths, r.e.path)
		delete(s.entries, r.e.path)
		r.e.gen++
		s.live--
	}
	if s.head > len(s.ready)/2 {
		rest := copy(s.ready, s.ready[s.head:])
		clear(s.ready[rest:])
		s.ready, s.head = s.ready[:rest], 0
	}
	return Batch{Paths: paths, Complete: complete}, true
}

// Pending returns how many paths are waiting or settled but not yet taken.
func (s *settler) Pending() int { return len(s.entries) }

// entryHeap orders waiting entries by deadline, then arrival.
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	if h[i].deadline.Equal(h[j].deadline) {
		return h[i].seq < h[j].seq
	}
	return h[i].deadline.Before(h[j].deadline)
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
