package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSmallEditSendsOnlyChangedChunks: an edit in the middle of a synced
// 32 MiB file makes the receiver fetch a few chunks, not the file.
func TestSmallEditSendsOnlyChangedChunks(t *testing.T) {
	c := newCluster(t, 2)
	c.start()
	n1, n2 := c.nodes[0], c.nodes[1]
	data := randomData(7, 32<<20)
	p := filepath.Join(n1.folders["docroot"], "big.bin")
	writeAtomic(t, p, data, 0o644)
	c.waitInSync(60 * time.Second)
	before, err := n2.status()
	if err != nil {
		t.Fatal(err)
	}
	wire0, chunks0 := before.received()
	if chunks0 < 32<<20 {
		t.Fatalf("node2 received %d chunk bytes for a 32 MiB file", chunks0)
	}
	edited := bytes.Clone(data)
	copy(edited[16<<20:], "a small edit in the middle of the file")
	// Insert 100 bytes near the start too: content-defined chunks realign.
	edited = append(edited[:1000], append(bytes.Repeat([]byte{'+'}, 100), edited[1000:]...)...)
	writeAtomic(t, p, edited, 0o644)
	c.waitInSync(60 * time.Second)
	after, err := n2.status()
	if err != nil {
		t.Fatal(err)
	}
	wire1, chunks1 := after.received()
	gotChunks, gotWire := chunks1-chunks0, wire1-wire0
	t.Logf("edit: %d chunk bytes, %d wire bytes received", gotChunks, gotWire)
	if gotChunks > 4*256<<10 {
		t.Fatalf("an edit of two places fetched %d chunk bytes; want at most 4 chunks", gotChunks)
	}
	if gotWire > 2<<20 {
		t.Fatalf("an edit of two places cost %d bytes on the wire", gotWire)
	}
}

// TestReaderNeverSeesPartialFile reads a file on the receiving node over and
// over while a large version arrives and is rewritten: every read is one of
// the complete versions, or the file is absent.
func TestReaderNeverSeesPartialFile(t *testing.T) {
	c := newCluster(t, 2)
	c.start()
	c.waitInSync(30 * time.Second)
	n1, n2 := c.nodes[0], c.nodes[1]
	versions := [][]byte{randomData(11, 24<<20), randomData(12, 24<<20)}
	valid := func(b []byte) bool {
		for _, v := range versions {
			if bytes.Equal(b, v) {
				return true
			}
		}
		return false
	}
	target := filepath.Join(n2.folders["docroot"], "asset.bin")
	var stop atomic.Bool
	var bad atomic.Value
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			b, err := os.ReadFile(target)
			if err != nil {
				continue // not there yet
			}
			reads.Add(1)
			if !valid(b) {
				bad.Store(len(b))
				return
			}
		}
	}()
	src := filepath.Join(n1.folders["docroot"], "asset.bin")
	for _, v := range versions {
		writeAtomic(t, src, v, 0o644)
		eventually(t, 60*time.Second, func() (bool, string) {
			b, err := os.ReadFile(target)
			return err == nil && bytes.Equal(b, v), "version not on node2 yet"
		})
	}
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n != nil {
		t.Fatalf("a reader saw a partial or mixed file of %d bytes", n)
	}
	if reads.Load() == 0 {
		t.Fatal("the reader never read the file")
	}
	for p := range snapshot(n2.folders["docroot"]) {
		if strings.Contains(p, ".lockstep") {
			t.Fatalf("temporary name left in the folder: %s", p)
		}
	}
}

// TestKillReceiverMidTransfer kills the receiver with SIGKILL while a large
// file arrives; after a restart it converges and no partial file is left
// in place.
func TestKillReceiverMidTransfer(t *testing.T) {
	c := newCluster(t, 2)
	c.start()
	c.waitInSync(30 * time.Second)
	n1, n2 := c.nodes[0], c.nodes[1]
	data := randomData(21, 200<<20)
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "huge.bin"), data, 0o644)
	// Kill once the transfer is under way.
	eventually(t, 60*time.Second, func() (bool, string) {
		st, err := n2.status()
		if err != nil {
			return false, err.Error()
		}
		_, chunks := st.received()
		return chunks > 8<<20, "transfer not started"
	})
	n2.kill()
	if b, err := os.ReadFile(filepath.Join(n2.folders["docroot"], "huge.bin")); err == nil && !bytes.Equal(b, data) {
		t.Fatalf("a partial huge.bin (%d bytes) is in place after the kill", len(b))
	}
	n2.start()
	c.waitInSync(120 * time.Second)
	b, err := os.ReadFile(filepath.Join(n2.folders["docroot"], "huge.bin"))
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("after restart: %d bytes, %v", len(b), err)
	}
}
