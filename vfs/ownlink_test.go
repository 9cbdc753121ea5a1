package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// ownLinked commits a new file rel with a claim, or nil if the name was
// taken.
func ownLinked(t *testing.T, f *Folder, rel string) *Temp {
	t.Helper()
	tmp, err := f.Dirs(0o755).CreateNew(rel, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmp.Seal(Meta{Mode: 0o644}, false); err != nil {
		t.Fatal(err)
	}
	tmp.OwnLink()
	if err := tmp.Commit(); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		t.Fatal(err)
	}
	return tmp
}

func inoAt(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestOwnLinkClaims: a claimed link matches its own name and inode once;
// another inode, another event on the name, a reset or the passing of
// ownLinkTTL end it; a failed link claims nothing; a file with a temp
// name is never claimed.
func TestOwnLinkClaims(t *testing.T) {
	newFileModes(t, func(t *testing.T, f *Folder, dir string, unnamed bool) {
		tmp := ownLinked(t, f, "a.txt")
		if tmp.Claimed() != unnamed {
			t.Fatalf("claimed = %v, want %v (only unnamed files are)", tmp.Claimed(), unnamed)
		}
		if !unnamed {
			if f.OwnCreated("a.txt", inoAt(t, filepath.Join(dir, "a.txt"))) {
				t.Fatal("a renamed temp file was claimed")
			}
			return
		}
		ino := inoAt(t, filepath.Join(dir, "a.txt"))
		if f.OwnCreated("a.txt", ino+1) {
			t.Fatal("another inode matched the claim")
		}
		if f.OwnCreated("a.txt", ino) {
			t.Fatal("the claim outlived a mismatch")
		}

		ownLinked(t, f, "b.txt")
		if !f.OwnCreated("b.txt", inoAt(t, filepath.Join(dir, "b.txt"))) {
			t.Fatal("b.txt: its own creation was not claimed")
		}
		if f.OwnCreated("b.txt", inoAt(t, filepath.Join(dir, "b.txt"))) {
			t.Fatal("b.txt: claimed twice")
		}

		ownLinked(t, f, "c.txt")
		f.OwnOther("c.txt")
		if f.OwnCreated("c.txt", inoAt(t, filepath.Join(dir, "c.txt"))) {
			t.Fatal("c.txt: claimed after another event on it")
		}

		ownLinked(t, f, "d.txt")
		f.OwnReset()
		if f.OwnCreated("d.txt", inoAt(t, filepath.Join(dir, "d.txt"))) {
			t.Fatal("d.txt: claimed after a reset")
		}

		now := time.Now()
		ownNow = func() time.Time { return now }
		t.Cleanup(func() { ownNow = time.Now })
		ownLinked(t, f, "e.txt")
		now = now.Add(ownLinkTTL)
		if f.OwnCreated("e.txt", inoAt(t, filepath.Join(dir, "e.txt"))) {
			t.Fatal("e.txt: claimed after its TTL")
		}

		if err := os.WriteFile(filepath.Join(dir, "taken"), []byte("local"), 0o644); err != nil {
			t.Fatal(err)
		}
		if ownLinked(t, f, "taken") != nil {
			t.Fatal("linked over a local file")
		}
		if n := f.own.n.Load(); n != 0 {
			t.Fatalf("%d claims left, want none (the failed link's dropped)", n)
		}
	})
}

// TestOwnLinked: a claim whose link succeeded answers OwnLinked once, with
// no inode asked; one not linked yet (noted, link in flight) is left to
// OwnCreated; expired, other-evented and reset claims do not answer.
func TestOwnLinked(t *testing.T) {
	newFileModes(t, func(t *testing.T, f *Folder, dir string, unnamed bool) {
		if !unnamed {
			ownLinked(t, f, "named.txt")
			if f.OwnLinked("named.txt") {
				t.Fatal("a renamed temp file was claimed")
			}
			return
		}
		ownLinked(t, f, "a.txt")
		if !f.OwnLinked("a.txt") {
			t.Fatal("a.txt: its linked claim did not answer")
		}
		if f.OwnLinked("a.txt") || f.OwnCreated("a.txt", inoAt(t, filepath.Join(dir, "a.txt"))) {
			t.Fatal("a.txt: claimed twice")
		}

		// Noted, not yet linked: OwnLinked leaves it to OwnCreated.
		f.own.note("b.txt", 42)
		if f.OwnLinked("b.txt") {
			t.Fatal("b.txt: a claim not linked yet answered OwnLinked")
		}
		if !f.OwnCreated("b.txt", 42) {
			t.Fatal("b.txt: the claim did not survive OwnLinked's refusal")
		}

		ownLinked(t, f, "c.txt")
		f.OwnOther("c.txt")
		if f.OwnLinked("c.txt") {
			t.Fatal("c.txt: claimed after another event on it")
		}
		ownLinked(t, f, "d.txt")
		f.OwnReset()
		if f.OwnLinked("d.txt") {
			t.Fatal("d.txt: claimed after a reset")
		}
		now := time.Now()
		ownNow = func() time.Time { return now }
		t.Cleanup(func() { ownNow = time.Now })
		ownLinked(t, f, "e.txt")
		now = now.Add(ownLinkTTL)
		if f.OwnLinked("e.txt") {
			t.Fatal("e.txt: claimed after its TTL")
		}
	})
}

// TestOwnLinksBounded: past maxOwnLinks claims, links are not claimed
// until the expired ones are swept, at most once per TTL.
func TestOwnLinksBounded(t *testing.T) {
	now := time.Now()
	ownNow = func() time.Time { return now }
	t.Cleanup(func() { ownNow = time.Now })
	var o ownLinks
	for i := range maxOwnLinks {
		if !o.note(fmt.Sprint(i), uint64(i)) {
			t.Fatalf("claim %d refused", i)
		}
	}
	if o.note("one more", 1) {
		t.Fatal("a claim past the bound was taken")
	}
	now = now.Add(ownLinkTTL)
	if !o.note("after the TTL", 1) {
		t.Fatal("the expired claims were not swept")
	}
	if n := o.n.Load(); n != 1 {
		t.Fatalf("%d claims, want 1", n)
	}
}
