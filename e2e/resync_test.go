package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// populate writes a mixed tree on nd and returns its size in bytes: large
// random files (so that a transfer shows on the byte counters), small
// ones in subdirectories, a symlink and an empty directory.
func populate(t *testing.T, nd *node, large int) int64 {
	t.Helper()
	dir := nd.folders["docroot"]
	rng := rand.New(rand.NewPCG(7, 9))
	var total int64
	for i := range large {
		data := make([]byte, 256<<10)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		writeAtomic(t, filepath.Join(dir, fmt.Sprintf("media/big%02d.bin", i)), data, 0o644)
		total += int64(len(data))
	}
	for i := range 20 {
		data := []byte(strings.Repeat(fmt.Sprintf("page %d\n", i), 50))
		writeAtomic(t, filepath.Join(dir, fmt.Sprintf("pages/s%d/p%02d.html", i%3, i)), data, 0o644)
		total += int64(len(data))
	}
	if err := os.Symlink("pages/s0/p00.html", filepath.Join(dir, "index.html")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	return total
}

// conflictsOf lists a node's conflict records.
func conflictsOf(t *testing.T, nd *node) []struct{ Path, Winner, Loser, Copy string } {
	t.Helper()
	out, err := nd.lockstep("conflicts", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ Path, Winner, Loser, Copy string }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("conflicts --json on %s: %v: %s", nd.name, err, out)
	}
	return list
}

// startResync runs `lockstep resync` on nd in the background.
func startResync(t *testing.T, nd *node, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"resync", "--config", nd.config}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

// syncBuffer is a buffer a command writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startResyncOffline runs `lockstep resync` on a stopped node and waits
// until it has prepared the resync and waits for the daemon (it holds the
// index briefly before that).
func startResyncOffline(t *testing.T, nd *node, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd, out := startResync(t, nd, args...)
	eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(out.String(), "waiting for the daemon"), "resync output so far: " + out.String()
	})
	return cmd, out
}

func waitCmd(t *testing.T, cmd *exec.Cmd, out *syncBuffer, timeout time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within %s:\n%s", strings.Join(cmd.Args, " "), timeout, out)
	}
}

func removeIndex(t *testing.T, nd *node) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(nd.dir, "data", "index")); err != nil {
		t.Fatal(err)
	}
}

