package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func randomData(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func TestConvergeMixedTree(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	c.waitInSync(30 * time.Second)

	n1, n2 := c.nodes[0], c.nodes[1]
	d1 := n1.folders["docroot"]
	writeAtomic(t, filepath.Join(d1, "index.html"), []byte("<h1>home</h1>"), 0o644)
	writeAtomic(t, filepath.Join(d1, "a/b/c/deep.txt"), []byte("deep"), 0o600)
	writeAtomic(t, filepath.Join(d1, "ünïcode dir/file with spaces.txt"), []byte("names"), 0o644)
	writeAtomic(t, filepath.Join(d1, "bin/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	writeAtomic(t, filepath.Join(d1, "empty"), nil, 0o644)
	if err := os.MkdirAll(filepath.Join(d1, "empty-dir/nested-empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("index.html", filepath.Join(d1, "link-to-index")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(d1, "absolute-link")); err != nil {
		t.Fatal(err)
	}
	big := randomData(1, 100<<20)
	writeAtomic(t, filepath.Join(d1, "media/big.bin"), big, 0o644)
	// A change on another node at the same time.
	writeAtomic(t, filepath.Join(n2.folders["docroot"], "from-node2.txt"), []byte("2"), 0o644)

	c.waitInSync(120 * time.Second)
	snap := snapshot(c.nodes[2].folders["docroot"])
	for _, p := range []string{"index.html", "a/b/c/deep.txt", "ünïcode dir/file with spaces.txt", "empty", "empty-dir/nested-empty", "link-to-index", "media/big.bin", "from-node2.txt"} {
		if _, ok := snap[p]; !ok {
			t.Errorf("%s missing on node3", p)
		}
	}
	if e := snap["bin/run.sh"]; e.Mode.Perm() != 0o755 {
		t.Errorf("bin/run.sh mode on node3 = %v, want 0755", e.Mode)
	}
	if e := snap["link-to-index"]; e.Kind != "symlink" || e.Digest != "index.html" {
		t.Errorf("link-to-index on node3 = %+v, want a symlink to index.html", e)
	}
	if e := snap["absolute-link"]; e.Kind != "symlink" || e.Digest != "/etc/passwd" {
		t.Errorf("absolute-link on node3 = %+v, want the link kept as a link", e)
	}
}

func TestModifyDeleteRenameAcrossNodes(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "doc.txt"), []byte("v1"), 0o644)
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "old/name.txt"), randomData(2, 1<<20), 0o644)
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "gone.txt"), []byte("bye"), 0o644)
	c.waitInSync(30 * time.Second)

	writeAtomic(t, filepath.Join(n2.folders["docroot"], "doc.txt"), []byte("v2 from node2"), 0o644)
	c.waitInSync(30 * time.Second)
	if err := os.Remove(filepath.Join(n3.folders["docroot"], "gone.txt")); err != nil {
		t.Fatal(err)
	}
	c.waitInSync(30 * time.Second)
	if err := os.Rename(filepath.Join(n1.folders["docroot"], "old"), filepath.Join(n1.folders["docroot"], "new")); err != nil {
		t.Fatal(err)
	}
	c.waitInSync(30 * time.Second)
	for _, nd := range c.nodes {
		s := snapshot(nd.folders["docroot"])
		if s["doc.txt"].Size != int64(len("v2 from node2")) {
			t.Errorf("%s: doc.txt = %+v, want node2's edit", nd.name, s["doc.txt"])
		}
		if _, ok := s["gone.txt"]; ok {
			t.Errorf("%s: gone.txt still there", nd.name)
		}
		if _, ok := s["old/name.txt"]; ok {
			t.Errorf("%s: old/name.txt still there after the rename", nd.name)
		}
		if _, ok := s["new/name.txt"]; !ok {
			t.Errorf("%s: new/name.txt missing after the rename", nd.name)
		}
	}
}

func TestDeleteNotResurrectedAfterRestart(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	n1, n3 := c.nodes[0], c.nodes[2]
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "victim.txt"), []byte("x"), 0o644)
	c.waitInSync(30 * time.Second)
	n3.stop()
	if err := os.Remove(filepath.Join(n1.folders["docroot"], "victim.txt")); err != nil {
		t.Fatal(err)
	}
	// node3 was down during the delete and still has the file.
	eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(c.nodes[1].folders["docroot"], "victim.txt"))
		return errors.Is(err, fs.ErrNotExist), "node2 still has victim.txt"
	})
	n3.start()
	c.waitInSync(30 * time.Second)
	for _, nd := range c.nodes {
		if _, err := os.Stat(filepath.Join(nd.folders["docroot"], "victim.txt")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: victim.txt resurrected", nd.name)
		}
	}
	// And after every node restarts, it stays deleted.
	for _, nd := range c.nodes {
		nd.stop()
		nd.start()
	}
	c.waitInSync(30 * time.Second)
	for _, nd := range c.nodes {
		if _, err := os.Stat(filepath.Join(nd.folders["docroot"], "victim.txt")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: victim.txt resurrected after restarts", nd.name)
		}
	}
}

