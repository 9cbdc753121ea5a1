package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hup sends SIGHUP to the daemon.
func (nd *node) hup() {
	nd.t.Helper()
	if err := nd.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		nd.t.Fatalf("SIGHUP %s: %v", nd.name, err)
	}
}

// logged reports how many lines of the daemon's log contain every one of
// parts.
func (nd *node) logged(parts ...string) int {
	data, _ := os.ReadFile(nd.logPath)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func (nd *node) writeConfig(text string) {
	nd.t.Helper()
	if err := os.WriteFile(nd.config, []byte(text), 0o644); err != nil {
		nd.t.Fatal(err)
	}
}

// peersTable matches one [[peers]] table as newCluster writes it.
var peersTable = regexp.MustCompile(`(?s)\n\[\[peers\]\]\n.*?\n\n`)

// TestReloadAddsPeer: a node started without its peer in the
// configuration does not sync with it; once the peer is added and the
// daemon gets SIGHUP, the folder converges without a restart.
func TestReloadAddsPeer(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	full, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	a.writeConfig(peersTable.ReplaceAllString(string(full), "\n"))
	c.start()
	writeAtomic(t, filepath.Join(a.folders["docroot"], "from-a.html"), []byte("a"), 0o644)
	writeAtomic(t, filepath.Join(b.folders["docroot"], "from-b.html"), []byte("b"), 0o644)
	// b keeps dialing a, which refuses it as an unknown node.
	eventually(t, 20*time.Second, func() (bool, string) {
		return a.logged("refused connection from unknown node") > 0, "a has not refused b yet"
	})
	if _, err := os.Stat(filepath.Join(b.folders["docroot"], "from-a.html")); err == nil {
		t.Fatal("from-a.html reached b while a did not know b")
	}

	// An invalid configuration keeps the running one.
	a.writeConfig("[node]\nname = \"node1\"\nbogus = 1\n")
	a.hup()
	eventually(t, 10*time.Second, func() (bool, string) {
		return a.logged("SIGHUP: configuration not reloaded", "bogus") == 1, "no single error line naming the bad key"
	})

	a.writeConfig(string(full))
	a.hup()
	c.waitInSync(60 * time.Second)
	for _, nd := range c.nodes {
		for _, f := range []string{"from-a.html", "from-b.html"} {
			if _, err := os.Stat(filepath.Join(nd.folders["docroot"], f)); err != nil {
				t.Errorf("%s on %s: %v", f, nd.name, err)
			}
		}
	}
	if a.logged("configuration reloaded: applied", "key=peers.node2") != 1 {
		t.Error("a did not log that it added peer node2")
	}
	if a.cmd.ProcessState != nil {
		t.Error("a restarted")
	}
}

// TestReloadIgnorePatterns: removing an ignore pattern with SIGHUP syncs
// the files it used to hide.
func TestReloadIgnorePatterns(t *testing.T) {
	c := newCluster(t, 2, folderSpec{ID: "docroot", Mode: "async", Ignore: []string{"*.log", "cache/"}})
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	writeAtomic(t, filepath.Join(a.folders["docroot"], "x.log"), []byte("log"), 0o644)
	writeAtomic(t, filepath.Join(a.folders["docroot"], "cache", "c.bin"), []byte("cache"), 0o644)
	writeAtomic(t, filepath.Join(a.folders["docroot"], "page.html"), []byte("page"), 0o644)
	eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(b.folders["docroot"], "page.html"))
		return err == nil, "page.html has not reached b"
	})
	for _, p := range []string{"x.log", "cache/c.bin"} {
		if _, err := os.Stat(filepath.Join(b.folders["docroot"], p)); err == nil {
			t.Fatalf("ignored %s reached b", p)
		}
	}
	for _, nd := range c.nodes {
		text, err := os.ReadFile(nd.config)
		if err != nil {
			t.Fatal(err)
		}
		nd.writeConfig(strings.Replace(string(text), `ignore = ["*.log", "cache/"]`, `ignore = ["*.tmp"]`, 1))
		nd.hup()
	}
	c.waitInSync(60 * time.Second)
	for _, p := range []string{"x.log", "cache/c.bin"} {
		if _, err := os.Stat(filepath.Join(b.folders["docroot"], p)); err != nil {
			t.Errorf("%s after the ignore pattern was removed: %v", p, err)
		}
	}
	// New files in the formerly ignored directory are watched too.
	writeAtomic(t, filepath.Join(a.folders["docroot"], "cache", "d.bin"), []byte("d"), 0o644)
	eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(b.folders["docroot"], "cache", "d.bin"))
		return err == nil, "cache/d.bin has not reached b"
	})
	if a.logged("configuration reloaded: applied", "key=folders.docroot.ignore") != 1 {
		t.Error("a did not log the ignore change")
	}
}
