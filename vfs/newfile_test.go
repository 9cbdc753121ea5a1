package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newFileModes runs a test of CreateNew with an unnamed file, with one
// linked by its /proc path (as without CAP_DAC_READ_SEARCH), and with a
// named temp file (a filesystem without O_TMPFILE).
func newFileModes(t *testing.T, run func(t *testing.T, f *Folder, dir string, wantUnnamed bool)) {
	for _, mode := range []string{"unnamed", "unnamed-proc-link", "named"} {
		t.Run(mode, func(t *testing.T) {
			f, dir := open(t)
			if mode == "named" {
				f.noUnnamed.Store(true)
			}
			if mode == "unnamed-proc-link" {
				was := noEmptyPathLink.Load()
				noEmptyPathLink.Store(true)
				t.Cleanup(func() { noEmptyPathLink.Store(was) })
			}
			before := unnamedOpen.Load()
			run(t, f, dir, mode != "named")
			if n := unnamedOpen.Load(); n != before {
				t.Errorf("unnamed files counted open: %d, want %d", n, before)
			}
		})
	}
}

func TestCreateNewCommit(t *testing.T) {
	newFileModes(t, func(t *testing.T, f *Folder, dir string, wantUnnamed bool) {
		ds := f.Dirs(0o755)
		defer ds.Close()
		tmp, err := ds.CreateNew("a/b/c.txt", 0o640)
		if err != nil {
			t.Fatal(err)
		}
		if tmp.unnamed != wantUnnamed {
			t.Fatalf("unnamed = %v, want %v", tmp.unnamed, wantUnnamed)
		}
		if _, err := tmp.File().Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		mtime := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
		if err := tmp.Seal(Meta{Mode: 0o640, MTime: mtime}, true); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Join(dir, "a/b"))
		if wantUnnamed && len(entries) != 0 {
			t.Fatalf("an unnamed file shows in its directory before its commit: %v", entries)
		}
		if _, err := os.Stat(filepath.Join(dir, "a/b/c.txt")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("final name visible before commit: %v", err)
		}
		if err := tmp.Commit(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(dir, "a/b/c.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o640 || !fi.ModTime().Equal(mtime) || fi.Size() != 5 {
			t.Fatalf("committed file: mode %v mtime %v size %d", fi.Mode(), fi.ModTime(), fi.Size())
		}
		if data, _ := os.ReadFile(filepath.Join(dir, "a/b/c.txt")); string(data) != "hello" {
			t.Fatalf("committed file holds %q", data)
		}
		if entries, _ := os.ReadDir(filepath.Join(dir, "a/b")); len(entries) != 1 {
			t.Fatalf("directory holds %v after commit, want the file alone", entries)
		}
		// An unnamed file's commit knows its lstat, ctime included.
		if p := tmp.Placed(); wantUnnamed {
			want, got := fi.Sys().(*syscall.Stat_t), p.Sys().(*syscall.Stat_t)
			if got.Ino != want.Ino || got.Ctim != want.Ctim || got.Size != want.Size || got.Nlink != 1 {
				t.Fatalf("Placed: ino %d ctime %v size %d nlink %d, lstat: ino %d ctime %v size %d",
					got.Ino, got.Ctim, got.Size, got.Nlink, want.Ino, want.Ctim, want.Size)
			}
		} else if p != nil {
			t.Fatalf("Placed of a named temp file = %v, want nil", p)
		}
		if err := tmp.Abort(); err != nil {
			t.Fatalf("Abort after Commit: %v", err)
		}
		t.Logf("euid %d: unnamed files linked by their /proc path: %v", os.Geteuid(), noEmptyPathLink.Load())
		if _, err := os.Stat(filepath.Join(dir, "a/b/c.txt")); err != nil {
			t.Fatalf("Abort after Commit removed the file: %v", err)
		}
	})
}

