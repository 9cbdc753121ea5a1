package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/ignore"
	"lockstep/index"
)

const local conflict.NodeID = 0x10

// env is a folder on disk, its index and a scanner of it.
type env struct {
	t    *testing.T
	dir  string
	ix   *index.Index
	s    *Scanner
	logs *logRecorder
}

type envOption func(*Config)

func withIgnore(patterns ...string) envOption {
	return func(c *Config) {
		m, err := ignore.New(patterns)
		if err != nil {
			panic(err)
		}
		c.Ignore = m
	}
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "folder")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(filepath.Join(base, "data"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	logs := &logRecorder{}
	cfg := Config{
		Folder: "f", Dir: dir, Local: local, Clock: &conflict.Clock{},
		Logger: slog.New(logs),
		// Every file written by a test is older than the racy window.
		Now: func() time.Time { return time.Now().Add(time.Minute) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(ix, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, ix: ix, s: s, logs: logs}
}

// write creates the entries of tree: "name/" is a directory, a value
// starting with "@" a symlink to the rest, anything else a file with that
// content.
func (e *env) write(tree map[string]string) {
	e.t.Helper()
	names := make([]string, 0, len(tree))
	for n := range tree {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(e.dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			e.t.Fatal(err)
		}
		v := tree[n]
		var err error
		switch {
		case strings.HasSuffix(n, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "@"):
			os.Remove(p)
			err = os.Symlink(v[1:], p)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) scan() Result {
	e.t.Helper()
	res, err := e.s.Scan(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) scanPaths(paths ...string) Result {
	e.t.Helper()
	res, err := e.s.ScanPaths(context.Background(), paths)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// records returns every record of the folder by path.
func (e *env) records() map[string]index.Record {
	e.t.Helper()
	out := map[string]index.Record{}
	err := e.ix.Walk(context.Background(), "f", "", func(r index.Record) error {
		out[r.Path] = r
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// state summarises the records: path → "type[ deleted]@counter".
func (e *env) state() map[string]string {
	out := map[string]string{}
	for p, r := range e.records() {
		s := fmt.Sprintf("%s@%d", r.Type, r.Version.Get(local))
		if r.Deleted {
			s = "deleted@" + fmt.Sprint(r.Version.Get(local))
		}
		out[p] = s
	}
	return out
}

func (e *env) get(path string) index.Record {
	e.t.Helper()
	r, ok, err := e.ix.Get("f", path)
	if err != nil || !ok {
		e.t.Fatalf("Get(%q) = %v, %v", path, ok, err)
	}
	return r
}

func manifestOf(t *testing.T, data []byte) chunker.Manifest {
	t.Helper()
	m, err := chunker.Split(bytes.NewReader(data), chunker.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func checkState(t *testing.T, e *env, want map[string]string) {
	t.Helper()
	got := e.state()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: %q, want %q", p, got[p], w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected record %s: %q", p, g)
		}
	}
}

// logRecorder is a slog handler that keeps warnings.
type logRecorder struct {
	mu    sync.Mutex
	warns []string // "message path"
}

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	path := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "path" {
			path = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.warns = append(h.warns, r.Message+" "+path)
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, w := range h.warns {
		if strings.HasSuffix(w, " "+path) {
			n++
		}
	}
	return n
}

func TestFirstScan(t *testing.T) {
	e := newEnv(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 40_000) // 640 KB: several chunks
	e.write(map[string]string{
		"a.txt": "hello", "empty": "", "big.bin": string(big),
		"d/": "", "d/e/": "", "d/e/f.txt": "deep", "empty-dir/": "",
		"link": "@a.txt", "d/outlink": "@../../elsewhere",
	})
	if err := os.Chmod(filepath.Join(e.dir, "a.txt"), 0o640); err != nil {
		t.Fatal(err)
	}
	res := e.scan()
	checkState(t, e, map[string]string{
		"a.txt": "file@1", "empty": "file@1", "big.bin": "file@1", "d": "dir@1", "d/e": "dir@1",
		"d/e/f.txt": "file@1", "empty-dir": "dir@1", "link": "symlink@1", "d/outlink": "symlink@1",
	})
	if res.Stats.Scanned != 9 || res.Stats.Hashed != 4 || res.Stats.Changed != 9 || res.Stats.BytesHashed != int64(len(big)+5+4) {
		t.Errorf("stats %+v", res.Stats)
	}
	a := e.get("a.txt")
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(e.dir, "a.txt"), &st); err != nil {
		t.Fatal(err)
	}
	if a.Size != 5 || a.Mode != 0o640 || a.MTime != st.Mtim.Nano() || a.Inode != st.Ino || a.Device != uint64(st.Dev) ||
		a.UID != st.Uid || a.Origin != local || a.Stamp == 0 || !a.Manifest.Equal(manifestOf(t, []byte("hello"))) {
		t.Errorf("a.txt record %+v", a)
	}
	if b := e.get("big.bin"); len(b.Manifest.Chunks) < 3 || !b.Manifest.Equal(manifestOf(t, big)) {
		t.Errorf("big.bin has %d chunks, not the chunker's", len(b.Manifest.Chunks))
	}
	if l := e.get("d/outlink"); l.Target != "../../elsewhere" {
		t.Errorf("symlink target %q", l.Target)
	}
	if emp := e.get("empty"); emp.Size != 0 || len(emp.Manifest.Chunks) != 0 {
		t.Errorf("empty file record %+v", emp)
	}
	info, _ := e.ix.Info("f")
	if info.Files != 4 || info.Dirs != 3 || info.Symlinks != 2 || info.Bytes != int64(len(big)+9) || info.RootDevice == 0 {
		t.Errorf("folder info %+v", info)
	}
	// The first scan of a folder the index knew nothing of dates each
	// version by its mtime: it is what the disk held, not a new change.
	var last conflict.Stamp
	e.ix.Since(context.Background(), "f", 0, func(r index.Record) error {
		if want := conflict.MakeStamp(uint64(r.MTime/int64(time.Millisecond)), 0); r.Stamp != want {
			t.Errorf("%s: stamp %v, want its mtime %v", r.Path, r.Stamp, want)
		}
		last = max(last, r.Stamp)
		return nil
	})
	// Later changes are stamped by the clock, after everything before.
	e.write(map[string]string{"later.txt": "new"})
	chtimes(t, e.dir, "later.txt", time.Unix(0, 0).Add(time.Hour))
	e.scan()
	if r := e.get("later.txt"); r.Stamp <= last {
		t.Errorf("later.txt: stamp %v not after the first scan's %v (its old mtime must not date it)", r.Stamp, last)
	}
}

// TestRescanReadsNothing: a rescan of an unchanged folder opens no file.
func TestRescanReadsNothing(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a": "1", "d/b": "2", "d/c/": "", "l": "@a"})
	e.scan()
	opened := 0
	openat := e.s.openat
	e.s.openat = func(dirfd int, name string) (int, error) { opened++; return openat(dirfd, name) }
	info, _ := e.ix.Info("f")
	res := e.scan()
	if opened != 0 || res.Stats.Hashed != 0 || res.Stats.Changed != 0 || res.Stats.Skipped != 5 || res.Stats.Scanned != 5 {
		t.Errorf("rescan opened %d files, stats %+v", opened, res.Stats)
	}
	if after, _ := e.ix.Info("f"); after.Sequence != info.Sequence {
		t.Errorf("rescan moved the sequence from %d to %d", info.Sequence, after.Sequence)
	}
}

// TestChanges applies one change at a time and checks what the next scan
// records.
func TestChanges(t *testing.T) {
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir string)
		want   map[string]string // changed entries only
		hashed int64
		check  func(t *testing.T, e *env, before map[string]index.Record)
	}{
		{name: "content rewritten", hashed: 1,
			change: func(t *testing.T, dir string) { write(t, dir, "a", "other content") },
			want:   map[string]string{"a": "file@2"},
			check: func(t *testing.T, e *env, before map[string]index.Record) {
				if a := e.get("a"); !a.Manifest.Equal(manifestOf(t, []byte("other content"))) || a.Size != 13 {
					t.Errorf("a: %+v", a)
				}
			}},
		{name: "touched: new version, same chunks", hashed: 1,
			change: func(t *testing.T, dir string) { chtimes(t, dir, "a", old.Add(time.Minute)) },
			want:   map[string]string{"a": "file@2"},
			check: func(t *testing.T, e *env, before map[string]index.Record) {
				a := e.get("a")
				if !a.Manifest.Equal(before["a"].Manifest) || a.MTime != old.Add(time.Minute).UnixNano() {
					t.Errorf("touched a: %+v", a)
				}
			}},
		{name: "chmod: new version without reading", hashed: 0,
			change: func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "a"), 0o600) },
			want:   map[string]string{"a": "file@2"},
			check: func(t *testing.T, e *env, before map[string]index.Record) {
				if a := e.get("a"); a.Mode != 0o600 || !a.Manifest.Equal(before["a"].Manifest) {
					t.Errorf("chmod a: %+v", a)
				}
			}},
		{name: "identical copy on a new inode: refreshed, no version", hashed: 1,
			change: func(t *testing.T, dir string) {
				// Written beside and renamed over, as the engine and
				// many editors do: a new inode.
				write(t, dir, "a.new", "A")
				chtimes(t, dir, "a.new", old)
				if err := os.Rename(filepath.Join(dir, "a.new"), filepath.Join(dir, "a")); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]string{},
			check: func(t *testing.T, e *env, before map[string]index.Record) {
				a := e.get("a")
				if a.Sequence != before["a"].Sequence || a.Inode == before["a"].Inode {
					t.Errorf("refreshed a: sequence %d→%d inode %d→%d", before["a"].Sequence, a.Sequence, before["a"].Inode, a.Inode)
				}
			}},
		{name: "file deleted",
			change: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "a")) },
			want:   map[string]string{"a": "deleted@2"},
			check: func(t *testing.T, e *env, before map[string]index.Record) {
				locs, _ := e.ix.Locate(before["a"].Manifest.Chunks[0].Hash, 0)
				if len(locs) != 0 {
					t.Errorf("deleted file still located: %v", locs)
				}
			}},
		{name: "directory tree deleted",
			change: func(t *testing.T, dir string) { os.RemoveAll(filepath.Join(dir, "d")) },
			want:   map[string]string{"d": "deleted@2", "d/b": "deleted@2", "d/e": "deleted@2", "d/e/c": "deleted@2"}},
		{name: "file replaced by a directory",
			change: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, "a"))
				write(t, dir, "a/inner", "x")
			},
			hashed: 1,
			want:   map[string]string{"a": "dir@2", "a/inner": "file@1"}},
		{name: "directory replaced by a file",
			change: func(t *testing.T, dir string) {
				os.RemoveAll(filepath.Join(dir, "d"))
				write(t, dir, "d", "now a file")
			},
			hashed: 1,
			want:   map[string]string{"d": "file@2", "d/b": "deleted@2", "d/e": "deleted@2", "d/e/c": "deleted@2"}},
		{name: "symlink retargeted",
			change: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, "l"))
				os.Symlink("d/b", filepath.Join(dir, "l"))
			},
			want: map[string]string{"l": "symlink@2"},
			check: func(t *testing.T, e *env, _ map[string]index.Record) {
				if l := e.get("l"); l.Target != "d/b" {
					t.Errorf("target %q", l.Target)
				}
			}},
		{name: "symlink recreated with the same target: refreshed",
			change: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, "l"))
				os.Symlink("a", filepath.Join(dir, "l"))
			},
			want: map[string]string{}},
		{name: "new empty directory and empty file", hashed: 1,
			change: func(t *testing.T, dir string) {
				os.Mkdir(filepath.Join(dir, "new"), 0o755)
				write(t, dir, "new/empty", "")
			},
			want: map[string]string{"new": "dir@1", "new/empty": "file@1"}},
		{name: "directory chmod",
			change: func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "d"), 0o700) },
			want:   map[string]string{"d": "dir@2"}},
		{name: "directory mtime alone is nothing",
			change: func(t *testing.T, dir string) { chtimes(t, dir, "d", old.Add(time.Hour)) },
			want:   map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(map[string]string{"a": "A", "d/b": "B", "d/e/c": "C", "l": "@a"})
			chtimes(t, e.dir, "a", old)
			e.scan()
			before := e.records()
			want := e.state()
			for p, w := range tc.want {
				want[p] = w
			}
			tc.change(t, e.dir)
			res := e.scan()
			checkState(t, e, want)
			if res.Stats.Hashed != tc.hashed {
				t.Errorf("hashed %d files, want %d", res.Stats.Hashed, tc.hashed)
			}
			if len(res.Retry) != 0 {
				t.Errorf("retry %v", res.Retry)
			}
			if tc.check != nil {
				tc.check(t, e, before)
			}
			// And the scan after that changes nothing.
			if res := e.scan(); res.Stats.Changed+res.Stats.Deleted+res.Stats.Refreshed+res.Stats.Hashed != 0 {
				t.Errorf("second scan after the change: %+v", res.Stats)
			}
		})
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func chtimes(t *testing.T, dir, name string, when time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(dir, name), when, when); err != nil {
		t.Fatal(err)
	}
}

