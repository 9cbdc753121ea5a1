package watcher

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// step is one input to a settler in a table test: an event, or a look at
// what is due at a time.
type step struct {
	at   int    // ms after t0
	add  string // path of an event; empty for a look
	kind kind
	want []string // for a look: the paths taken then, in order (nil: none)
	// complete: for a look, the paths taken then that are tagged complete
	complete []string
}

func TestSettlerTable(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"write waits the settle time", []step{
			{at: 0, add: "f", kind: written},
			{at: 49},
			{at: 50, want: []string{"f"}},
		}},
		{"repeated writes coalesce; quiet counts from the last", []step{
			{at: 0, add: "f", kind: written},
			{at: 10, add: "f", kind: written},
			{at: 20, add: "f", kind: written},
			{at: 60},
			{at: 69},
			{at: 70, want: []string{"f"}},
			{at: 200},
		}},
		{"a rename into place is prompt", []step{
			{at: 0, add: "f", kind: touched},
			{at: 9},
			{at: 10, want: []string{"f"}},
		}},
		{"a write after the create puts it back on the settle clock", []step{
			{at: 0, add: "f", kind: touched},
			{at: 5, add: "f", kind: written},
			{at: 10},
			{at: 54},
			{at: 55, want: []string{"f"}},
		}},
		{"a create after a write does not shorten the wait", []step{
			{at: 0, add: "f", kind: written},
			{at: 5, add: "f", kind: touched},
			{at: 15},
			{at: 50, want: []string{"f"}},
		}},
		{"two paths settle independently, in deadline order", []step{
			{at: 0, add: "slow", kind: written},
			{at: 20, add: "fast", kind: touched},
			{at: 30, want: []string{"fast"}},
			{at: 40, add: "slow2", kind: written},
			{at: 50, want: []string{"slow"}},
			{at: 90, want: []string{"slow2"}},
		}},
		{"events below a pending directory move its deadline instead", []step{
			{at: 0, add: "a", kind: touched},
			{at: 5, add: "a/b/c/f", kind: written},
			{at: 8, add: "a/b", kind: touched},
			{at: 54},
			{at: 55, want: []string{"a"}},
			{at: 60, add: "a/b/c/f", kind: written},
			{at: 110, want: []string{"a/b/c/f"}},
		}},
		{"a sibling with a common name prefix is not a child", []step{
			{at: 0, add: "a", kind: touched},
			{at: 1, add: "ab/f", kind: touched},
			{at: 11, want: []string{"a", "ab/f"}},
		}},
		{"a rename into place is complete", []step{
			{at: 0, add: "f", kind: finished},
			{at: 9},
			{at: 10, want: []string{"f"}, complete: []string{"f"}},
		}},
		{"a close after writes is prompt and complete, whatever the writes' settle time", []step{
			{at: 0, add: "f", kind: opened},
			{at: 20, add: "f", kind: opened},
			{at: 25, add: "f", kind: finished},
			{at: 34},
			{at: 35, want: []string{"f"}, complete: []string{"f"}},
			{at: 100},
		}},
		{"a file open for writing is held until it is closed", []step{
			{at: 0, add: "f", kind: opened},
			{at: 50},
			{at: 1500},
			{at: 1700, add: "f", kind: finished},
			{at: 1710, want: []string{"f"}, complete: []string{"f"}},
		}},
		{"a file open for writing is held at most the hold time, then reported as it is", []step{
			{at: 0, add: "f", kind: opened},
			{at: 1000, add: "f", kind: opened},
			{at: 1999},
			{at: 2000, want: []string{"f"}},
		}},
		{"a write after the close: held again, not complete", []step{
			{at: 0, add: "f", kind: opened},
			{at: 5, add: "f", kind: finished},
			{at: 8, add: "f", kind: opened},
			{at: 15},
			{at: 60},
			{at: 70, add: "f", kind: finished},
			{at: 75, add: "f", kind: written},
			{at: 125, want: []string{"f"}},
		}},
		{"an attribute change keeps complete", []step{
			{at: 0, add: "f", kind: finished},
			{at: 5, add: "f", kind: touched},
			{at: 15, want: []string{"f"}, complete: []string{"f"}},
		}},
		{"removal ends the hold and is not complete", []step{
			{at: 0, add: "f", kind: opened},
			{at: 5, add: "f", kind: gone},
			{at: 14},
			{at: 50, want: []string{"f"}},
		}},
		{"only the complete paths of a batch are tagged", []step{
			{at: 0, add: "a", kind: touched},
			{at: 0, add: "b", kind: finished},
			{at: 0, add: "c", kind: touched},
			{at: 1, add: "d", kind: touched},
			{at: 2, add: "d/f", kind: finished},
			{at: 12, want: []string{"a", "b", "c", "d"}, complete: []string{"b"}},
		}},
		{"same deadline leaves in arrival order", []step{
			{at: 0, add: "z", kind: touched},
			{at: 0, add: "a", kind: touched},
			{at: 0, add: "m", kind: touched},
			{at: 10, want: []string{"z", "a", "m"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
			for i, st := range tt.steps {
				now := ms(st.at)
				if st.add != "" {
					if !s.Add(st.add, st.kind, now) {
						t.Fatalf("step %d: Add(%q) overflowed", i, st.add)
					}
					continue
				}
				s.Advance(now)
				var got, complete []string
				for {
					b, ok := s.Take(1000)
					if !ok {
						break
					}
					if b.Rescan {
						t.Fatalf("step %d: unexpected rescan %q", i, b.Reason)
					}
					if b.Complete != nil && len(b.Complete) != len(b.Paths) {
						t.Fatalf("step %d: %d complete tags for %d paths", i, len(b.Complete), len(b.Paths))
					}
					for j, p := range b.Paths {
						if b.Complete != nil && b.Complete[j] {
							complete = append(complete, p)
						}
					}
					got = append(got, b.Paths...)
				}
				if !slices.Equal(got, st.want) {
					t.Fatalf("step %d at %dms: took %q, want %q", i, st.at, got, st.want)
				}
				if !slices.Equal(complete, st.complete) {
					t.Fatalf("step %d at %dms: complete %q, want %q", i, st.at, complete, st.complete)
				}
			}
			if n := s.Pending(); n != 0 {
				// Every table ends with all paths taken.
				t.Fatalf("%d paths still pending at the end", n)
			}
		})
	}
}

