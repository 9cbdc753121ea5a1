package watcher

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestWritersTable(t *testing.T) {
	type op struct {
		at     int    // ms after t0
		path   string // empty: expire at at
		kind   kind
		open   []string // after the op: the paths has reports
		expire []string // for an expire: what it returns, sorted
	}
	all := []string{"a", "b", "c"}
	tests := []struct {
		name string
		ops  []op
	}{
		{"created or written is open until closed", []op{
			{at: 0, path: "a", kind: opened, open: []string{"a"}},
			{at: 5, path: "a", kind: opened, open: []string{"a"}},
			{at: 9, path: "a", kind: finished},
		}},
		{"removal or rename away ends it", []op{
			{at: 0, path: "a", kind: opened, open: []string{"a"}},
			{at: 1, path: "b", kind: opened, open: []string{"a", "b"}},
			{at: 2, path: "a", kind: gone, open: []string{"b"}},
		}},
		{"other events change nothing", []op{
			{at: 0, path: "a", kind: written},
			{at: 0, path: "b", kind: touched},
			{at: 1, path: "c", kind: opened, open: []string{"c"}},
			{at: 2, path: "c", kind: touched, open: []string{"c"}},
			{at: 3, path: "c", kind: written, open: []string{"c"}},
		}},
		{"held at most the hold time from the first opening", []op{
			{at: 0, path: "a", kind: opened, open: []string{"a"}},
			{at: 500, path: "b", kind: opened, open: []string{"a", "b"}},
			{at: 1900, path: "a", kind: opened, open: []string{"a", "b"}},
			{at: 1999, open: []string{"a", "b"}},
			{at: 2000, open: []string{"b"}, expire: []string{"a"}},
			{at: 2499, open: []string{"b"}},
			{at: 2500, expire: []string{"b"}},
		}},
		{"opened again after the close counts afresh", []op{
			{at: 0, path: "a", kind: opened, open: []string{"a"}},
			{at: 1000, path: "a", kind: finished},
			{at: 1500, path: "a", kind: opened, open: []string{"a"}},
			{at: 2000, open: []string{"a"}},
			{at: 3500, expire: []string{"a"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWriters(2 * time.Second)
			for i, o := range tt.ops {
				if o.path != "" {
					w.note(o.path, o.kind, ms(o.at))
				} else {
					got := w.expire(ms(o.at))
					slices.Sort(got)
					if !slices.Equal(got, o.expire) {
						t.Fatalf("op %d: expire at %dms = %q, want %q", i, o.at, got, o.expire)
					}
				}
				var open []string
				for _, p := range all {
					if w.has(p) {
						open = append(open, p)
					}
				}
				if !slices.Equal(open, o.open) {
					t.Fatalf("op %d: open %q, want %q", i, open, o.open)
				}
			}
		})
	}
}

func TestWritersBounded(t *testing.T) {
	w := newWriters(time.Second)
	for i := range maxWriters + 10 {
		w.note(string(rune('a'+i%26))+string(rune(i)), opened, t0)
	}
	if n := len(w.open); n != maxWriters {
		t.Fatalf("%d files tracked, want at most %d", n, maxWriters)
	}
}

func TestSettlerKeepsWritersAcrossRescan(t *testing.T) {
	s := newSettler(50*time.Millisecond, 10*time.Millisecond, 100)
	s.Add("f", opened, ms(0))
	s.Rescan(ReasonOverflow, ms(1))
	s.Add("g", opened, ms(2)) // covered by the rescan, but still open
	if !s.writers.has("f") || !s.writers.has("g") {
		t.Fatal("a rescan forgot files open for writing")
	}
	s.Advance(ms(60))
	if b, ok := s.Take(10); !ok || !b.Rescan {
		t.Fatalf("Take = %+v, want the rescan", b)
	}
	// The rescan left f and g alone (they were open); when the hold time
	// is over, they are reported as they are.
	if next := s.Next(); !next.Equal(t0.Add(s.hold)) {
		t.Fatalf("Next = %v, want the end of f's hold", next.Sub(t0))
	}
	s.Advance(t0.Add(s.hold))
	s.Advance(t0.Add(s.hold + 10*time.Millisecond))
	b, _ := s.Take(10)
	if !slices.Equal(b.Paths, []string{"f"}) {
		t.Fatalf("after f's hold: took %q, want [f]", b.Paths)
	}
}

func TestCreatedKind(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("empty", "")
	write("full", "x")
	linked := write("linked", "x")
	if err := os.Link(linked, filepath.Join(dir, "link2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("full", filepath.Join(dir, "sym")); err != nil {
		t.Fatal(err)
	}
	stat := func(name string) (os.FileInfo, error) { return os.Lstat(filepath.Join(dir, name)) }
	tests := []struct {
		name          string
		moved, closes bool
		want          kind
	}{
		{"full", true, true, placed},
		{"empty", true, true, placed}, // renamed into place: whatever its size
		{"full", false, true, opened}, // created by a writer whose close will be seen
		{"empty", false, true, opened},
		{"link2", false, true, touched}, // a second link: no writer
		{"sym", false, true, touched},
		{"sym", true, true, touched},
		{"missing", false, true, touched}, // gone again
		{"full", false, false, touched},   // fsnotify: non-empty is taken as complete
		{"empty", false, false, written},  // fsnotify: empty waits the settle time
		{"missing", false, false, touched},
	}
	for _, tt := range tests {
		fi, err := stat(tt.name)
		if got := createdKind(fi, err, tt.moved, tt.closes); got != tt.want {
			t.Errorf("createdKind(%s, moved=%v, closes=%v) = %d, want %d", tt.name, tt.moved, tt.closes, got, tt.want)
		}
	}
}

// syncStub is a source whose Sync answers what the test says.
type syncStub struct {
	fakeSource
	t    time.Time
	sent uint64
	ok   bool
	n    int // Sync calls
}

func (s *syncStub) Sync() (time.Time, uint64, bool) {
	s.n++
	return s.t, s.sent, s.ok
}

func TestViewCaughtUp(t *testing.T) {
	defer func(old time.Duration) { timeTick = old }(timeTick)
	timeTick = 10 * time.Millisecond // the cases are written for a 10 ms tick
	tests := []struct {
		name     string
		synced   int // ms after t0 already known; 0: none
		t        int // what Sync says, ms after t0
		sent     uint64
		ok       bool
		applied  uint64
		changed  int // ms after t0
		want     bool
		syncs    int // Sync calls expected
		syncedTo int // synced afterwards, ms after t0
	}{
		{"known already: no Sync", 100, 0, 0, false, 0, 50, true, 0, 100},
		{"within a timestamp tick of what is known", 100, 0, 0, false, 0, 95, false, 1, 100},
		{"source cannot tell", 0, 200, 5, false, 5, 50, false, 1, 0},
		{"events sent but not applied yet", 0, 200, 5, true, 4, 50, false, 1, 0},
		{"all applied", 0, 200, 5, true, 5, 50, true, 1, 200},
		{"all applied, and more since", 0, 200, 5, true, 7, 50, true, 1, 200},
		{"all applied, but the change is newer", 0, 200, 5, true, 5, 195, false, 1, 200},
		{"an older Sync does not move synced back", 300, 200, 5, true, 5, 295, false, 1, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &syncStub{t: ms(tt.t), sent: tt.sent, ok: tt.ok}
			v := &view{src: src}
			if tt.synced > 0 {
				v.synced.Store(ms(tt.synced).UnixNano())
			}
			v.applied.Store(tt.applied)
			if got := v.caughtUp(ms(tt.changed)); got != tt.want {
				t.Errorf("caughtUp = %v, want %v", got, tt.want)
			}
			if src.n != tt.syncs {
				t.Errorf("%d Sync calls, want %d", src.n, tt.syncs)
			}
			var want int64
			if tt.syncedTo > 0 {
				want = ms(tt.syncedTo).UnixNano()
			}
			if got := v.synced.Load(); got != want {
				t.Errorf("synced %v, want %v", time.Duration(got-t0.UnixNano()), time.Duration(want-t0.UnixNano()))
			}
		})
	}
}

func TestDefaultPrompt(t *testing.T) {
	defer func(old time.Duration) { timeTick = old }(timeTick)
	for _, tc := range []struct{ tick, settle, want time.Duration }{
		{4 * time.Millisecond, 50 * time.Millisecond, 5 * time.Millisecond},
		{10 * time.Millisecond, 50 * time.Millisecond, 11 * time.Millisecond},
		{4 * time.Millisecond, 200 * time.Millisecond, 20 * time.Millisecond},
		{4 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond}, // never above settle
	} {
		timeTick = tc.tick
		if got := defaultPrompt(tc.settle); got != tc.want {
			t.Errorf("defaultPrompt(%v) with a %v tick = %v, want %v", tc.settle, tc.tick, got, tc.want)
		}
	}
}