func TestIgnoreRules(t *testing.T) {
	e := newEnv(t, withIgnore("*.swp", "cache/", "/build", "!keep.swp"))
	e.write(map[string]string{
		"a.txt": "1", "a.swp": "x", "keep.swp": "k", "sub/b.swp": "x",
		"cache/x": "1", "cache/deep/y": "2", "sub/cache/z": "3", "build": "b", "sub/build": "kept",
		".lockstep.1234.tmp": "partial", "sub/.lockstep-stage/f": "staged",
	})
	res := e.scan()
	checkState(t, e, map[string]string{
		"a.txt": "file@1", "keep.swp": "file@1", "sub": "dir@1", "sub/build": "file@1",
	})
	// cache, cache/ in sub, a.swp, sub/b.swp, build: ignored, not descended.
	if res.Stats.Ignored != 5 || res.Stats.Scanned != 4 {
		t.Errorf("stats %+v", res.Stats)
	}
}

// TestIgnoredPathsAreNeverDeleted: a path that becomes ignored keeps its
// record, even when it then disappears.
func TestIgnoredPathsAreNeverDeleted(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a.log": "1", "logs/x": "2"})
	e.scan()
	m, _ := ignore.New([]string{"*.log", "logs/"})
	e.s.cfg.Ignore = m
	os.Remove(filepath.Join(e.dir, "a.log"))
	os.RemoveAll(filepath.Join(e.dir, "logs"))
	res := e.scan()
	if res.Stats.Deleted != 0 {
		t.Errorf("deleted %d ignored paths", res.Stats.Deleted)
	}
	checkState(t, e, map[string]string{"a.log": "file@1", "logs": "dir@1", "logs/x": "file@1"})
}