// A file, directory or symlink that takes the name while the new file is
// written is left alone: the commit fails with fs.ErrExist.
func TestCreateNewRefusesTakenName(t *testing.T) {
	for _, kind := range []string{"file", "dir", "symlink"} {
		t.Run(kind, func(t *testing.T) {
			newFileModes(t, func(t *testing.T, f *Folder, dir string, _ bool) {
				tmp, err := f.Dirs(0o755).CreateNew("x", 0o644)
				if err != nil {
					t.Fatal(err)
				}
				tmp.File().Write([]byte("remote"))
				if err := tmp.Seal(Meta{Mode: 0o644}, false); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(dir, "x")
				switch kind {
				case "file":
					err = os.WriteFile(p, []byte("local"), 0o644)
				case "dir":
					err = os.Mkdir(p, 0o755)
				case "symlink":
					err = os.Symlink("elsewhere", p)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := tmp.Commit(); !errors.Is(err, fs.ErrExist) {
					t.Fatalf("Commit over a %s made meanwhile = %v, want fs.ErrExist", kind, err)
				}
				fi, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				if kind == "file" {
					if data, _ := os.ReadFile(p); string(data) != "local" {
						t.Fatalf("the local file now holds %q", data)
					}
				}
				if got := fi.Mode().Type(); (kind == "dir") != (got == fs.ModeDir) || (kind == "symlink") != (got == fs.ModeSymlink) {
					t.Fatalf("%s replaced: now %v", kind, got)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 1 {
					t.Fatalf("folder holds %v, want %s alone (temp file left behind?)", entries, kind)
				}
			})
		})
	}
}

func TestCreateNewAbort(t *testing.T) {
	newFileModes(t, func(t *testing.T, f *Folder, dir string, _ bool) {
		ds := f.Dirs(0o755)
		defer ds.Close()
		for i, sealed := range []bool{false, true} {
			tmp, err := ds.CreateNew(fmt.Sprintf("f%d", i), 0o644)
			if err != nil {
				t.Fatal(err)
			}
			tmp.File().Write([]byte("data"))
			if sealed {
				if err := tmp.Seal(Meta{Mode: 0o644}, false); err != nil {
					t.Fatal(err)
				}
			}
			if err := tmp.Abort(); err != nil {
				t.Fatal(err)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("aborted new files left %v", entries)
		}
	})
}

// Past the descriptor budget, new files are named: nothing fails.
func TestCreateNewBudget(t *testing.T) {
	f, dir := open(t)
	ds := f.Dirs(0o755)
	defer ds.Close()
	was := unnamedOpen.Load()
	unnamedOpen.Store(unnamedBudget())
	defer unnamedOpen.Store(was)
	tmp, err := ds.CreateNew("x", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if tmp.unnamed || tmp.tmp == "" {
		t.Fatalf("a new file past the budget is unnamed (%v) or has no temp name (%q)", tmp.unnamed, tmp.tmp)
	}
	if err := tmp.Seal(Meta{Mode: 0o644}, false); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err != nil {
		t.Fatal(err)
	}
	if n := unnamedOpen.Load(); n != unnamedBudget() {
		t.Fatalf("count moved from %d to %d", unnamedBudget(), n)
	}
}

// An unnamed file's kernel name ("#<inode>") is recognised; other names
// of that form, and names merely like it, are not.
func TestIsUnnamed(t *testing.T) {
	f, _ := open(t)
	tmp, err := f.Dirs(0o755).CreateNew("d/x", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Abort()
	if !tmp.unnamed {
		t.Skip("this filesystem has no O_TMPFILE: no unnamed files to recognise") // printed with -v
	}
	fi, err := tmp.File().Stat()
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	for rel, want := range map[string]bool{
		fmt.Sprintf("d/#%d", ino):   true,
		fmt.Sprintf("#%d", ino):     true, // the directory is not part of it
		fmt.Sprintf("d/#%d", ino+1): false,
		fmt.Sprintf("d/#%dx", ino):  false,
		fmt.Sprintf("d/#+%d", ino):  false,
		fmt.Sprintf("d/%d", ino):    false,
		"#":                         false, "d/#": false, "": false,
	} {
		if got := f.IsUnnamed(rel); got != want {
			t.Errorf("IsUnnamed(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestInoRingForgetsOldest(t *testing.T) {
	var r inoRing
	for i := range uint64(inoRingSize + 10) {
		r.add(i)
	}
	for _, c := range []struct {
		ino  uint64
		want bool
	}{{0, false}, {9, false}, {10, true}, {inoRingSize + 9, true}, {inoRingSize + 10, false}} {
		if got := r.has(c.ino); got != c.want {
			t.Errorf("has(%d) = %v, want %v", c.ino, got, c.want)
		}
	}
	if len(r.set) != inoRingSize {
		t.Errorf("%d numbers remembered, want %d", len(r.set), inoRingSize)
	}
}

// A new file ends with the mode Seal gives it, whether it was made with
// it (the umask keeps it whole) or changed to it.
func TestCreateNewMode(t *testing.T) {
	f, dir := open(t)
	ds := f.Dirs(0o755)
	defer ds.Close()
	for i, perm := range []fs.FileMode{0o644, 0o640, 0o600, 0o755, 0o777, 0o666, 0o400, 0o000, 0o755 | fs.ModeSetgid, 0o4755&^0o4000 | fs.ModeSetuid} {
		rel := fmt.Sprintf("f%d", i)
		tmp, err := ds.CreateNew(rel, perm)
		if err != nil {
			t.Fatal(err)
		}
		if err := tmp.Seal(Meta{Mode: perm}, false); err != nil {
			t.Fatal(err)
		}
		if err := tmp.Commit(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid); got != perm {
			t.Errorf("made with %v: mode %v", perm, got)
		}
	}
}

func TestUmask(t *testing.T) {
	mask, ok := umask()
	if !ok {
		t.Fatal("umask unreadable from /proc/self/status")
	}
	old := syscall.Umask(int(mask))
	if fs.FileMode(old) != mask {
		t.Errorf("umask() = %o, the process has %o", mask, old)
	}
}

// TestCreateNewUnprivileged runs the CreateNew tests as an unprivileged
// user (nobody) when the tests run as root: without CAP_DAC_READ_SEARCH the
// kernel may refuse linkat(2) with an empty path, and unnamed files are
// then linked by their /proc/self/fd name.
func TestCreateNewUnprivileged(t *testing.T) {
	if os.Getenv("LOCKSTEP_VFS_UNPRIVILEGED") != "" || os.Geteuid() != 0 {
		t.Skip("already unprivileged: the other CreateNew tests cover it") // printed with -v
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// t.TempDir makes a private directory above dir: open both to nobody.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary must be reachable by nobody.
	bin := filepath.Join(dir, "vfs.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := dir; p != "/"; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by other users: cannot run as nobody", p) // printed with -v
		}
	}
	cmd := exec.Command(bin, "-test.run", "^(TestCreateNew(Commit|RefusesTakenName|Abort|Mode)|TestIsUnnamed)$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+dir, "LOCKSTEP_VFS_UNPRIVILEGED=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestCreateNewCommit") {
		t.Fatalf("as nobody, TestCreateNewCommit did not pass:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "linked by their /proc path") {
			t.Log(strings.TrimSpace(line))
			break
		}
	}
}