func TestSettlerBusyDirectoryIsNotStarved(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	s.Add("uploads", touched, ms(0)) // a new directory
	// A file lands in it every 30ms for 3s, each written for a while: the
	// directory is never quiet for 50ms.
	var got []string
	dirAt := -1
	for at := 5; at < 3000; at += 30 {
		s.Advance(ms(at))
		for {
			b, ok := s.Take(100)
			if !ok {
				break
			}
			for _, p := range b.Paths {
				if p == "uploads" {
					dirAt = at
				}
			}
			got = append(got, b.Paths...)
		}
		s.Add(fmt.Sprintf("uploads/%d.jpg", at), written, ms(at))
	}
	if dirAt < 0 || dirAt > 1100 {
		t.Fatalf("directory reported at %dms, want by about 1s (the cap on absorbing children)", dirAt)
	}
	// Files from after the cap are reported by their own names.
	if n := len(got); n < 50 {
		t.Fatalf("only %d reports in 3s, want the files after the first second one by one", n)
	}
}

func TestSettlerNext(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	if !s.Next().IsZero() {
		t.Fatalf("empty settler: Next = %v, want zero", s.Next())
	}
	s.Add("a", written, ms(0))
	s.Add("b", touched, ms(5))
	if got := s.Next(); !got.Equal(ms(15)) {
		t.Fatalf("Next = %v, want b's deadline %v", got, ms(15))
	}
	s.Advance(ms(15))
	if got := s.Next(); !got.Equal(ms(50)) {
		t.Fatalf("after b settled: Next = %v, want %v (a ready path does not count)", got, ms(50))
	}
}