func TestSymlinksAreNeverFollowed(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	write(t, outside, "secret.txt", "outside the folder")
	write(t, outside, "sub/more.txt", "more")
	e.write(map[string]string{"in.txt": "in", "d/": ""})
	if err := os.Symlink(outside, filepath.Join(e.dir, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../out", filepath.Join(e.dir, "d", "rel")); err != nil {
		t.Fatal(err)
	}
	res := e.scan()
	checkState(t, e, map[string]string{"in.txt": "file@1", "d": "dir@1", "out": "symlink@1", "d/rel": "symlink@1"})
	if res.Stats.BytesHashed != 2 {
		t.Errorf("hashed %d bytes, want 2 (in.txt only)", res.Stats.BytesHashed)
	}
	// Nor through a path the watcher reports below a symlink.
	res = e.scanPaths("out/secret.txt", "out/sub", "d/rel/secret.txt")
	if res.Stats.Hashed != 0 || res.Stats.Changed != 0 {
		t.Errorf("scanning paths below a symlink: %+v", res.Stats)
	}
	for p := range e.records() {
		if strings.HasPrefix(p, "out/") || strings.HasPrefix(p, "d/rel/") {
			t.Errorf("%s is outside the folder", p)
		}
	}
}

// TestDirectorySwappedForSymlink: a directory replaced by a symlink
// between its parent's listing and its own is not followed, whether the
// link points inside the folder or out of it.
func TestDirectorySwappedForSymlink(t *testing.T) {
	for _, inside := range []bool{true, false} {
		t.Run(fmt.Sprintf("inside=%v", inside), func(t *testing.T) {
			e := newEnv(t)
			outside := t.TempDir()
			write(t, outside, "secret", "s")
			e.write(map[string]string{"d/x": "1", "other/secret": "s", "z": "1"})
			target := outside
			if inside {
				target = "other"
			}
			// The root is listed in name order by one reader: d is
			// seen as a directory, then opening z swaps it for a link,
			// before d itself is read.
			e.s.cfg.Readers = 1
			openat := e.s.openat
			e.s.openat = func(dirfd int, name string) (int, error) {
				if name == "z" {
					os.RemoveAll(filepath.Join(e.dir, "d"))
					os.Symlink(target, filepath.Join(e.dir, "d"))
				}
				return openat(dirfd, name)
			}
			res := e.scan()
			if _, ok := e.records()["d/secret"]; ok {
				t.Errorf("followed a symlink swapped in for a directory")
			}
			if !slices.Contains(res.Retry, "d") {
				t.Errorf("swapped directory not retried: %v %+v", res.Retry, res.Stats)
			}
			e.s.openat = openat
			e.scanPaths(res.Retry...)
			if got := e.state()["d"]; got != "symlink@2" {
				t.Errorf("d after the retry: %q", got)
			}
		})
	}
}

func TestUnreadableFile(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"ok": "1", "secret": "2", "d/also": "3"})
	openat := e.s.openat
	deny := "secret"
	e.s.openat = func(dirfd int, name string) (int, error) {
		if name == deny {
			return -1, unix.EACCES
		}
		return openat(dirfd, name)
	}
	res := e.scan()
	checkState(t, e, map[string]string{"ok": "file@1", "d": "dir@1", "d/also": "file@1"})
	if res.Stats.Errors != 1 || e.logs.count("secret") != 1 {
		t.Errorf("errors %d, warnings about secret %d", res.Stats.Errors, e.logs.count("secret"))
	}
	// A recorded file that becomes unreadable keeps its record.
	deny = "ok"
	write(t, e.dir, "ok", "changed")
	res = e.scan()
	if res.Stats.Errors != 1 || e.get("ok").Version.Get(local) != 1 || e.get("ok").Deleted {
		t.Errorf("unreadable recorded file: errors %d, record %+v", res.Stats.Errors, e.get("ok"))
	}
}

