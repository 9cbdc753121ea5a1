package watcher

import (
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"

	"lockstep/vfs"
)

// TestLiveOwnLinks: with a real inotify watch and a vfs.Folder as Own, a
// file the folder links into place with a claim is not reported; one
// linked without a claim is; and a write to the claimed file after its
// link is reported as usual.
func TestLiveOwnLinks(t *testing.T) {
	root := t.TempDir()
	fs, err := vfs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	own := &countingOwn{Folder: fs}
	r := startLive(t, root, Options{Unnamed: fs.IsUnnamed, Own: own}, nil)
	if !r.w.view.Load().src.Closes() {
		t.Skip("the event source does not report closes on this platform: nothing reports unnamed files")
	}
	link := func(name string, claim bool) {
		t.Helper()
		tmp, err := fs.Dirs(0o755).CreateNew(name, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tmp.File().Write([]byte("content of " + name)); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		if err := tmp.Seal(vfs.Meta{Mode: 0o644, MTime: old}, false); err != nil {
			t.Fatal(err)
		}
		if claim {
			tmp.OwnLink()
		}
		if err := tmp.Commit(); err != nil {
			t.Fatal(err)
		}
		if tmp.Claimed() != claim {
			t.Fatalf("%s: claimed %v, want %v (unnamed files unsupported here?)", name, tmp.Claimed(), claim)
		}
	}
	link("claimed.bin", true)
	link("unclaimed.bin", false)
	r.waitSeen(t, "unclaimed.bin")
	// The claimed file's creation came first: had it been reported, it
	// would be in the same batch or an earlier one.
	if r.seen["claimed.bin"] > 0 {
		t.Fatalf("claimed.bin reported; seen %v", r.seen)
	}
	expectNotSeen(t, r, "claimed.bin", 100*time.Millisecond)
	// inotify says the names are not directories: both creations were
	// offered to OwnLinked first (claimed.bin is dropped there unless the
	// event was read before Commit noted its link done, then by
	// OwnCreated).
	if n := own.asked.Load(); n != 2 {
		t.Fatalf("OwnLinked asked %d times, want 2", n)
	}

	f, err := os.OpenFile(filepath.Join(root, "claimed.bin"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(" and a local edit")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r.waitSeen(t, "claimed.bin")
}

// countingOwn is a vfs.Folder as Own, counting the calls of OwnLinked.
type countingOwn struct {
	*vfs.Folder
	asked atomic.Int32
}

func (o *countingOwn) OwnLinked(rel string) bool {
	o.asked.Add(1)
	return o.Folder.OwnLinked(rel)
}

// expectNotSeen fails if rel is reported within d.
func expectNotSeen(t *testing.T, r *liveRun, rel string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case b := <-r.out:
			if slices.Contains(b.Paths, rel) {
				t.Fatalf("%s reported: %+v", rel, b)
			}
			for _, p := range b.Paths {
				r.seen[p]++
			}
		case <-deadline:
			return
		}
	}
}

// TestOwnCallbacks: the watcher asks Own about every creation of a regular
// file (with its inode), tells it about every other event, and ends every
// claim when events may have been lost.
func TestOwnCallbacks(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "mine")
	writeFile(t, root, "theirs")
	fi, err := os.Lstat(filepath.Join(root, "mine"))
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		// "theirs" is claimed with the inode of another file.
		own := &fakeOwn{claims: map[string]uint64{"mine": inoOf(fi), "theirs": inoOf(fi)}}
		sources := &fakeSources{closes: true}
		r := started(t, root, Options{Own: own}, sources)
		defer r.stop(t)
		r.send(t, fsnotify.Create, "mine")
		r.send(t, fsnotify.Create, "theirs")
		if b, _ := recv(t, r.out); !slices.Equal(b.Paths, []string{"theirs"}) {
			t.Fatalf("batch %+v, want only theirs", b)
		}
		r.send(t, fsnotify.Write, "mine")
		if b, _ := recv(t, r.out); !slices.Equal(b.Paths, []string{"mine"}) {
			t.Fatalf("batch %+v, want mine after its write", b)
		}
		sources.live(t).errors <- fsnotify.ErrEventOverflow
		if b, _ := recv(t, r.out); !b.Rescan {
			t.Fatalf("batch %+v, want a rescan", b)
		}
		if !slices.Equal(own.other, []string{"mine"}) || own.resets != 1 {
			t.Fatalf("others %v, resets %d; want [mine] and 1", own.other, own.resets)
		}
	})
}

// TestOwnLinkedCallbacks: a creation the source says is not a directory
// is first offered to OwnLinked, which drops it without the file being
// looked at (the name here does not even exist); refused, it goes on to
// OwnCreated with the file's inode; a rename into place or a creation
// without the source's word is never offered to OwnLinked.
func TestOwnLinkedCallbacks(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "mine")
	writeFile(t, root, "moved")
	writeFile(t, root, "plain")
	fi, err := os.Lstat(filepath.Join(root, "mine"))
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		own := &fakeOwn{claims: map[string]uint64{"mine": inoOf(fi)}, linked: map[string]bool{"linked": true, "moved": true}}
		sources := &fakeSources{closes: true}
		r := started(t, root, Options{Own: own}, sources)
		defer r.stop(t)
		r.send(t, fsnotify.Create|opNotDir, "linked")
		r.send(t, fsnotify.Create|opNotDir, "mine")
		r.send(t, fsnotify.Create|opNotDir|opMoved, "moved")
		r.send(t, fsnotify.Create, "plain")
		// moved is reported at once, plain once settled (it may still be
		// being written).
		var got []string
		for len(got) < 2 {
			b, _ := recv(t, r.out)
			got = append(got, b.Paths...)
		}
		if slices.Sort(got); !slices.Equal(got, []string{"moved", "plain"}) {
			t.Fatalf("reported %v, want moved and plain", got)
		}
		if own.linkedAsked != 2 || own.asked != 2 {
			t.Fatalf("OwnLinked asked %d times, OwnCreated %d; want 2 and 2 (mine, plain)", own.linkedAsked, own.asked)
		}
		// A rename into place ends a claim; a creation does not.
		if !slices.Equal(own.other, []string{"moved"}) {
			t.Fatalf("other events %v, want [moved]", own.other)
		}
	})
}

// fakeOwn claims the names in claims, each once, with their inode, and
// those in linked, each once, without one.
type fakeOwn struct {
	claims map[string]uint64
	linked map[string]bool
	other  []string
	resets int
	// asked counts the OwnCreated calls, linkedAsked the OwnLinked ones.
	asked, linkedAsked int
}

func (o *fakeOwn) OwnCreated(rel string, ino uint64) bool {
	o.asked++
	want, ok := o.claims[rel]
	delete(o.claims, rel)
	return ok && want == ino
}

func (o *fakeOwn) OwnLinked(rel string) bool {
	o.linkedAsked++
	ok := o.linked[rel]
	delete(o.linked, rel)
	return ok
}
func (o *fakeOwn) OwnOther(rel string) { o.other = append(o.other, rel) }
func (o *fakeOwn) OwnReset()           { o.resets++ }