func TestSettlerSettledPathSeesNewEvent(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	s.Add("f", touched, ms(0))
	s.Advance(ms(10)) // settled, not yet taken: the consumer is slow
	s.Add("f", written, ms(12))
	s.Advance(ms(20))
	if b, ok := s.Take(10); ok {
		t.Fatalf("took %v while f was being written again", b)
	}
	s.Advance(ms(62))
	b, ok := s.Take(10)
	if !ok || !slices.Equal(b.Paths, []string{"f"}) {
		t.Fatalf("Take = %v %v, want [f] once", b, ok)
	}
	if b, ok := s.Take(10); ok {
		t.Fatalf("second Take = %v, want nothing (stale queue reference)", b)
	}
}

func TestSettlerBatchLimit(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	for i := range 25 {
		s.Add(fmt.Sprintf("f%02d", i), touched, ms(i))
	}
	s.Advance(ms(100))
	var sizes []int
	var all []string
	for {
		b, ok := s.Take(10)
		if !ok {
			break
		}
		sizes = append(sizes, len(b.Paths))
		all = append(all, b.Paths...)
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Fatalf("batch sizes %v, want [10 10 5]", sizes)
	}
	if !slices.IsSorted(all) || len(all) != 25 {
		t.Fatalf("paths %v: want all 25 in settle order", all)
	}
}

func TestSettlerPendingLimitCollapsesIntoRescan(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 3)
	for i, p := range []string{"a", "b", "c"} {
		if !s.Add(p, written, ms(i)) {
			t.Fatalf("Add(%s) overflowed below the limit", p)
		}
	}
	if s.Add("d", written, ms(3)) {
		t.Fatal("fourth distinct path did not overflow a limit of 3")
	}
	if s.Pending() != 0 {
		t.Fatalf("Pending = %d after the collapse, want 0", s.Pending())
	}
	// Events while the rescan waits are covered by it and keep it waiting
	// for the folder to go quiet.
	s.Add("e", written, ms(40))
	s.Add("a", written, ms(80))
	if s.Pending() != 0 {
		t.Fatalf("Pending = %d while a rescan is wanted, want 0", s.Pending())
	}
	s.Advance(ms(129))
	if _, ok := s.Take(10); ok {
		t.Fatal("rescan taken before the folder was quiet")
	}
	s.Advance(ms(130))
	b, ok := s.Take(10)
	if !ok || !b.Rescan || b.Reason != ReasonPendingLimit || len(b.Paths) != 0 {
		t.Fatalf("Take = %+v %v, want one pending-limit rescan", b, ok)
	}
	// After the rescan, paths are tracked again.
	s.Add("f", touched, ms(200))
	s.Advance(ms(210))
	if b, ok := s.Take(10); !ok || !slices.Equal(b.Paths, []string{"f"}) {
		t.Fatalf("after the rescan: Take = %+v %v, want [f]", b, ok)
	}
}

func TestSettlerRescanWaitIsCapped(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	s.Rescan(ReasonOverflow, ms(0))
	// An event every 20ms forever: the folder is never quiet for 50ms.
	for at := 20; at < 5000; at += 20 {
		s.Advance(ms(at))
		if s.RescanDue() {
			if at < 1000 {
				t.Fatalf("rescan due at %dms, before the folder was quiet or the cap", at)
			}
			if at > 1020 {
				t.Fatalf("rescan due only at %dms, want the cap of 1s", at)
			}
			b, _ := s.Take(10)
			if !b.Rescan || b.Reason != ReasonOverflow {
				t.Fatalf("Take = %+v, want the overflow rescan", b)
			}
			return
		}
		s.Add("busy", written, ms(at))
	}
	t.Fatal("rescan never became due in a folder that never goes quiet")
}

