package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckPath(t *testing.T) {
	good := []string{"a", "a/b", "dir/file.txt", "ünï cödé/ space", ".htaccess", "a/x.lockstep"}
	for _, p := range good {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v, want nil", p, err)
		}
	}
	bad := []string{"", "/etc/passwd", "..", "../x", "a/../b", "a/./b", "./a", "a//b", "a/", "a\\b",
		"a\x00b", ".lockstep.123.tmp", "d/.lockstep-staging/x", strings.Repeat("x", 256), strings.Repeat("a/", 2049) + "a"}
	for _, p := range bad {
		err := CheckPath(p)
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("CheckPath(%q) = %v, want ErrUnsafePath", p, err)
		}
	}
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/abs", "a//b", ".lockstep.x", "a/./b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) != nil {
			return
		}
		// An accepted path stays inside any root it is joined to.
		joined := filepath.Join("/root/folder", p)
		if !strings.HasPrefix(joined, "/root/folder/") {
			t.Fatalf("accepted %q escapes: %q", p, joined)
		}
		if filepath.ToSlash(filepath.Clean(p)) != p {
			t.Fatalf("accepted unclean path %q", p)
		}
	})
}

func open(t *testing.T) (*Folder, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, dir
}

func TestCreateCommit(t *testing.T) {
	for _, sync := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			f, dir := open(t)
			tmp, err := f.Create("a/b/c.txt", 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(filepath.Base(tmp.tmp), TempPrefix) || !IsTemp(tmp.tmp) {
				t.Fatalf("temp name %q does not begin with %q", tmp.tmp, TempPrefix)
			}
			if _, err := tmp.File().Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			mtime := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
			if err := tmp.Seal(Meta{Mode: 0o640, MTime: mtime}, sync); err != nil {
				t.Fatal(err)
			}
			// Before the commit, the final name does not exist.
			if _, err := os.Stat(filepath.Join(dir, "a/b/c.txt")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("final name visible before commit: %v", err)
			}
			if err := tmp.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := f.Fsync("a/b"); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(dir, "a/b/c.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o640 || !fi.ModTime().Equal(mtime) || fi.Size() != 5 {
				t.Fatalf("committed file: mode %v mtime %v size %d", fi.Mode(), fi.ModTime(), fi.Size())
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "a/b"))
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries after commit, want 1 (temp file left behind?)", len(entries))
			}
		})
	}
}

func TestCommitNeedsSeal(t *testing.T) {
	f, dir := open(t)
	tmp, err := f.Create("x", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(); err == nil {
		t.Fatal("an unsealed temp file was committed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("failed commit left %v", entries)
	}
}

func TestFsync(t *testing.T) {
	f, dir := open(t)
	if err := os.MkdirAll(filepath.Join(dir, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rel string
		ok  bool
	}{
		{".", true},
		{"a", true},
		{"a/b", true},
		{"a/file", true},
		{"link", false},   // a symlink is not followed
		{"link/b", false}, // nor a symlink parent
		{"missing", false},
		{"../x", false},
	} {
		if err := f.Fsync(tc.rel); (err == nil) != tc.ok {
			t.Errorf("Fsync(%q) = %v, want ok %v", tc.rel, err, tc.ok)
		}
	}
}

// Starting writeback along the way leaves the content as written, and is
// refused once the temp file is closed.
func TestStartWriteback(t *testing.T) {
	f, dir := open(t)
	tmp, err := f.Create("x", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("lockstep"), 64<<10)
	half := len(data) / 2
	if _, err := tmp.File().WriteAt(data[half:], int64(half)); err != nil {
		t.Fatal(err)
	}
	if err := tmp.StartWriteback(); err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.File().WriteAt(data[:half], 0); err != nil {
		t.Fatal(err)
	}
	if err := tmp.StartWriteback(); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Seal(Meta{Mode: 0o644, MTime: time.Unix(1e9, 0)}, true); err != nil {
		t.Fatal(err)
	}
	if err := tmp.StartWriteback(); err == nil {
		t.Fatal("writeback started on a sealed (closed) temp file")
	}
	if err := tmp.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("content changed by writeback")
	}
}

func TestAbortRemovesTemp(t *testing.T) {
	f, dir := open(t)
	tmp, err := f.Create("x", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmp.Abort(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("abort left %v", entries)
	}
}

func TestSymlinkParentRefused(t *testing.T) {
	f, dir := open(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "inner")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"link/x", "inner/x"} {
		if _, err := f.Create(p, 0o755); err == nil {
			t.Errorf("Create(%q) through a symlink succeeded", p)
		}
		if err := f.Symlink(p, "target", 0o755); err == nil {
			t.Errorf("Symlink(%q) through a symlink succeeded", p)
		}
		if _, err := f.Open(p); err == nil {
			t.Errorf("Open(%q) through a symlink succeeded", p)
		}
	}
	if err := f.MkdirAll("link/sub", 0o755); !errors.Is(err, ErrSymlinkParent) {
		t.Errorf("MkdirAll through a symlink = %v, want ErrSymlinkParent", err)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Fatalf("something was written outside the folder: %v", entries)
	}
	entries, _ = os.ReadDir(filepath.Join(dir, "real"))
	if len(entries) != 0 {
		t.Fatalf("something was written through the inner link: %v", entries)
	}
}

func TestCommitReplacesSymlinkNotTarget(t *testing.T) {
	f, dir := open(t)
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "file")); err != nil {
		t.Fatal(err)
	}
	tmp, err := f.Create("file", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	tmp.File().Write([]byte("new"))
	if err := tmp.Seal(Meta{Mode: 0o644, MTime: time.Now()}, false); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Fatalf("file outside the folder changed to %q", b)
	}
	fi, _ := os.Lstat(filepath.Join(dir, "file"))
	if !fi.Mode().IsRegular() {
		t.Fatalf("symlink was not replaced by a regular file: %v", fi.Mode())
	}
}