func TestFifoSkippedWithOneWarning(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a": "1"})
	if err := unix.Mkfifo(filepath.Join(e.dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res := e.scan()
		if res.Stats.Special != 1 {
			t.Errorf("special %d, want 1", res.Stats.Special)
		}
	}
	e.scanPaths("pipe")
	if n := e.logs.count("pipe"); n != 1 {
		t.Errorf("%d warnings about the fifo over 4 scans, want 1", n)
	}
	checkState(t, e, map[string]string{"a": "file@1"})
	// A recorded file replaced by a fifo is gone.
	os.Remove(filepath.Join(e.dir, "a"))
	unix.Mkfifo(filepath.Join(e.dir, "a"), 0o644)
	e.scan()
	checkState(t, e, map[string]string{"a": "deleted@2"})
}

// TestChangedWhileHashing mutates a file at points of its reading through
// the test seams: the file is retried, never recorded half read.
func TestChangedWhileHashing(t *testing.T) {
	for _, tc := range []struct {
		name string
		// mutate runs before the open (after the stat) or after the read.
		beforeOpen, afterRead bool
		mutate                func(p string)
	}{
		{"appended after the read", false, true, func(p string) { appendTo(p, "more") }},
		{"truncated after the read", false, true, func(p string) { os.Truncate(p, 1) }},
		{"rewritten in place after the read, same size", false, true, func(p string) {
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			f.WriteAt([]byte("X"), 0)
			f.Close()
		}},
		{"grown between stat and open", true, false, func(p string) { appendTo(p, "more") }},
		{"replaced between stat and open", true, false, func(p string) {
			os.Remove(p)
			os.WriteFile(p, []byte("version 1"), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(map[string]string{"f": "version 1", "other": "o"})
			e.scan()
			write(t, e.dir, "f", "version 2")
			before := e.get("f")
			p := filepath.Join(e.dir, "f")
			if tc.afterRead {
				e.s.afterRead = func(rel string) {
					if rel == "f" {
						tc.mutate(p)
					}
				}
			}
			if tc.beforeOpen {
				openat := e.s.openat
				e.s.openat = func(dirfd int, name string) (int, error) {
					if name == "f" {
						tc.mutate(p)
					}
					return openat(dirfd, name)
				}
			}
			res := e.scan()
			if !slices.Equal(res.Retry, []string{"f"}) || res.Stats.Retries != 1 {
				t.Errorf("retry %v, retries %d", res.Retry, res.Stats.Retries)
			}
			if after := e.get("f"); after.Sequence != before.Sequence {
				t.Errorf("half-read file recorded: %+v", after)
			}
			// Once it holds still, it is recorded.
			e.s.afterRead, e.s.openat = nil, defaultOpenat(e)
			if res := e.scanPaths(res.Retry...); res.Stats.Changed != 1 || len(res.Retry) != 0 {
				t.Errorf("rescan of the retried path: %+v %v", res.Stats, res.Retry)
			}
		})
	}
}

func defaultOpenat(e *env) func(int, string) (int, error) {
	s, _ := New(e.ix, e.s.cfg)
	return s.openat
}

func appendTo(p, s string) {
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(s)
	f.Close()
}

func TestRacyFileIsRetried(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.s.cfg.Now = func() time.Time { return now }
	e.write(map[string]string{"fresh": "just written", "old": "written long ago"})
	chtimes(t, e.dir, "fresh", now.Add(-time.Millisecond))
	chtimes(t, e.dir, "old", now.Add(-time.Second))
	res := e.scan()
	if !slices.Equal(res.Retry, []string{"fresh"}) {
		t.Errorf("retry %v, want [fresh]", res.Retry)
	}
	checkState(t, e, map[string]string{"old": "file@1"})
	now = now.Add(time.Second)
	e.scanPaths("fresh")
	checkState(t, e, map[string]string{"old": "file@1", "fresh": "file@1"})
}

func TestScanPaths(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a": "1", "d/b": "2", "d/sub/c": "3"})
	e.scan()
	// A new file in new directories: its parents are recorded too.
	write(t, e.dir, "n1/n2/new.txt", "new")
	res := e.scanPaths("n1/n2/new.txt")
	if res.Stats.Changed != 3 {
		t.Errorf("new file in new dirs: %+v", res.Stats)
	}
	// A removed directory, reported by path, takes its subtree along.
	os.RemoveAll(filepath.Join(e.dir, "d"))
	// A change deep inside, reported through its directory, absolute.
	write(t, e.dir, "n1/n2/new.txt", "changed")
	res = e.scanPaths("d", filepath.Join(e.dir, "n1"), "a", "a")
	if res.Stats.Deleted != 4 || res.Stats.Changed != 1 || res.Stats.Scanned != 4 {
		t.Errorf("stats %+v", res.Stats)
	}
	checkState(t, e, map[string]string{
		"a": "file@1", "d": "deleted@2", "d/b": "deleted@2", "d/sub": "deleted@2", "d/sub/c": "deleted@2",
		"n1": "dir@1", "n1/n2": "dir@1", "n1/n2/new.txt": "file@2",
	})
	// A path that never existed is nothing.
	if res := e.scanPaths("ghost/x"); res.Stats != (Stats{}) {
		t.Errorf("scanning a missing path: %+v", res.Stats)
	}
	if _, err := e.s.ScanPaths(context.Background(), []string{"../escape"}); err == nil {
		t.Error("a path outside the folder was accepted")
	}
	if _, err := e.s.ScanPaths(context.Background(), []string{"/elsewhere/x"}); err == nil {
		t.Error("an absolute path outside the folder was accepted")
	}
	if res := e.scanPaths(); res.Stats != (Stats{}) {
		t.Errorf("scanning no paths: %+v", res.Stats)
	}
}

func TestDeleteGuard(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a": "1", "b": "2", "d/c": "3", "d/e": "4"})
	e.scan()
	var gotDel, gotTotal int
	veto := errors.New("too many")
	e.s.cfg.DeleteGuard = func(folder string, deletions, total int) error {
		gotDel, gotTotal = deletions, total
		if folder != "f" {
			t.Errorf("guard asked about folder %q", folder)
		}
		return veto
	}
	os.Remove(filepath.Join(e.dir, "a"))
	os.RemoveAll(filepath.Join(e.dir, "d"))
	write(t, e.dir, "new", "n")
	res, err := e.s.Scan(context.Background())
	if !errors.Is(err, veto) {
		t.Fatalf("Scan error %v, want the guard's", err)
	}
	if gotDel != 4 || gotTotal != 5 {
		t.Errorf("guard saw %d deletions of %d, want 4 of 5", gotDel, gotTotal)
	}
	if res.Stats.Deleted != 0 {
		t.Errorf("%d deletions recorded despite the veto", res.Stats.Deleted)
	}
	checkState(t, e, map[string]string{"a": "file@1", "b": "file@1", "d": "dir@1", "d/c": "file@1", "d/e": "file@1", "new": "file@1"})
	e.s.cfg.DeleteGuard = func(string, int, int) error { return nil }
	e.scan()
	checkState(t, e, map[string]string{"a": "deleted@2", "b": "file@1", "d": "deleted@2", "d/c": "deleted@2", "d/e": "deleted@2", "new": "file@1"})
}

// TestVersionWrittenMeanwhile: the replication engine stores a version of
// a path while the scanner reads it; the scanner must not overwrite it.
func TestVersionWrittenMeanwhile(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"f": "mine"})
	e.scan()
	write(t, e.dir, "f", "mine, changed")
	remote := index.Record{Path: "f", Type: index.File, Version: conflict.Vector{{Node: 99, Value: 5}}, Origin: 99}
	e.s.afterRead = func(string) {
		if err := e.ix.Put("f", []index.Record{remote}); err != nil {
			t.Error(err)
		}
	}
	res := e.scan()
	if !slices.Equal(res.Retry, []string{"f"}) || res.Stats.Changed != 0 {
		t.Errorf("retry %v, stats %+v", res.Retry, res.Stats)
	}
	if got := e.get("f"); got.Origin != 99 {
		t.Errorf("the engine's version was overwritten: %+v", got)
	}
}

