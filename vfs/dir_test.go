package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writeTemp creates rel through ds with content and seals it.
func writeTemp(t *testing.T, ds *Dirs, rel, content string) *Temp {
	t.Helper()
	tmp, err := ds.Create(rel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.File().WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Seal(Meta{Mode: 0o640, MTime: time.Unix(1_700_000_000, 5)}, false); err != nil {
		t.Fatal(err)
	}
	return tmp
}

func TestDirsCreateCommit(t *testing.T) {
	f, dir := open(t)
	ds := f.Dirs(0o750)
	defer ds.Close()
	if _, err := ds.Lstat("a/b/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Lstat under a missing directory = %v, want ErrNotExist", err)
	}
	for _, rel := range []string{"a/b/x", "a/b/y", "top"} {
		if err := writeTemp(t, ds, rel, "data of "+rel).Commit(); err != nil {
			t.Fatalf("commit %s: %v", rel, err)
		}
	}
	for _, rel := range []string{"a/b/x", "a/b/y", "top"} {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || string(b) != "data of "+rel {
			t.Fatalf("%s = %q, %v", rel, b, err)
		}
		fi, err := ds.Lstat(rel)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 || fi.ModTime().UnixNano() != 1_700_000_000_000_000_005 {
			t.Errorf("%s: mode %v mtime %v", rel, fi.Mode(), fi.ModTime())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "a/b")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("made directory: %v, %v", fi, err)
	}
	d1, err := ds.Dir("a/b", false)
	if err != nil {
		t.Fatal(err)
	}
	d2, _, err := ds.Parent("a/b/y", false)
	if err != nil || d1 != d2 {
		t.Fatalf("directory opened twice in one batch (%p, %p, %v)", d1, d2, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "a/b")); len(entries) != 2 {
		t.Fatalf("a/b holds %d entries, want 2", len(entries))
	}
}

// A directory replaced by a symlink while a batch holds it open: the files
// written into the old directory must not be renamed anywhere, least of all
// through the link.
func TestDirsRefuseSymlinkSwappedIn(t *testing.T) {
	for _, target := range []string{"outside", "inside"} {
		t.Run(target, func(t *testing.T) {
			f, dir := open(t)
			dest := t.TempDir()
			if target == "inside" {
				dest = filepath.Join(dir, "real")
				if err := os.Mkdir(dest, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			ds := f.Dirs(0o755)
			defer ds.Close()
			tmp := writeTemp(t, ds, "d/file", "new")
			if err := os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "moved")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(dest, filepath.Join(dir, "d")); err != nil {
				t.Fatal(err)
			}
			if err := tmp.Commit(); !errors.Is(err, ErrSymlinkParent) && !errors.Is(err, ErrDirMoved) {
				t.Fatalf("commit through a swapped-in symlink = %v, want refused", err)
			}
			if entries, _ := os.ReadDir(dest); len(entries) != 0 {
				t.Fatalf("written through the link: %v", entries)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "moved")); len(entries) != 0 {
				t.Fatalf("refused commit left %v in the old directory", entries)
			}
			// Later files of the batch are refused too.
			if tmp, err := ds.Create("d/other"); err == nil {
				tmp.Seal(Meta{Mode: 0o644, MTime: time.Now()}, false)
				if err := tmp.Commit(); err == nil {
					t.Fatal("a later commit into the swapped directory succeeded")
				}
			}
			if entries, _ := os.ReadDir(dest); len(entries) != 0 {
				t.Fatalf("written through the link: %v", entries)
			}
		})
	}
}

// A directory replaced by another real directory at the same path: the
// handle holds the old one, which is no longer where the file belongs.
func TestDirsRefuseReplacedDir(t *testing.T) {
	f, dir := open(t)
	ds := f.Dirs(0o755)
	defer ds.Close()
	tmp := writeTemp(t, ds, "d/file", "new")
	if err := os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(); !errors.Is(err, ErrDirMoved) {
		t.Fatalf("commit into a replaced directory = %v, want ErrDirMoved", err)
	}
	for _, d := range []string{"d", "old"} {
		if entries, _ := os.ReadDir(filepath.Join(dir, d)); len(entries) != 0 {
			t.Fatalf("%s holds %v after a refused commit", d, entries)
		}
	}
}

