package index

import (
	"context"
	"fmt"
	"testing"
	"time"

	"lockstep/chunker"
)

// TestPresenceFilter: before it is loaded the filter answers "maybe" for
// every hash; after, "no" for hashes never added and "maybe" for every
// one added, before or after the load.
func TestPresenceFilter(t *testing.T) {
	var p presence
	h := func(i int) chunker.Hash { return chunker.Sum(fmt.Appendf(nil, "chunk %d", i)) }
	p.add(h(1))
	if !p.mayHave(h(2)) {
		t.Fatal("an unloaded filter said no")
	}
	p.ready.Store(true)
	p.add(h(3))
	if !p.mayHave(h(1)) || !p.mayHave(h(3)) {
		t.Fatal("a hash added was said absent")
	}
	absent := 0
	for i := 100; i < 10100; i++ {
		if !p.mayHave(h(i)) {
			absent++
		}
	}
	if absent < 9990 {
		t.Fatalf("%d of 10000 hashes never added were said absent, want nearly all", absent)
	}
}

// TestLocateWithPresence: with the filter loaded by Run, Locate and
// LocateAll still find every chunk stored before the load, in a reopened
// index, and every chunk stored after it; they find none never stored.
func TestLocateWithPresence(t *testing.T) {
	dir := t.TempDir()
	ix := openTest(t, dir)
	put(t, ix, "f", fileRec("before", "AAAA", "BB"))
	ix.Close()
	ix = openTest(t, dir)
	if ix.chunks.mayHave(chunker.Sum([]byte("never"))) != true {
		t.Fatal("the filter answered before it was loaded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for !ix.chunks.ready.Load() {
		time.Sleep(time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before loading the filter", err)
		default:
		}
	}
	put(t, ix, "f", fileRec("after", "CCC"))
	for _, c := range []string{"AAAA", "BB", "CCC"} {
		if got := locate(t, ix, c); len(got) != 1 {
			t.Errorf("Locate(%s) = %v, want one place", c, got)
		}
		all, err := ix.LocateAll([]chunker.Hash{chunker.Sum([]byte(c)), chunker.Sum([]byte("never"))}, 4)
		if err != nil || len(all) != 1 || len(all[chunker.Sum([]byte(c))]) != 1 {
			t.Errorf("LocateAll(%s, never) = %v, %v", c, all, err)
		}
	}
	if got := locate(t, ix, "never"); len(got) != 0 {
		t.Errorf("Locate(never) = %v", got)
	}
	if ix.chunks.mayHave(chunker.Sum([]byte("never"))) {
		t.Error("the loaded filter says a chunk never stored may be there (one chance in millions)")
	}
}

// TestLocateWithoutPresence: when Run stops before the filter is loaded,
// the filter keeps answering "maybe" and lookups seek as before.
func TestLocateWithoutPresence(t *testing.T) {
	ix := openTest(t, t.TempDir())
	put(t, ix, "f", fileRec("x", "AAAA"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ix.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ix.chunks.ready.Load() {
		t.Fatal("the filter was loaded by a cancelled Run")
	}
	if got := locate(t, ix, "AAAA"); len(got) != 1 {
		t.Fatalf("Locate(AAAA) = %v, want one place", got)
	}
	if !ix.chunks.mayHave(chunker.Sum([]byte("never"))) {
		t.Fatal("an unloaded filter said no")
	}
}
