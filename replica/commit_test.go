package replica

import (
	"testing"
	"time"

	"lockstep/conflict"
)

func TestRecordTimes(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }
	st := func(i int) conflict.Stamp { return conflict.MakeStamp(uint64(at(i).UnixMilli()), uint16(i)) }
	type step struct {
		add  int // add stamp i at time i; 0: take instead
		take int
		ok   bool
		want time.Time
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
	}{
		{"in order", 8, []step{{add: 1}, {add: 2}, {add: 3}, {take: 1, ok: true, want: at(1)}, {take: 2, ok: true, want: at(2)}, {take: 3, ok: true, want: at(3)}}},
		{"older replaced", 8, []step{{add: 1}, {add: 2}, {add: 3}, {take: 2, ok: true, want: at(2)}, {take: 1}, {take: 3, ok: true, want: at(3)}}},
		{"before start", 8, []step{{add: 5}, {take: 4}, {take: 5, ok: true, want: at(5)}}},
		{"empty", 8, []step{{take: 1}}},
		{"out of order not timed", 8, []step{{add: 1}, {add: 3}, {add: 2}, {take: 2}, {take: 3, ok: true, want: at(3)}}},
		{"forgotten half timed by stamp", 4, []step{
			{add: 1}, {add: 2}, {add: 3}, {add: 4}, {add: 5}, {add: 6},
			{take: 1, ok: true, want: st(1).Time()}, {take: 2, ok: true, want: st(2).Time()},
			{take: 4, ok: true, want: at(4)}, {take: 3}, {take: 6, ok: true, want: at(6)},
		}},
		{"refilled after emptied", 2, []step{{add: 1}, {take: 1, ok: true, want: at(1)}, {add: 2}, {add: 3}, {add: 4}, {take: 4, ok: true, want: at(4)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := recordTimes{max: tc.max}
			for i, s := range tc.steps {
				if s.add != 0 {
					r.add(st(s.add), at(s.add))
					if r.len() > tc.max {
						t.Fatalf("step %d: holds %d, max %d", i, r.len(), tc.max)
					}
					continue
				}
				got, ok := r.take(st(s.take))
				if ok != s.ok || !got.Equal(s.want) {
					t.Errorf("step %d: take(%d) = %v, %v; want %v, %v", i, s.take, got, ok, s.want, s.ok)
				}
			}
		})
	}
}

// TestCommittedEvents: each local version is reported once when the peer
// has confirmed it, with the time it took; the peer's own versions are not.
func TestCommittedEvents(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	defer link(t, ctx, a, b)()
	start := time.Now()
	for i := range 3 {
		a.write(string(rune('x'+i)), randomBytes(uint64(i), 1000))
	}
	b.write("from-b", []byte("b"))
	eventually(t, "three commits reported on a", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.committed) >= 3
	})
	eventually(t, "b's version on a", hasContent(a, "from-b", []byte("b")))
	eventually(t, "one commit reported on b", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.committed) >= 1
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.committed) != 3 {
		t.Errorf("a reported %d commits, want 3 (its own versions only)", len(a.committed))
	}
	for _, d := range a.committed {
		if d <= 0 || d > time.Since(start) {
			t.Errorf("commit latency %v outside (0, %v]", d, time.Since(start))
		}
	}
}