func TestSettlerRescanDropsPending(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	s.Add("a", touched, ms(0))
	s.Add("b", written, ms(0))
	s.Advance(ms(10)) // a is ready, b waiting
	s.Rescan(ReasonPeriodic, ms(11))
	s.Rescan(ReasonOverflow, ms(12)) // coalesces; the first reason stays
	s.Advance(ms(100))
	b, ok := s.Take(10)
	if !ok || !b.Rescan || b.Reason != ReasonPeriodic {
		t.Fatalf("Take = %+v %v, want the periodic rescan", b, ok)
	}
	if b, ok := s.Take(10); ok {
		t.Fatalf("after the rescan Take = %+v, want nothing: it covered a and b", b)
	}
}

// naiveSettler is the reference for TestSettlerMatchesNaive: the same rules
// with a plain map, a full scan for what is due and a sort.
type naiveSettler struct {
	settle, prompt time.Duration
	deadline       map[string]time.Time
	since          map[string]time.Time
	seq            map[string]int
	ready          []string
	n              int
}

func (m *naiveSettler) add(path string, k kind, now time.Time) {
	d := now.Add(m.prompt)
	if k == written {
		d = now.Add(m.settle)
	}
	target := ""
	for p := path; ; {
		if _, ok := m.deadline[p]; ok {
			target = p
			break
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	if target == "" || (target != path && now.Sub(m.since[target]) >= time.Second) {
		m.n++
		m.deadline[path], m.seq[path], m.since[path] = d, m.n, now
		return
	}
	if i := slices.Index(m.ready, target); i >= 0 {
		m.ready = slices.Delete(m.ready, i, i+1)
		m.deadline[target] = d
		return
	}
	if d.After(m.deadline[target]) {
		m.deadline[target] = d
	}
}

func (m *naiveSettler) advance(now time.Time) {
	var due []string
	for p, d := range m.deadline {
		if !d.After(now) && !slices.Contains(m.ready, p) {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(a, b string) int {
		if c := m.deadline[a].Compare(m.deadline[b]); c != 0 {
			return c
		}
		return m.seq[a] - m.seq[b]
	})
	m.ready = append(m.ready, due...)
}

func (m *naiveSettler) take(n int) []string {
	n = min(n, len(m.ready))
	got := slices.Clone(m.ready[:n])
	m.ready = m.ready[n:]
	for _, p := range got {
		delete(m.deadline, p)
		delete(m.seq, p)
		delete(m.since, p)
	}
	return got
}

func TestSettlerMatchesNaive(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	names := []string{"a", "b", "a/x", "a/y", "a/x/f", "b/g", "c", "ab", "ab/h"}
	for round := range 200 {
		s := newSettler(50*time.Millisecond, 10*time.Millisecond, 1000)
		m := &naiveSettler{settle: 50 * time.Millisecond, prompt: 10 * time.Millisecond,
			deadline: map[string]time.Time{}, since: map[string]time.Time{}, seq: map[string]int{}}
		now := 0
		for op := range 300 {
			now += r.IntN(15)
			switch r.IntN(3) {
			case 0, 1:
				p, k := names[r.IntN(len(names))], kind(r.IntN(2))
				s.Add(p, k, ms(now))
				m.add(p, k, ms(now))
			case 2:
				n := 1 + r.IntN(4)
				s.Advance(ms(now))
				m.advance(ms(now))
				b, _ := s.Take(n)
				want := m.take(n)
				if !slices.Equal(b.Paths, want) && len(b.Paths)+len(want) > 0 {
					t.Fatalf("seed %d round %d op %d at %dms: Take(%d) = %q, reference %q",
						seed, round, op, now, n, b.Paths, want)
				}
			}
			if s.Pending() != len(m.deadline) {
				t.Fatalf("seed %d round %d op %d: Pending %d, reference %d", seed, round, op, s.Pending(), len(m.deadline))
			}
		}
	}
}

func TestPathStateTable(t *testing.T) {
	const settle, prompt, hold = 50 * time.Millisecond, 10 * time.Millisecond, 2 * time.Second
	type ev struct {
		at int
		k  kind
	}
	tests := []struct {
		name     string
		events   []ev
		due      int // ms after t0
		open     bool
		complete bool
	}{
		{"write", []ev{{0, written}}, 50, false, false},
		{"create or rename without closes", []ev{{0, touched}}, 10, false, false},
		{"opened: held for the hold time", []ev{{0, opened}}, 2000, true, false},
		{"opened again: held from the first", []ev{{0, opened}, {1500, opened}}, 2000, true, false},
		{"opened, then quiet past the hold: due when quiet", []ev{{0, opened}, {1990, opened}}, 2040, true, false},
		{"closed after writes: prompt from the close", []ev{{0, opened}, {30, written}, {40, finished}}, 50, false, true},
		{"closed", []ev{{0, finished}}, 10, false, true},
		{"renamed into place: reported almost at once", []ev{{0, placed}}, 1, false, true},
		{"renamed into place, then chmod: still complete, still prompt", []ev{{0, placed}, {0, touched}}, 1, false, true},
		{"closed, then chmod: the prompt time", []ev{{0, finished}, {0, touched}}, 10, false, true},
		{"renamed into place over an open file: nothing held", []ev{{0, opened}, {5, placed}}, 6, false, true},
		{"renamed into place, then written: the settle time", []ev{{0, placed}, {1, written}}, 51, false, false},
		{"closed, then an attribute change: still complete", []ev{{0, finished}, {5, touched}}, 15, false, true},
		{"closed, then a write: not complete", []ev{{0, finished}, {5, written}}, 55, false, false},
		{"closed, then opened again: held afresh", []ev{{0, opened}, {5, finished}, {8, opened}}, 2008, true, false},
		{"removed while open: prompt, nothing held", []ev{{0, opened}, {5, gone}}, 50, false, false},
		{"a touch never shortens a write's wait", []ev{{0, written}, {5, touched}}, 50, false, false},
	}
	for _, tt := range tests {
		var st pathState
		for _, e := range tt.events {
			st = st.next(e.k, ms(e.at), settle, prompt)
		}
		if got := st.due(hold); !got.Equal(ms(tt.due)) || st.open != tt.open || st.complete != tt.complete {
			t.Errorf("%s: due %v open %v complete %v, want %v %v %v", tt.name,
				got.Sub(t0), st.open, st.complete, time.Duration(tt.due)*time.Millisecond, tt.open, tt.complete)
		}
	}
}

// TestPlacedWait: a file renamed into place waits until a timestamp tick
// past its ctime (so Writing can tell its events were read), never more
// than the prompt time, and not at all when the ctime is unknown.
func TestPlacedWait(t *testing.T) {
	now := time.Unix(1000, 0)
	const prompt = 2 * maxTimeTick
	margin := 200 * time.Microsecond
	tests := []struct {
		name  string
		ctime time.Time
		want  time.Duration
	}{
		{"unknown", time.Time{}, 0},
		{"stamped now", now, timeTick + margin},
		{"stamped a tick ago", now.Add(-timeTick), margin},
		{"long ago", now.Add(-time.Second), timeTick + margin - time.Second},
		{"in the future: ignored", now.Add(time.Second), 0},
	}
	for _, tt := range tests {
		if got := placedWait(tt.ctime, now, prompt); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestNotBefore: NotBefore delays a pending path and never hastens one.
func TestNotBefore(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	s.Add("f", placed, ms(0))
	s.NotBefore("f", ms(4))
	s.NotBefore("f", ms(2)) // earlier: no effect
	s.NotBefore("g", ms(9)) // not pending: no effect
	s.Advance(ms(3))
	if b, ok := s.Take(10); ok {
		t.Fatalf("taken at 3ms: %v", b.Paths)
	}
	s.Advance(ms(4))
	if b, _ := s.Take(10); !slices.Equal(b.Paths, []string{"f"}) {
		t.Fatalf("at 4ms: %v, want [f]", b.Paths)
	}
	if len(s.entries) != 0 {
		t.Fatalf("g was added: %v", s.entries)
	}
}
