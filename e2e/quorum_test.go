package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuorumWait: in a quorum folder of three nodes (quorum 2), wait succeeds
// with two nodes up, times out naming the missing peers with one, and
// succeeds once a second node is back.
func TestQuorumWait(t *testing.T) {
	c := newCluster(t, 3, folderSpec{ID: "uploads", Mode: "quorum"})
	c.start()
	c.waitInSync(30 * time.Second)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	up := n1.folders["uploads"]

	n3.stop()
	p := filepath.Join(up, "avatar-1.jpg")
	writeAtomic(t, p, randomData(31, 4096), 0o644)
	if _, err := n1.lockstep("wait", "--timeout", "20s", p); err != nil {
		t.Fatalf("wait with 2 of 3 nodes up: %v", err)
	}
	if _, err := os.Stat(filepath.Join(n2.folders["uploads"], "avatar-1.jpg")); err != nil {
		t.Fatalf("wait returned but node2 does not hold the file: %v", err)
	}

	n2.stop()
	p2 := filepath.Join(up, "avatar-2.jpg")
	writeAtomic(t, p2, randomData(32, 4096), 0o644)
	start := time.Now()
	_, err := n1.lockstep("wait", "--timeout", "1s", p2)
	if err == nil {
		t.Fatal("wait with 1 of 3 nodes up succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("wait with a 1s timeout took %s", d)
	}
	if !strings.Contains(err.Error(), "avatar-2.jpg") || !strings.Contains(err.Error(), "node2") {
		t.Fatalf("timeout message does not name the path and the missing peers: %v", err)
	}
	st, err := n1.status()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Folders[0].Mode; got != "quorum" {
		t.Fatalf("mode in status = %q", got)
	}

	n2.start()
	if _, err := n1.lockstep("wait", "--timeout", "30s", p2); err != nil {
		t.Fatalf("wait after node2 returned: %v", err)
	}
	n3.start()
	c.waitInSync(30 * time.Second)
}

// TestAsyncWaitNeedsEveryPeer: in an async folder, wait means every peer
// holds the version.
func TestAsyncWaitNeedsEveryPeer(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	c.waitInSync(30 * time.Second)
	n1, n3 := c.nodes[0], c.nodes[2]
	n3.stop()
	p := filepath.Join(n1.folders["docroot"], "a.txt")
	writeAtomic(t, p, []byte("a"), 0o644)
	if _, err := n1.lockstep("wait", "--timeout", "1s", p); err == nil || !strings.Contains(err.Error(), "node3") {
		t.Fatalf("async wait with a peer down: %v, want a timeout naming node3", err)
	}
	n3.start()
	if _, err := n1.lockstep("wait", "--timeout", "30s", p); err != nil {
		t.Fatalf("async wait once every peer is up: %v", err)
	}
}