func TestOpenDirRefusesSymlinks(t *testing.T) {
	f, dir := open(t)
	if err := os.MkdirAll(filepath.Join(dir, "real/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	ds := f.Dirs(0o755)
	defer ds.Close()
	for _, rel := range []string{"link", "link/sub", "out", "out/new"} {
		if _, err := f.OpenDir(rel, false, 0); err == nil {
			t.Errorf("OpenDir(%q) through a symlink succeeded", rel)
		}
		if _, err := ds.Create(rel + "/f"); err == nil {
			t.Errorf("Create(%q) through a symlink succeeded", rel+"/f")
		}
	}
	for _, rel := range []string{"../x", "/abs", "a/../b", ".lockstep.x"} {
		if _, err := f.OpenDir(rel, true, 0o755); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("OpenDir(%q) = %v, want ErrUnsafePath", rel, err)
		}
	}
	d, err := f.OpenDir("real", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"sub/x", "..", ""} {
		if _, err := d.Create(name); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Create(%q) = %v, want ErrUnsafePath", name, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "real")); len(entries) != 1 {
		t.Fatalf("real holds %v", entries)
	}
}

func TestOpenRefusesSymlinks(t *testing.T) {
	f, dir := open(t)
	if err := os.MkdirAll(filepath.Join(dir, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a/b/c"), []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("c", filepath.Join(dir, "a/b/l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b", filepath.Join(dir, "a/lb")); err != nil {
		t.Fatal(err)
	}
	file, err := f.Open("a/b/c")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if n, _ := file.Read(b); string(b[:n]) != "c" {
		t.Fatalf("read %q", b[:n])
	}
	file.Close()
	if _, err := f.Open("a/b/l"); err == nil {
		t.Error("opened a symlink")
	}
	if _, err := f.Open("a/lb/c"); !errors.Is(err, ErrSymlinkParent) {
		t.Errorf("open through a symlinked parent = %v, want ErrSymlinkParent", err)
	}
	if _, err := f.Open("a/missing/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open under a missing directory = %v, want ErrNotExist", err)
	}
	if _, err := f.Open("a/b/c/d"); err == nil || errors.Is(err, ErrSymlinkParent) {
		t.Errorf("open under a file = %v, want an error other than ErrSymlinkParent", err)
	}
}

// Many writers share a batch's handles, as the puller's workers do.
func TestDirsConcurrent(t *testing.T) {
	f, dir := open(t)
	ds := f.Dirs(0o755)
	defer ds.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 8 {
				rel := fmt.Sprintf("d%d/f%d-%d", i%3, w, i)
				tmp, err := ds.Create(rel)
				if err == nil {
					_, err = tmp.File().WriteString(rel)
				}
				if err == nil {
					err = tmp.Seal(Meta{Mode: 0o644, MTime: time.Now()}, false)
				}
				if err == nil {
					err = tmp.Commit()
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	for i := range 3 {
		entries, _ := os.ReadDir(filepath.Join(dir, fmt.Sprintf("d%d", i)))
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("d%d", i), e.Name()))
			if string(b) != fmt.Sprintf("d%d/%s", i, e.Name()) {
				t.Errorf("%s holds %q", e.Name(), b)
			}
			n++
		}
	}
	if n != 64 {
		t.Fatalf("%d files, want 64", n)
	}
}