type conflictEntry struct {
	Folder string `json:"folder"`
	Path   string `json:"path"`
	Winner string `json:"winner"`
	Loser  string `json:"loser"`
	Copy   string `json:"copy"`
}

func TestConcurrentEditSameWinnerLoserKept(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "page.html"), []byte("base"), 0o644)
	c.waitInSync(30 * time.Second)
	// Partition by stopping: node1 and node2 edit the same file while
	// apart from each other.
	n2.stop()
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "page.html"), []byte("edit on node1"), 0o644)
	eventually(t, 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(n3.folders["docroot"], "page.html"))
		return string(b) == "edit on node1", "node3 has not got node1's edit"
	})
	n1.stop()
	n3.stop()
	time.Sleep(20 * time.Millisecond) // node2's edit is the later one
	n2.start()
	writeAtomic(t, filepath.Join(n2.folders["docroot"], "page.html"), []byte("edit on node2, later"), 0o644)
	eventually(t, 10*time.Second, func() (bool, string) {
		st, err := n2.status()
		if err != nil {
			return false, err.Error()
		}
		return st.Folders[0].Files == 1 && st.Folders[0].State == "idle", "node2 has not recorded its edit"
	})
	n1.start()
	n3.start()
	c.waitInSync(60 * time.Second)
	for _, nd := range c.nodes {
		b, _ := os.ReadFile(filepath.Join(nd.folders["docroot"], "page.html"))
		if string(b) != "edit on node2, later" {
			t.Errorf("%s holds %q, want the later edit on every node", nd.name, b)
		}
	}
	// The loser is kept, outside every folder, and listed.
	found := false
	for _, nd := range c.nodes {
		out, err := nd.lockstep("conflicts", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var list []conflictEntry
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("conflicts --json on %s: %v: %s", nd.name, err, out)
		}
		for _, e := range list {
			if e.Copy == "" {
				continue
			}
			data, err := os.ReadFile(e.Copy)
			if err != nil {
				t.Errorf("%s lists a copy that is not there: %v", nd.name, err)
				continue
			}
			if string(data) == "edit on node1" && e.Winner == "node2" && e.Path == "page.html" {
				found = true
			}
			if strings.HasPrefix(e.Copy, nd.folders["docroot"]) {
				t.Errorf("%s keeps a conflict copy inside the synced folder: %s", nd.name, e.Copy)
			}
		}
	}
	if !found {
		t.Fatal("node1's losing edit is not kept in any conflict store")
	}
	for _, nd := range c.nodes {
		for p := range snapshot(nd.folders["docroot"]) {
			if p != "page.html" {
				t.Errorf("%s: unexpected %s in the folder", nd.name, p)
			}
		}
	}
}

func TestNodeDownCatchesUp(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	c.waitInSync(30 * time.Second)
	n1, n3 := c.nodes[0], c.nodes[2]
	n3.kill()
	for i := range 200 {
		writeAtomic(t, filepath.Join(n1.folders["docroot"], "batch", string(rune('a'+i%26)), filepath.Base(t.Name())+"-"+strings.Repeat("x", i%7)+string(rune('0'+i%10))+".txt"), randomData(uint64(i), 1000+i), 0o644)
	}
	n3.start()
	c.waitInSync(60 * time.Second)
	st, err := n3.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Folders[0].Files < 100 {
		t.Fatalf("node3 reports %d files after catching up", st.Folders[0].Files)
	}
}

func TestStatusAndCLIContract(t *testing.T) {
	c := newCluster(t, 2)
	n1 := c.nodes[0]
	// No daemon: status exits 1 with a clear message.
	_, err := n1.lockstep("status")
	if err == nil || !strings.Contains(err.Error(), "no lockstep daemon answers") {
		t.Fatalf("status without a daemon: %v", err)
	}
	c.start()
	c.waitInSync(30 * time.Second)
	st, err := n1.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "node1" || st.ID != n1.id || len(st.Folders) != 1 || st.Folders[0].Mode != "async" || len(st.Folders[0].Peers) != 1 {
		t.Fatalf("status = %+v", st)
	}
	if _, err := n1.lockstep("status", "--max-lag", "1m"); err != nil {
		t.Fatalf("health check on a synced node: %v", err)
	}
	out, err := n1.lockstep("status")
	if err != nil || !strings.Contains(out, "node2") || !strings.Contains(out, "idle") {
		t.Fatalf("status table: %v\n%s", err, out)
	}
	// wait on a synced file returns 0.
	p := filepath.Join(n1.folders["docroot"], "w.txt")
	writeAtomic(t, p, []byte("wait for me"), 0o644)
	if _, err := n1.lockstep("wait", "--timeout", "20s", p); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(c.nodes[1].folders["docroot"], "w.txt")); !bytes.Equal(b, []byte("wait for me")) {
		t.Fatalf("wait returned before the peer held the file: %q", b)
	}
	// A bad config is exit 2 with the line.
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[node]\nname = \"x\"\nbogus = 1\n"), 0o644)
	cmd := n1.lockstepRaw("status", "--config", bad)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if code := exitCode(err); code != 2 || !strings.Contains(stderr.String(), "bad.toml:3") {
		t.Fatalf("bad config: exit %d, %q", code, stderr.String())
	}
}
