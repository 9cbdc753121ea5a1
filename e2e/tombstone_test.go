package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTombstonesForgottenOnlyWhenEveryPeerHoldsThem: with a short
// tombstone_retention, a deletion is forgotten on every node once all hold
// it; a node that was down keeps the others from forgetting, and on its
// return the deleted file goes from it too instead of coming back.
func TestTombstonesForgottenOnlyWhenEveryPeerHoldsThem(t *testing.T) {
	c := newCluster(t, 3, folderSpec{ID: "docroot", Mode: "async", Extra: "tombstone_retention = \"1s\"\n"})
	c.start()
	n1, n3 := c.nodes[0], c.nodes[2]
	for i := range 5 {
		writeAtomic(t, filepath.Join(n1.folders["docroot"], fmt.Sprintf("f%d.txt", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	c.waitInSync(60 * time.Second)

	tombstones := func(nd *node) int64 {
		var raw struct {
			Folders []struct {
				Tombstones int64 `json:"tombstones"`
			} `json:"folders"`
		}
		out, err := nd.lockstep("status", "--json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw.Folders) != 1 {
			t.Fatalf("status of %s: %v: %s", nd.name, err, out)
		}
		return raw.Folders[0].Tombstones
	}

	// node3 is down while f0 is deleted: nobody may forget it.
	n3.stop()
	if err := os.Remove(filepath.Join(n1.folders["docroot"], "f0.txt")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(c.nodes[1].folders["docroot"], "f0.txt"))
		return os.IsNotExist(err), "f0.txt still on node2"
	})
	time.Sleep(3 * time.Second) // several retention periods and GC rounds
	for _, nd := range c.nodes[:2] {
		if n := tombstones(nd); n != 1 {
			t.Fatalf("%s holds %d tombstones while node3 has not confirmed the deletion, want 1", nd.name, n)
		}
	}
	n3.start()
	c.waitInSync(60 * time.Second)
	for _, nd := range c.nodes {
		if _, err := os.Stat(filepath.Join(nd.folders["docroot"], "f0.txt")); !os.IsNotExist(err) {
			t.Fatalf("f0.txt is back on %s after node3 returned", nd.name)
		}
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		for _, nd := range c.nodes {
			if n := tombstones(nd); n != 0 {
				return false, fmt.Sprintf("%s still holds %d tombstones", nd.name, n)
			}
		}
		return true, ""
	})
	// Forgotten everywhere, and still deleted after a restart.
	n3.stop()
	n3.start()
	c.waitInSync(60 * time.Second)
	for _, nd := range c.nodes {
		if _, err := os.Stat(filepath.Join(nd.folders["docroot"], "f0.txt")); !os.IsNotExist(err) {
			t.Fatalf("f0.txt is back on %s after the tombstones were forgotten", nd.name)
		}
	}
}