func TestCommitRefusesDirectory(t *testing.T) {
	f, dir := open(t)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	tmp, err := f.Create("d", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmp.Seal(Meta{Mode: 0o644, MTime: time.Now()}, false); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(); err == nil {
		t.Fatal("commit over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("failed commit left %d entries, want only d", len(entries))
	}
}

func TestSymlinkAndRemove(t *testing.T) {
	f, dir := open(t)
	if err := f.Symlink("a/l", "../../etc/passwd", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Symlink("a/l", "other", 0o755); err != nil {
		t.Fatalf("replacing a symlink: %v", err)
	}
	if got, _ := os.Readlink(filepath.Join(dir, "a/l")); got != "other" {
		t.Fatalf("link target = %q, want other", got)
	}
	if err := f.Remove("a/l"); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove("a/l"); err != nil {
		t.Fatalf("removing a missing path: %v", err)
	}
	if err := f.Remove("nope/x"); err != nil {
		t.Fatalf("removing below a missing dir: %v", err)
	}
	if err := f.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("directory still there")
	}
}

func TestCopyOutAndSyncFS(t *testing.T) {
	f, dir := open(t)
	data := bytes.Repeat([]byte("conflict "), 10000)
	os.WriteFile(filepath.Join(dir, "loser"), data, 0o600)
	dst := filepath.Join(t.TempDir(), "kept")
	if err := f.CopyOut("loser", dst); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Fatal("copy is not byte-identical")
	}
	if err := f.CopyOut("loser", dst); err == nil {
		t.Fatal("CopyOut overwrote an existing conflict copy")
	}
	if err := f.SyncFS(); err != nil {
		t.Fatal(err)
	}
}

func TestRootFollowsRenamedDirectory(t *testing.T) {
	f, dir := open(t)
	before, err := f.RootInfo()
	if err != nil {
		t.Fatal(err)
	}
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(moved, dir)
	os.Mkdir(dir, 0o755)
	now, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, now) {
		t.Fatal("a replaced folder root looks the same as the original")
	}
	os.Remove(dir)
}

func TestQuickLstat(t *testing.T) {
	f, dir := open(t)
	if err := os.MkdirAll(filepath.Join(dir, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a/b/c.txt"), []byte("12345"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("c.txt", filepath.Join(dir, "a/b/link")); err != nil {
		t.Fatal(err)
	}
	st, err := f.QuickLstat("a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Lstat("a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	if sys := fi.Sys().(*syscall.Stat_t); st.Ino != sys.Ino || st.Size != 5 || st.Mode != sys.Mode {
		t.Errorf("QuickLstat = inode %d size %d mode %o, Lstat = inode %d mode %o", st.Ino, st.Size, st.Mode, sys.Ino, sys.Mode)
	}
	// The last component is not followed.
	if st, err := f.QuickLstat("a/b/link"); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Errorf("QuickLstat of a symlink = mode %o, %v; want the link itself", st.Mode, err)
	}
	if _, err := f.QuickLstat("a/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing entry: %v", err)
	}
	if _, err := f.QuickLstat("../x"); err == nil {
		t.Error("a path leaving the folder was accepted")
	}
}