func TestRootMissing(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a": "1"})
	e.scan()
	os.RemoveAll(e.dir)
	if _, err := e.s.Scan(context.Background()); err == nil || !strings.Contains(err.Error(), e.dir) {
		t.Errorf("scan of a missing root: %v", err)
	}
	checkState(t, e, map[string]string{"a": "file@1"})
}

func TestLargeFileHashedInParallel(t *testing.T) {
	e := newEnv(t)
	data := make([]byte, largeFile+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.scan()
	if got := e.get("big"); !got.Manifest.Equal(manifestOf(t, data)) {
		t.Errorf("large file manifest differs from chunker.Split")
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	for i := range 200 {
		write(t, e.dir, fmt.Sprintf("d%d/f%d", i%10, i), "x")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	openat := e.s.openat
	e.s.openat = func(dirfd int, name string) (int, error) {
		if n.Add(1) == 20 {
			cancel()
		}
		return openat(dirfd, name)
	}
	_, err := e.s.Scan(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled scan: %v", err)
	}
	// The scanner is usable afterwards.
	e.s.openat = openat
	if res := e.scan(); res.Stats.Scanned != 210 {
		t.Errorf("scan after a cancelled one: %+v", res.Stats)
	}
}

func TestStatsAccumulateAndScansSerialise(t *testing.T) {
	e := newEnv(t)
	e.write(map[string]string{"a": "1", "b": "2"})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { e.s.Scan(context.Background()) })
		wg.Go(func() { e.s.ScanPaths(context.Background(), []string{"a"}) })
	}
	wg.Wait()
	st := e.s.Stats()
	if st.Changed != 2 || st.Scanned != 3*2+3*1 {
		t.Errorf("cumulative stats %+v", st)
	}
	checkState(t, e, map[string]string{"a": "file@1", "b": "file@1"})
}

// TestSetIgnoreTakesEffectFromNextScan: patterns given to SetIgnore apply
// from the next scan; a path they no longer ignore is recorded then.
func TestSetIgnoreTakesEffectFromNextScan(t *testing.T) {
	e := newEnv(t)
	m, _ := ignore.New([]string{"*.log"})
	e.s.SetIgnore(m)
	e.write(map[string]string{"a.log": "1", "b.html": "2"})
	e.scan()
	if _, ok := e.records()["a.log"]; ok {
		t.Fatal("a.log recorded although ignored")
	}
	e.s.SetIgnore(nil)
	e.scan()
	if _, ok := e.records()["a.log"]; !ok {
		t.Fatal("a.log not recorded once no longer ignored")
	}
}

func TestRecordRacy(t *testing.T) {
	tests := []struct {
		fresh, complete bool
		want            racyOutcome
	}{
		{false, false, racyRecord},
		{false, true, racyRecord},
		{true, false, racyRetry}, // its writer may only have paused
		{true, true, racyVerify}, // its writer is done: record, read again later
	}
	for _, tt := range tests {
		if got := recordRacy(tt.fresh, tt.complete); got != tt.want {
			t.Errorf("recordRacy(fresh=%v, complete=%v) = %d, want %d", tt.fresh, tt.complete, got, tt.want)
		}
	}
}

// TestCompleteRacyFile: a file its writer is done with is recorded at once
// though its mtime is racy; until a read finds its mtime old, the quick
// check does not vouch for it, so a write in the same timestamp tick (same
// size, same mtime) is still found.
func TestCompleteRacyFile(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.s.cfg.Now = func() time.Time { return now }
	e.write(map[string]string{"page.html": "version 1", "other": "x"})
	mtime := now.Add(-time.Millisecond)
	chtimes(t, e.dir, "page.html", mtime)
	chtimes(t, e.dir, "other", mtime)
	res, err := e.s.ScanPathsComplete(context.Background(), []string{"page.html", "other"}, []bool{true, false})
	if err != nil {
		t.Fatal(err)
	}
	checkState(t, e, map[string]string{"page.html": "file@1"})
	if !slices.Equal(res.Retry, []string{"other", "page.html"}) {
		t.Errorf("retry %v, want [other page.html]: other to record, page.html to verify", res.Retry)
	}
	if res.Stats.Retries != 1 {
		t.Errorf("%d retries counted, want 1 (other)", res.Stats.Retries)
	}
	if !e.s.Racy("page.html") {
		t.Fatal("page.html recorded with a racy mtime but not remembered as such")
	}

	// Another writer, within the same tick: same size, same mtime.
	e.write(map[string]string{"page.html": "version 2"})
	chtimes(t, e.dir, "page.html", mtime)
	res = e.scan()
	if res.Stats.Hashed != 2 {
		t.Errorf("hashed %d, want 2: page.html is read though its stat matches its record", res.Stats.Hashed)
	}
	// Still racy, and no writer known done: not recorded yet.
	checkState(t, e, map[string]string{"page.html": "file@1"})
	now = now.Add(time.Second)
	e.scanPaths("page.html", "other")
	checkState(t, e, map[string]string{"page.html": "file@2", "other": "file@1"})
	if got := e.get("page.html"); !got.Manifest.Equal(manifestOf(t, []byte("version 2"))) {
		t.Error("page.html recorded without the same-tick write")
	}
	if e.s.Racy("page.html") {
		t.Error("page.html read with an old mtime but still held racy")
	}
	// From now on the quick check vouches for it.
	if res := e.scanPaths("page.html"); res.Stats.Hashed != 0 {
		t.Errorf("hashed %d, want 0", res.Stats.Hashed)
	}
}

// TestRacyRecordedThenRemoved: a file recorded racy and removed leaves
// nothing behind.
func TestRacyRecordedThenRemoved(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.s.cfg.Now = func() time.Time { return now }
	e.write(map[string]string{"f": "x"})
	chtimes(t, e.dir, "f", now)
	if _, err := e.s.ScanPathsComplete(context.Background(), []string{"f"}, []bool{true}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(e.dir, "f"))
	e.scanPaths("f")
	if e.s.racyRecorded("f") {
		t.Error("a removed file is still held racy")
	}
}

// TestWritingFileLeftAlone: a file a writer still has open is not read;
// its old record stays and it is retried.
func TestWritingFileLeftAlone(t *testing.T) {
	var open atomic.Value
	open.Store("")
	e := newEnv(t, func(c *Config) {
		c.Writing = func(rel string, changed time.Time) bool { return rel == open.Load().(string) }
	})
	e.write(map[string]string{"upload.bin": "", "done.txt": "x"})
	open.Store("upload.bin")
	res := e.scan()
	checkState(t, e, map[string]string{"done.txt": "file@1"})
	if !slices.Equal(res.Retry, []string{"upload.bin"}) {
		t.Errorf("retry %v, want [upload.bin]", res.Retry)
	}
	open.Store("")
	e.scanPaths("upload.bin")
	checkState(t, e, map[string]string{"done.txt": "file@1", "upload.bin": "file@1"})
	// Written again: the old record stays while the writer has it open.
	e.write(map[string]string{"upload.bin": "more"})
	open.Store("upload.bin")
	e.scanPaths("upload.bin")
	if got := e.get("upload.bin"); got.Size != 0 {
		t.Errorf("upload.bin recorded at size %d while open", got.Size)
	}
}

// TestScanPathsDoneOverridesWriting: a file whose writer said it is done
// (through `lockstep wait`) is recorded though the watcher still counts it
// as being written, and though its mtime is racy; ScanPaths leaves it.
func TestScanPathsDoneOverridesWriting(t *testing.T) {
	now := time.Now()
	e := newEnv(t, func(c *Config) {
		c.Writing = func(string, time.Time) bool { return true }
		c.Now = func() time.Time { return now }
	})
	e.write(map[string]string{"upload.jpg": "image"})
	chtimes(t, e.dir, "upload.jpg", now.Add(-time.Millisecond))
	e.scanPaths("upload.jpg")
	checkState(t, e, map[string]string{})
	res, err := e.s.ScanPathsDone(context.Background(), []string{"upload.jpg"})
	if err != nil {
		t.Fatal(err)
	}
	checkState(t, e, map[string]string{"upload.jpg": "file@1"})
	if !slices.Contains(res.Retry, "upload.jpg") {
		t.Errorf("retry %v: a file recorded with a racy mtime must be read again later", res.Retry)
	}
}
