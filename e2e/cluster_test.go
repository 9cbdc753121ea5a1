package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the lockstep executable under test, built once by TestMain.
// binDir is TestMain's scratch directory for built executables, removed
// at the end.
var binary, binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockstep-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	binary = filepath.Join(dir, "lockstep")
	if prebuilt := os.Getenv("LOCKSTEP_E2E_BINARY"); prebuilt != "" {
		// A binary built elsewhere, e.g. from another commit to compare
		// benchmarks in one session.
		binary = prebuilt
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/lockstep")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if os.Getenv("LOCKSTEP_E2E_NORACE") != "" {
		build.Args = []string{"go", "build", "-o", binary, "../cmd/lockstep"}
	}
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building lockstep:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// folderSpec describes one folder shared by every node of a cluster.
type folderSpec struct {
	ID     string
	Mode   string // "async" or "quorum"
	Extra  string // more TOML lines for the folder table
	Ignore []string
}

// node is one lockstep daemon of a test cluster.
type node struct {
	t       *testing.T
	name    string
	id      string
	dir     string // scratch root: data/, config, log, folders
	addr    string
	config  string
	logPath string
	folders map[string]string // folder id → path
	netns   string            // network namespace to run in; empty: this one
	cmd     *exec.Cmd
	waitErr chan error
}

// cluster is a set of nodes that all share the same folders.
type cluster struct {
	t     *testing.T
	nodes []*node
}

// newCluster prepares n nodes (identities, folders, configs) without
// starting them.
func newCluster(t *testing.T, n int, folders ...folderSpec) *cluster {
	t.Helper()
	if len(folders) == 0 {
		folders = []folderSpec{{ID: "docroot", Mode: "async"}}
	}
	root := t.TempDir()
	c := &cluster{t: t}
	for i := range n {
		nd := &node{t: t, name: fmt.Sprintf("node%d", i+1), folders: map[string]string{}}
		nd.dir = filepath.Join(root, nd.name)
		nd.addr = freeUDPAddr(t)
		nd.config = filepath.Join(nd.dir, "lockstep.toml")
		nd.logPath = filepath.Join(nd.dir, "lockstep.log")
		for _, f := range folders {
			p := filepath.Join(nd.dir, f.ID)
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			nd.folders[f.ID] = p
		}
		out, err := exec.Command(binary, "init", "--data-dir", filepath.Join(nd.dir, "data"), "--name", nd.name).Output()
		if err != nil {
			t.Fatalf("lockstep init for %s: %v", nd.name, exitDetail(err))
		}
		nd.id = strings.TrimSpace(string(out))
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		var b strings.Builder
		fmt.Fprintf(&b, "[node]\nname = %q\ndata_dir = %q\nlisten = %q\n", nd.name, filepath.Join(nd.dir, "data"), nd.addr)
		for _, p := range c.nodes {
			if p != nd {
				fmt.Fprintf(&b, "\n[[peers]]\nname = %q\nid = %q\naddress = %q\n", p.name, p.id, p.addr)
			}
		}
		for _, f := range folders {
			fmt.Fprintf(&b, "\n[[folders]]\nid = %q\npath = %q\nmode = %q\n", f.ID, nd.folders[f.ID], f.Mode)
			if len(f.Ignore) > 0 {
				q := make([]string, len(f.Ignore))
				for i, s := range f.Ignore {
					q[i] = fmt.Sprintf("%q", s)
				}
				fmt.Fprintf(&b, "ignore = [%s]\n", strings.Join(q, ", "))
			}
			b.WriteString(f.Extra)
		}
		if err := os.WriteFile(nd.config, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.kill()
		}
		if t.Failed() {
			c.dumpLogs()
		}
	})
	return c
}

// freeUDPAddr returns a 127.0.0.1 UDP address that was free a moment ago.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

func (c *cluster) start() {
	for _, nd := range c.nodes {
		nd.start()
	}
}

func (c *cluster) dumpLogs() {
	for _, nd := range c.nodes {
		data, err := os.ReadFile(nd.logPath)
		if err != nil {
			continue
		}
		if len(data) > 64<<10 {
			data = append([]byte("…\n"), data[len(data)-64<<10:]...)
		}
		c.t.Logf("=== log of %s ===\n%s", nd.name, data)
	}
}

// start runs the daemon in the background, logging to nd.logPath.
func (nd *node) start() {
	nd.t.Helper()
	if nd.cmd != nil {
		nd.t.Fatalf("%s is already running", nd.name)
	}
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		nd.t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--config", nd.config)
	if nd.netns != "" {
		// ip execs the binary in place, so signals reach the daemon.
		cmd = exec.Command("ip", "netns", "exec", nd.netns, binary, "run", "--config", nd.config)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		nd.t.Fatalf("start %s: %v", nd.name, err)
	}
	logf.Close()
	nd.cmd = cmd
	nd.waitErr = make(chan error, 1)
	go func() { nd.waitErr <- cmd.Wait() }()
}

// stop sends SIGTERM and waits; the SPEC allows 10 s for a clean stop.
func (nd *node) stop() {
	nd.t.Helper()
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-nd.waitErr:
		if err != nil {
			nd.t.Errorf("%s exited with %v after SIGTERM", nd.name, err)
		}
	case <-time.After(10 * time.Second):
		nd.cmd.Process.Kill()
		<-nd.waitErr
		nd.t.Errorf("%s did not stop within 10 s of SIGTERM", nd.name)
	}
	nd.cmd = nil
}

// kill stops the daemon with SIGKILL, as a crash would.
func (nd *node) kill() {
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Kill()
	<-nd.waitErr
	nd.cmd = nil
}