func TestDirsOpen(t *testing.T) {
	f, dir := open(t)
	outside := t.TempDir()
	for rel, content := range map[string]string{"a/b/c": "c", "a/b/d": "dd", "top": "top"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "c"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"a/b/l": "c", "a/lb": "b", "out": outside, "a/b/lout": filepath.Join(outside, "c")} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	ds := f.Dirs(0)
	defer ds.Close()
	for rel, want := range map[string]string{"a/b/c": "c", "a/b/d": "dd", "top": "top"} {
		file, err := ds.Open(rel)
		if err != nil {
			t.Fatalf("Open(%q): %v", rel, err)
		}
		b := make([]byte, 8)
		n, _ := file.ReadAt(b, 0)
		file.Close()
		if string(b[:n]) != want {
			t.Errorf("%s = %q, want %q", rel, b[:n], want)
		}
	}
	// Both files of a/b were opened from one handle.
	d1, err := ds.Dir("a/b", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.open) != 2 || ds.open["a/b"] != d1 {
		t.Errorf("open handles %v, want the root and a/b", ds.open)
	}
	for _, rel := range []string{"a/b/l", "a/b/lout", "a/lb/c", "out/c"} {
		if file, err := ds.Open(rel); err == nil {
			file.Close()
			t.Errorf("Open(%q) through or of a symlink succeeded", rel)
		}
	}
	for _, rel := range []string{"../x", "a/../top", "/abs", "a/b/../../top", ""} {
		if _, err := ds.Open(rel); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Open(%q) = %v, want ErrUnsafePath", rel, err)
		}
	}
	if _, err := ds.Open("a/missing/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open under a missing directory = %v, want ErrNotExist", err)
	}
	if _, err := ds.Open("a/b/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open of a missing file = %v, want ErrNotExist", err)
	}
}

// TestDirLstatLikeOS: Dir.Lstat describes an entry as os.Lstat does.
func TestDirLstatLikeOS(t *testing.T) {
	f, dir := open(t)
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("12345"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "file"), 0o640|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "sub"), 0o750|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := f.OpenDir(".", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"file", "sub", "link", "fifo"} {
		got, err := d.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got.Name() != want.Name() || got.Size() != want.Size() || got.Mode() != want.Mode() ||
			!got.ModTime().Equal(want.ModTime()) || got.IsDir() != want.IsDir() ||
			*got.Sys().(*syscall.Stat_t) != *want.Sys().(*syscall.Stat_t) {
			t.Errorf("%s: %v %v %v %v, want %v %v %v %v", name, got.Name(), got.Size(), got.Mode(), got.ModTime(),
				want.Name(), want.Size(), want.Mode(), want.ModTime())
		}
	}
	if _, err := d.Lstat("none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat of a missing entry = %v, want ErrNotExist", err)
	}
}

// TestLstatListed: the first question about a directory is an lstat; the
// second reads the listing, and names absent from it are then absent
// without a look at the disk (a file made after the listing is not seen:
// the answer is as old as the listing); present names are lstatted; a big
// directory is never listed.
func TestLstatListed(t *testing.T) {
	f, dir := open(t)
	for _, p := range []string{"d/a", "d/b", "big/a"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ds := f.Dirs(0o755)
	defer ds.Close()
	absent := func(rel string) bool {
		t.Helper()
		_, err := ds.LstatListed(rel)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err != nil
	}
	if !absent("d/x") {
		t.Fatal("d/x: found")
	}
	if err := os.WriteFile(filepath.Join(dir, "d/late"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if absent("d/a") { // the second question: the listing is read now
		t.Fatal("d/a: absent")
	}
	if err := os.WriteFile(filepath.Join(dir, "d/later"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !absent("d/later") {
		t.Fatal("d/later: looked up on the disk, want the listing's answer")
	}
	if absent("d/late") || absent("d/b") {
		t.Fatal("a name in the listing was absent")
	}
	fi, err := ds.LstatListed("d/b")
	if err != nil || fi.Size() != 3 {
		t.Fatalf("d/b: %v, %v; want its lstat", fi, err)
	}

	big, err := ds.Dir("big", false)
	if err != nil {
		t.Fatal(err)
	}
	big.size = listedMax + 1
	absent("big/x")
	absent("big/y")
	if err := os.WriteFile(filepath.Join(dir, "big/z"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if absent("big/z") {
		t.Fatal("big/z: a big directory was listed")
	}
	if _, err := ds.LstatListed("nodir/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: %v", err)
	}
}
