package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func folderState(t *testing.T, nd *node) (state, errMsg string) {
	t.Helper()
	st, err := nd.status()
	if err != nil {
		return "", err.Error()
	}
	return st.Folders[0].State, st.Folders[0].Error
}

func countFiles(dir string) int {
	n := 0
	for _, e := range snapshot(dir) {
		if e.Kind == "file" {
			n++
		}
	}
	return n
}

// TestEmptiedFolderPausesInsteadOfDeleting: `rm -rf` of a folder's contents
// on one node pauses that folder; the other nodes keep everything; with
// --accept-deletes the deletion then goes through.
func TestEmptiedFolderPausesInsteadOfDeleting(t *testing.T) {
	c := newCluster(t, 3, folderSpec{ID: "docroot", Mode: "async", Extra: "delete_guard_min = 10\n"})
	c.start()
	n1, n2 := c.nodes[0], c.nodes[1]
	for i := range 100 {
		writeAtomic(t, filepath.Join(n1.folders["docroot"], fmt.Sprintf("d%d/f%02d.html", i%4, i)), []byte(fmt.Sprint(i)), 0o644)
	}
	c.waitInSync(60 * time.Second)

	entries, _ := os.ReadDir(n2.folders["docroot"])
	for _, e := range entries {
		os.RemoveAll(filepath.Join(n2.folders["docroot"], e.Name()))
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		state, msg := folderState(t, n2)
		return state == "paused" && strings.Contains(msg, "mass deletion"), "node2 is " + state + ": " + msg
	})
	// Deletions below delete_guard_min (10) within the window may pass
	// before the guard has seen enough; nothing beyond that is deleted
	// elsewhere.
	time.Sleep(500 * time.Millisecond)
	for _, nd := range []*node{c.nodes[0], c.nodes[2]} {
		if n := countFiles(nd.folders["docroot"]); n < 91 {
			t.Fatalf("%s holds %d files after node2 was emptied, want at least 91 of 100", nd.name, n)
		}
	}
	if _, err := n2.lockstep("status", "--max-lag", "1h"); err == nil {
		t.Fatal("the health check passes on a paused folder")
	}
	// The operator confirms: the deletion propagates.
	if _, err := n2.lockstep("resume", "--accept-deletes"); err != nil {
		t.Fatal(err)
	}
	c.waitInSync(60 * time.Second)
	for _, nd := range c.nodes {
		if n := countFiles(nd.folders["docroot"]); n != 0 {
			t.Fatalf("%s holds %d files after the accepted deletion", nd.name, n)
		}
	}
}

// TestMissingRootPauses: a folder root renamed away (an unmounted disk) pauses
// the folder and deletes nothing anywhere; restoring it resumes.
func TestMissingRootPauses(t *testing.T) {
	c := newCluster(t, 2)
	c.start()
	n1, n2 := c.nodes[0], c.nodes[1]
	for i := range 5 {
		writeAtomic(t, filepath.Join(n1.folders["docroot"], fmt.Sprintf("f%d", i)), []byte("x"), 0o644)
	}
	c.waitInSync(30 * time.Second)
	root := n2.folders["docroot"]
	if err := os.Rename(root, root+".away"); err != nil {
		t.Fatal(err)
	}
	// A change elsewhere makes node2 look at its folder.
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "new.txt"), []byte("n"), 0o644)
	if _, err := n2.lockstep("resume"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		state, msg := folderState(t, n2)
		return state == "paused" && strings.Contains(msg, "missing"), "node2 is " + state + ": " + msg
	})
	// The watcher lost its root too: status says it is polling.
	eventually(t, 30*time.Second, func() (bool, string) {
		st, err := n2.status()
		if err != nil {
			return false, err.Error()
		}
		w := st.Folders[0].Warning
		return strings.Contains(w, "not watching"), "warning = " + w
	})
	if n := countFiles(n1.folders["docroot"]); n != 6 {
		t.Fatalf("node1 holds %d files while node2's root is missing, want 6", n)
	}
	if err := os.Rename(root+".away", root); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.lockstep("resume"); err != nil {
		t.Fatal(err)
	}
	c.waitInSync(30 * time.Second)
	if n := countFiles(root); n != 6 {
		t.Fatalf("node2 holds %d files after its root came back, want 6", n)
	}
}

// TestStopsWhenIndexCannotClose: with its data dir removed underneath it,
// Badger cannot flush the index at close and retries forever; the daemon
// still stops within 10 s of SIGTERM (nd.stop asserts it) and says why.
func TestStopsWhenIndexCannotClose(t *testing.T) {
	c := newCluster(t, 2)
	c.start()
	n1 := c.nodes[0]
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "a.txt"), []byte("a"), 0o644)
	c.waitInSync(30 * time.Second)
	if err := os.RemoveAll(filepath.Join(n1.dir, "data")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n1.stop()
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	log, err := os.ReadFile(n1.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "did not close within") {
		t.Errorf("the log does not say why the index was left unclosed:\n%s", log)
	}
}