// TestResyncRebuilds covers the rebuild cases: a live resync of an intact
// node and a node whose index was lost (both adopt everything, fetch
// almost nothing), a node restored from a stale backup (the cluster's
// versions win, local differences go to its conflict store, nothing is
// pushed), a wiped node (pulls everything), and a corrupt index.
func TestResyncRebuilds(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	size := populate(t, n1, 24)
	c.waitInSync(90 * time.Second)
	want := snapshot(n1.folders["docroot"])

	t.Run("live on an intact node", func(t *testing.T) {
		before, err := n1.status()
		if err != nil {
			t.Fatal(err)
		}
		_, chunks0 := before.received()
		cmd, out := startResync(t, n1)
		waitCmd(t, cmd, out, 90*time.Second)
		if !strings.Contains(out.String(), "in sync") {
			t.Fatalf("resync output lacks the final line:\n%s", out)
		}
		after, err := n1.status()
		if err != nil {
			t.Fatal(err)
		}
		if _, chunks1 := after.received(); chunks1-chunks0 > uint64(size/100) {
			t.Errorf("live resync of an intact node fetched %d chunk bytes of a %d-byte folder (> 1%%)", chunks1-chunks0, size)
		}
		c.waitInSyncIn(t, 60*time.Second)
	})

	t.Run("index lost, folder intact", func(t *testing.T) {
		n3.stop()
		removeIndex(t, n3)
		cmd, out := startResyncOffline(t, n3)
		n3.start()
		waitCmd(t, cmd, out, 90*time.Second)
		c.waitInSyncIn(t, 60*time.Second)
		st, err := n3.status()
		if err != nil {
			t.Fatal(err)
		}
		wire, chunks := st.received()
		t.Logf("index-lost resync: %d chunk bytes, %d bytes on the wire received, folder %d bytes", chunks, wire, size)
		if chunks > uint64(size/100) {
			t.Errorf("resync of an intact folder fetched %d chunk bytes of %d (> 1%%)", chunks, size)
		}
		if wire > uint64(size/100) {
			t.Errorf("resync of an intact folder received %d bytes on the wire for a %d-byte folder (> 1%%)", wire, size)
		}
	})

	t.Run("stale backup with strays", func(t *testing.T) {
		n2.stop()
		removeIndex(t, n2)
		d2 := n2.folders["docroot"]
		mustWrite := func(rel, data string) {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(d2, rel)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d2, rel), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite("pages/s1/p01.html", "an old version of page 1\n")
		mustWrite("pages/s2/p02.html", "an old version of page 2\n")
		mustWrite("stray.txt", "only on node2\n")
		mustWrite("old/dir/stray2.txt", "also only on node2\n")
		if err := os.Remove(filepath.Join(d2, "pages/s0/p03.html")); err != nil {
			t.Fatal(err)
		}
		cmd, out := startResyncOffline(t, n2, "--folder", "docroot")
		n2.start()
		waitCmd(t, cmd, out, 90*time.Second)
		c.waitInSyncIn(t, 60*time.Second)
		if d := diffTrees(want, snapshot(n1.folders["docroot"])); d != "" {
			t.Fatalf("the cluster's tree changed after a stale node resynced: %s", d)
		}
		list := conflictsOf(t, n2)
		kept := map[string]string{}
		for _, cf := range list {
			data, err := os.ReadFile(cf.Copy)
			if err != nil {
				t.Fatalf("conflict copy of %s: %v", cf.Path, err)
			}
			kept[cf.Path] = string(data)
		}
		for rel, data := range map[string]string{
			"pages/s1/p01.html":  "an old version of page 1\n",
			"pages/s2/p02.html":  "an old version of page 2\n",
			"stray.txt":          "only on node2\n",
			"old/dir/stray2.txt": "also only on node2\n",
		} {
			if kept[rel] != data {
				t.Errorf("node2's local %s was not kept in its conflict store (have %q)", rel, kept[rel])
			}
		}
		for _, nd := range []*node{n1, n3} {
			if l := conflictsOf(t, nd); len(l) != 0 {
				t.Errorf("%s recorded conflicts: node2 pushed its local versions: %+v", nd.name, l)
			}
		}
		if _, err := os.Stat(filepath.Join(d2, "old")); err == nil {
			t.Errorf("node2 still has the stray directory old/")
		}
	})

	t.Run("index lost, stale file, started without resync", func(t *testing.T) {
		n2.stop()
		removeIndex(t, n2)
		stale := filepath.Join(n2.folders["docroot"], "pages/s2/p05.html")
		if err := os.WriteFile(stale, []byte("a stale copy from a backup\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		hourAgo := time.Now().Add(-time.Hour)
		if err := os.Chtimes(stale, hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
		n2.start()
		c.waitInSyncIn(t, 60*time.Second)
		if d := diffTrees(want, snapshot(n1.folders["docroot"])); d != "" {
			t.Fatalf("a stale file on a node with a lost index won over the cluster: %s", d)
		}
		kept := false
		for _, cf := range conflictsOf(t, n2) {
			if data, err := os.ReadFile(cf.Copy); err == nil && cf.Path == "pages/s2/p05.html" && string(data) == "a stale copy from a backup\n" {
				kept = true
			}
		}
		if !kept {
			t.Error("node2's stale copy of pages/s2/p05.html is not in its conflict store")
		}
	})

	t.Run("wiped node", func(t *testing.T) {
		n3.stop()
		removeIndex(t, n3)
		d3 := n3.folders["docroot"]
		entries, _ := os.ReadDir(d3)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(d3, e.Name()))
		}
		n3.start()
		c.waitInSyncIn(t, 90*time.Second)
		if d := diffTrees(want, snapshot(d3)); d != "" {
			t.Fatalf("wiped node differs from the cluster: %s", d)
		}
	})

	t.Run("corrupt index", func(t *testing.T) {
		n3.stop()
		manifest := filepath.Join(n3.dir, "data", "index", "MANIFEST")
		if err := os.WriteFile(manifest, bytes.Repeat([]byte{0xA5}, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(binary, "run", "--config", n3.config).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lockstep resync") {
			t.Fatalf("run on a corrupt index: %v, want an error pointing at resync:\n%s", err, out)
		}
		cmd, rout := startResyncOffline(t, n3)
		n3.start()
		waitCmd(t, cmd, rout, 90*time.Second)
		if !strings.Contains(rout.String(), "could not be read") {
			t.Errorf("resync did not say it set the corrupt index aside:\n%s", rout)
		}
		c.waitInSyncIn(t, 60*time.Second)
		if l := conflictsOf(t, n3); len(l) != 0 {
			t.Errorf("resync of an intact folder with a corrupt index set entries aside: %+v", l)
		}
	})
}