// TestSealOwner: a temp file, named or unnamed, gets the owner asked for,
// whether it already had it or not, and keeps its setuid bit either way;
// also in a setgid directory, whose group a new file starts with.
func TestSealOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	f, dir := open(t)
	if err := os.Mkdir(filepath.Join(dir, "sgid"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "sgid"), 0, 4321); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "sgid"), 0o755|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	dirs := f.Dirs(0o755)
	defer dirs.Close()
	for _, tt := range []struct {
		name     string
		uid, gid int
	}{
		{"own", os.Geteuid(), os.Getegid()},
		{"other", 1234, 5678},
		{"other group", os.Geteuid(), 5678},
		{"unnamed own", os.Geteuid(), os.Getegid()},
		{"unnamed other", 1234, 5678},
		{"sgid/unnamed own", os.Geteuid(), os.Getegid()},
		{"sgid/unnamed dir group", os.Geteuid(), 4321},
	} {
		var tmp *Temp
		var err error
		if strings.Contains(tt.name, "unnamed") {
			tmp, err = dirs.CreateNew(tt.name, 0o755)
		} else {
			tmp, err = f.Create(tt.name, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		meta := Meta{Mode: 0o755 | fs.ModeSetuid, MTime: time.Unix(1_700_000_000, 0), Chown: true, UID: tt.uid, GID: tt.gid}
		if err := tmp.Seal(meta, false); err != nil {
			t.Fatal(err)
		}
		if err := tmp.Commit(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(dir, tt.name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != tt.uid || int(st.Gid) != tt.gid || fi.Mode() != 0o755|fs.ModeSetuid {
			t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", tt.name, st.Uid, st.Gid, fi.Mode(), tt.uid, tt.gid, 0o755|fs.ModeSetuid)
		}
	}
}

// TestDirVerify: a directory handle verifies while its path still leads to
// it, and not once the directory (or a parent) was moved away, replaced by
// another directory, by a file or by a symlink to it, or removed; at the
// root's level (one fstatat) as below it, with openat2 and without.
func TestDirVerify(t *testing.T) {
	for _, without := range []bool{false, true} {
		t.Run(fmt.Sprintf("noOpenat2=%v", without), func(t *testing.T) {
			was := noOpenat2.Load()
			noOpenat2.Store(without)
			t.Cleanup(func() { noOpenat2.Store(was) })
			testDirVerify(t)
		})
	}
}

func testDirVerify(t *testing.T) {
	for _, rel := range []string{"a", "p/a", "p/q/r/a"} {
		for _, change := range []string{"none", "moved", "replaced", "file", "symlink", "removed", "parent symlink"} {
			if change == "parent symlink" && rel == "a" {
				continue // no parent below the root
			}
			t.Run(rel+"/"+change, func(t *testing.T) {
				f, dir := open(t)
				d, err := f.OpenDir(rel, true, 0o755)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				p := filepath.Join(dir, rel)
				must := func(err error) {
					t.Helper()
					if err != nil {
						t.Fatal(err)
					}
				}
				switch change {
				case "moved":
					must(os.Rename(p, p+".old"))
				case "replaced":
					must(os.Rename(p, p+".old"))
					must(os.Mkdir(p, 0o755))
				case "file":
					must(os.Rename(p, p+".old"))
					must(os.WriteFile(p, nil, 0o644))
				case "symlink":
					must(os.Rename(p, p+".old"))
					must(os.Symlink(filepath.Base(p)+".old", p))
				case "removed":
					must(os.Remove(p))
				case "parent symlink":
					parent := filepath.Dir(p)
					must(os.Rename(parent, parent+".old"))
					must(os.Symlink(filepath.Base(parent)+".old", parent))
				}
				err = d.Verify()
				if (err == nil) != (change == "none") {
					t.Fatalf("Verify after %s: %v", change, err)
				}
			})
		}
	}
}

// BenchmarkDirVerify: the check each commit makes of its directory.
func BenchmarkDirVerify(b *testing.B) {
	for _, rel := range []string{"a", "p/q/a"} {
		b.Run(fmt.Sprintf("depth%d", strings.Count(rel, "/")+1), func(b *testing.B) {
			f, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			d, err := f.OpenDir(rel, true, 0o755)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			for b.Loop() {
				if err := d.Verify(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