// lockstep runs a client command against this node's config.
func (nd *node) lockstep(args ...string) (stdout string, err error) {
	full := append([]string{args[0], "--config", nd.config}, args[1:]...)
	cmd := exec.Command(binary, full...)
	// A -race binary sleeps 1 s at exit by default; client commands are
	// short-lived and polled, so skip that.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("lockstep %s on %s: %w: %s", strings.Join(args, " "), nd.name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

// status is the SPEC's status JSON, declared here independently of the
// daemon's own types so that a renamed field fails the tests.
type status struct {
	Node    string `json:"node"`
	ID      string `json:"id"`
	Folders []struct {
		ID      string `json:"id"`
		Path    string `json:"path"`
		Mode    string `json:"mode"`
		State   string `json:"state"`
		Files   int64  `json:"files"`
		Bytes   int64  `json:"bytes"`
		Error   string `json:"error"`
		Warning string `json:"warning"`
		Peers   []struct {
			Name         string    `json:"name"`
			Connected    bool      `json:"connected"`
			PendingFiles int64     `json:"pending_files"`
			PendingBytes int64     `json:"pending_bytes"`
			LagSeconds   float64   `json:"lag_seconds"`
			LastSeen     time.Time `json:"last_seen"`
		} `json:"peers"`
	} `json:"folders"`
	Traffic []struct {
		Name               string `json:"name"`
		BytesSent          uint64 `json:"bytes_sent"`
		BytesReceived      uint64 `json:"bytes_received"`
		ChunkBytesSent     uint64 `json:"chunk_bytes_sent"`
		ChunkBytesReceived uint64 `json:"chunk_bytes_received"`
	} `json:"traffic"`
}

// received sums the stream bytes this node received from every peer.
func (st status) received() (wire, chunks uint64) {
	for _, t := range st.Traffic {
		wire += t.BytesReceived
		chunks += t.ChunkBytesReceived
	}
	return wire, chunks
}

func (nd *node) status() (status, error) {
	var st status
	out, err := nd.lockstep("status", "--json")
	if err != nil {
		return st, err
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("status of %s: %w", nd.name, err)
	}
	return st, nil
}

// inSync reports whether the SPEC's definition of "in sync" holds on this
// node: every folder idle, every peer connected with nothing pending.
func (st status) inSync() (bool, string) {
	for _, f := range st.Folders {
		if f.State != "idle" {
			return false, fmt.Sprintf("%s: folder %s is %s %s", st.Node, f.ID, f.State, f.Error)
		}
		for _, p := range f.Peers {
			if !p.Connected || p.PendingFiles != 0 {
				return false, fmt.Sprintf("%s: folder %s peer %s connected=%v pending=%d", st.Node, f.ID, p.Name, p.Connected, p.PendingFiles)
			}
		}
	}
	return true, ""
}

// eventually polls cond every 20 ms until it returns true or the deadline
// passes, then fails with cond's last explanation.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		ok, w := cond()
		if ok {
			return
		}
		why = w
		if time.Now().After(deadline) {
			t.Fatalf("not reached after %s: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitInSync waits until every node is in sync per its status and every
// folder holds the same tree on every node.
func (c *cluster) waitInSync(timeout time.Duration) {
	c.t.Helper()
	c.waitInSyncIn(c.t, timeout)
}

// waitInSyncIn is waitInSync failing t, a subtest of the cluster's test:
// a subtest must not fail its parent.
func (c *cluster) waitInSyncIn(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() (bool, string) {
		for _, nd := range c.nodes {
			if nd.cmd == nil {
				continue
			}
			st, err := nd.status()
			if err != nil {
				return false, err.Error()
			}
			if ok, why := st.inSync(); !ok {
				return false, why
			}
		}
		return c.sameTrees()
	})
}

// sameTrees compares every folder's tree across the running nodes.
func (c *cluster) sameTrees() (bool, string) {
	var ref *node
	for _, nd := range c.nodes {
		if nd.cmd == nil {
			continue
		}
		if ref == nil {
			ref = nd
			continue
		}
		for id, p := range nd.folders {
			a, b := snapshot(ref.folders[id]), snapshot(p)
			if d := diffTrees(a, b); d != "" {
				return false, fmt.Sprintf("folder %s differs between %s and %s: %s", id, ref.name, nd.name, d)
			}
		}
	}
	return true, ""
}

// entry is what the tests compare of one path.
type entry struct {
	Kind   string // file, dir, symlink
	Mode   fs.FileMode
	Size   int64
	Digest string // sha256 of a file, target of a symlink
}

// snapshot walks dir and describes every entry except lockstep's own
// temporary names, which may legitimately differ between nodes.
func snapshot(dir string) map[string]entry {
	out := map[string]entry{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), ".lockstep") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		e := entry{Mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Kind = "symlink"
			e.Digest, _ = os.Readlink(p)
		case fi.IsDir():
			e.Kind = "dir"
		default:
			e.Kind = "file"
			e.Size = fi.Size()
			data, _ := os.ReadFile(p)
			sum := sha256.Sum256(data)
			e.Digest = hex.EncodeToString(sum[:])
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	return out
}

func diffTrees(a, b map[string]entry) string {
	var diffs []string
	for p, ea := range a {
		eb, ok := b[p]
		switch {
		case !ok:
			diffs = append(diffs, p+" missing on the second")
		case ea != eb:
			diffs = append(diffs, fmt.Sprintf("%s: %+v vs %+v", p, ea, eb))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, p+" missing on the first")
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}

// writeAtomic writes a file the way deploy tools do: a temporary name in
// the same directory, then a rename.
func writeAtomic(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// lockstepRaw returns an unstarted command with no --config added.
func (nd *node) lockstepRaw(args ...string) *exec.Cmd {
	return exec.Command(binary, args...)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
