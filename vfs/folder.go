package vfs

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrSymlinkParent is returned when a parent directory of a path is a
// symlink: lockstep never writes through one.
var ErrSymlinkParent = errors.New("parent is a symlink")

// Folder is an open synced folder. Its methods are safe for concurrent use.
type Folder struct {
	root *os.Root
	// rootDir is the root directory open for the *at system calls that
	// os.Root does not offer.
	rootDir *os.File
	rootFd  int // rootDir's descriptor
	dir     string
	// noUnnamed is set once the filesystem refused an unnamed file
	// (O_TMPFILE): CreateNew then names its files.
	noUnnamed atomic.Bool
	unnamed   inoRing  // the latest unnamed files' inode numbers
	own       ownLinks // links claimed for the watcher (ownlink.go)
}

// Open opens the folder at dir. The folder keeps referring to the same
// directory even if dir is later renamed or replaced; callers that guard
// against a replaced root compare Root().Stat with a fresh os.Stat(dir).
func Open(dir string) (*Folder, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open folder: %w", err)
	}
	d, err := r.Open(".")
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("open folder: %w", err)
	}
	return &Folder{root: r, rootDir: d, rootFd: int(d.Fd()), dir: dir}, nil
}

// Dir returns the path the folder was opened with.
func (f *Folder) Dir() string { return f.dir }

// Close releases the folder's directory handle.
func (f *Folder) Close() error {
	f.rootDir.Close()
	return f.root.Close()
}

// RootInfo stats the folder root through the open handle.
func (f *Folder) RootInfo() (fs.FileInfo, error) { return f.root.Stat(".") }

// Lstat returns information about rel without following a final symlink.
func (f *Folder) Lstat(rel string) (fs.FileInfo, error) { return f.root.Lstat(rel) }

// QuickLstat returns the lstat(2) of rel in one system call from the
// folder root. Unlike Lstat it follows symlinks among rel's parent
// directories: use it only to compare an entry with one whose identity
// (device and inode) is known, never to decide where to write.
func (f *Folder) QuickLstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := CheckPath(rel); err != nil {
		return st, err
	}
	err := unix.Fstatat(f.rootFd, rel, &st, unix.AT_SYMLINK_NOFOLLOW)
	runtime.KeepAlive(f.rootDir)
	if err != nil {
		return st, &fs.PathError{Op: "lstat", Path: rel, Err: err}
	}
	return st, nil
}

// Readlink returns a symlink's target.
func (f *Folder) Readlink(rel string) (string, error) { return f.root.Readlink(rel) }

// Open opens rel for reading. It refuses symlinks, at the end or in a parent.
func (f *Folder) Open(rel string) (*os.File, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	// Each component is opened from the one before without following a
	// symlink: fewer calls than checking the parents and then opening
	// through os.Root, and no window between the check and the open.
	dirfd, parentFd := f.rootFd, -1
	defer func() {
		if parentFd >= 0 {
			unix.Close(parentFd)
		}
		runtime.KeepAlive(f.rootDir)
	}()
	start := 0
	for {
		i := strings.IndexByte(rel[start:], '/')
		if i < 0 {
			break
		}
		end := start + i
		fd, err := unix.Openat(dirfd, rel[start:end], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if fi, lerr := f.root.Lstat(rel[:end]); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
				return nil, fmt.Errorf("%s: %w", rel[:end], ErrSymlinkParent)
			}
			return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
		}
		if parentFd >= 0 {
			unix.Close(parentFd)
		}
		parentFd, dirfd, start = fd, fd, end+1
	}
	fd, err := unix.Openat(dirfd, rel[start:], unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// checkParents verifies that every parent directory of rel exists as a real
// directory, not a symlink. A missing parent is reported as fs.ErrNotExist.
func (f *Folder) checkParents(rel string) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	for i := 0; i < len(rel); i++ {
		if rel[i] != '/' {
			continue
		}
		dir := rel[:i]
		fi, err := f.root.Lstat(dir)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s: %w", dir, ErrSymlinkParent)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: parent is not a directory: %w", dir, syscall.ENOTDIR)
		}
	}
	return nil
}

// MkdirAll creates rel and any missing parents with mode perm, refusing to
// pass through symlinks. Existing directories are left as they are.
func (f *Folder) MkdirAll(rel string, perm fs.FileMode) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	end := 0
	for end < len(rel) {
		next := strings.IndexByte(rel[end+1:], '/')
		if next < 0 {
			end = len(rel)
		} else {
			end = end + 1 + next
		}
		dir := rel[:end]
		fi, err := f.root.Lstat(dir)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("mkdir %s: %s: %w", rel, dir, ErrSymlinkParent)
		case err == nil:
			return fmt.Errorf("mkdir %s: %s exists and is not a directory: %w", rel, dir, syscall.ENOTDIR)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if err := f.root.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// Meta is the metadata a file receives before it is renamed into place.
type Meta struct {
	Mode  fs.FileMode // permission bits (and setgid/sticky); type bits ignored
	MTime time.Time
	// UID and GID are applied when Chown is set (the daemon runs as root and
	// the folder's configuration asks for ownership to be kept or set).
	Chown    bool
	UID, GID int
}

// Temp is a file being written under a temporary name beside its target,
// or with no name at all (CreateNew). The owner writes it, calls Seal —
// which gives it its metadata and, when asked, flushes it — then Commit,
// or Abort at any point. A Temp is not safe for concurrent use.
type Temp struct {
	dir    *Dir
	ownDir bool // dir was opened for this file alone: close it when done
	file   *os.File
	rel    string // final path
	name   string // final name in dir
	tmp    string // temporary name in dir; empty when unnamed
	sealed bool
	// unnamed: an O_TMPFILE file, open until Commit or Abort, which
	// Commit links in. noReplace: Commit refuses to replace anything.
	unnamed, noReplace bool
	placed             fs.FileInfo // the file as Commit left it, if known
	// ino is an unnamed file's inode number, uid and gid its owner as
	// made (ino 0: unknown); own: Commit claims its link (OwnLink),
	// claimed: it did.
	ino          uint64
	uid, gid     int
	own, claimed bool
	// perm is the mode the file was made with, if it is known to be
	// exactly that: Seal changes it only if it must. Zero: unknown.
	perm fs.FileMode
}

// Create starts writing rel: it creates the parent directories if needed
// (with mode dirPerm) and an empty temporary file beside rel. A batch of
// files is cheaper to write through Dirs, which opens each directory once.
func (f *Folder) Create(rel string, dirPerm fs.FileMode) (*Temp, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	d, err := f.OpenDir(parent(rel), true, dirPerm)
	if err != nil {
		return nil, err
	}
	t, err := d.Create(rel[strings.LastIndexByte(rel, '/')+1:])
	if err != nil {
		d.Close()
		return nil, err
	}
	t.ownDir = true
	return t, nil
}

func tempName(dir string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := TempPrefix + "." + hex.EncodeToString(b[:]) + ".tmp"
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// File returns the open temporary file for writing (WriteAt, ReadFrom...).
func (t *Temp) File() *os.File { return t.file }

// StartWriteback asks the kernel to start writing the file's dirty pages to
// disk, without waiting for them: a large file written this way along the
// way leaves little for the flush at Seal, which would otherwise write it
// all at once at the end. It promises nothing about durability.
func (t *Temp) StartWriteback() error {
	rc, err := t.file.SyscallConn()
	if err != nil {
		return err
	}
	cerr := rc.Control(func(fd uintptr) {
		err = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
	return cmp.Or(cerr, err)
}

// Name returns the final path the temp file will take.
func (t *Temp) Name() string { return t.rel }

// Seal gives the temp file its final metadata (mode, owner, mtime) and
// closes it. With sync it then flushes the file, data and metadata, with
// fsync(2): once Commit has renamed it, syncing its directory
// makes it durable whole (Fsync). Without sync, the caller flushes the whole
// filesystem (SyncFS) before Commit, and again after it, which is cheaper
// than an fsync per file for a large batch. On error the caller aborts.
func (t *Temp) Seal(meta Meta, sync bool) error {
	if err := t.apply(meta); err != nil {
		return fmt.Errorf("seal %s: %w", t.rel, err)
	}
	if sync {
		if err := t.file.Sync(); err != nil {
			return fmt.Errorf("flush %s: %w", t.rel, err)
		}
	}
	// An unnamed file stays open: Commit links it in by its descriptor.
	if !t.unnamed {
		if err := t.file.Close(); err != nil {
			return fmt.Errorf("seal %s: %w", t.rel, err)
		}
	}
	t.sealed = true
	return nil
}

// Commit renames the sealed temp file over rel. It does not flush, so that
// a batch can share one flush (see Seal). On error the temp file is
// removed.
//
// The directory must still be the one the temp file was created in, at the
// same path and reached without symlinks (Dir.Verify); if it was moved or
// replaced meanwhile, nothing is renamed.
func (t *Temp) Commit() error {
	var err error
	if !t.sealed {
		err = errors.New("not sealed")
	}
	if err == nil {
		err = t.dir.Verify()
	}
	switch {
	case err != nil:
	case t.noReplace:
		if err = t.commitNew(); err != nil {
			op := "rename"
			if t.unnamed {
				op = "link"
			}
			err = &fs.PathError{Op: op, Path: t.rel, Err: err}
		}
	default:
		// rename(2) refuses to put a file over a directory (EISDIR).
		err = unix.Renameat(t.dir.fd, t.tmp, t.dir.fd, t.name)
		runtime.KeepAlive(t.dir.file)
		if errors.Is(err, syscall.EISDIR) {
			err = fmt.Errorf("%s is a directory", t.rel)
		} else if err != nil {
			err = &fs.PathError{Op: "rename", Path: t.rel, Err: err}
		}
	}
	if err != nil {
		t.Abort()
		return fmt.Errorf("commit %s: %w", t.rel, err)
	}
	if t.unnamed {
		t.closeUnnamed()
	}
	t.release()
	return nil
}

// Placed returns the committed file's lstat when Commit could take it
// without looking the name up again (an unnamed file's fstat after its
// link), or nil.
func (t *Temp) Placed() fs.FileInfo { return t.placed }

// Claimed reports whether Commit claimed the file's link for the watcher
// (OwnLink): its events will not be reported, if they are read in time.
func (t *Temp) Claimed() bool { return t.claimed }

// closeUnnamed closes an unnamed file and gives back its share of the
// descriptor budget.
func (t *Temp) closeUnnamed() {
	t.file.Close()
	t.unnamed = false
	unnamedOpen.Add(-1)
}

// release closes the temp file's directory if it was opened for it alone.
func (t *Temp) release() {
	if t.ownDir {
		t.dir.Close()
		t.ownDir = false
	}
}

// apply sets the open file's mode, owner and mtime, the mtime last.
func (t *Temp) apply(meta Meta) error {
	if mode := meta.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); mode != t.perm || mode == 0 {
		if err := t.file.Chmod(mode); err != nil {
			return err
		}
	}
	if meta.Chown && !t.ownedBy(meta.UID, meta.GID) {
		if err := t.file.Chown(meta.UID, meta.GID); err != nil {
			return err
		}
		// chown clears setuid/setgid bits: apply the mode once more.
		if meta.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			if err := t.file.Chmod(meta.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
				return err
			}
		}
	}
	// One utimensat(2) on the directory's handle (the temp name is in it),
	// or on the file itself when it has no name.
	ts := unix.Timespec{Nsec: unix.UTIME_OMIT}
	if !meta.MTime.IsZero() {
		ts = unix.NsecToTimespec(meta.MTime.UnixNano())
	}
	var err error
	if t.unnamed {
		err = futimens(int(t.file.Fd()), &[2]unix.Timespec{ts, ts})
	} else {
		err = unix.UtimesNanoAt(t.dir.fd, t.tmp, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		runtime.KeepAlive(t.dir.file)
	}
	if err != nil {
		return &fs.PathError{Op: "chtimes", Path: t.rel, Err: err}
	}
	return nil
}

// ownedBy reports whether the temp file already has owner uid and group
// gid, as a file created by the daemon for its own user often does: then
// a chown(2), which costs more than the fstat(2), would change nothing.
func (t *Temp) ownedBy(uid, gid int) bool {
	if t.unnamed && t.ino != 0 {
		return t.uid == uid && t.gid == gid
	}
	fi, err := t.file.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid && int(st.Gid) == gid
}

// Abort discards the temp file.
func (t *Temp) Abort() error {
	defer t.release()
	if t.unnamed {
		t.closeUnnamed() // it has no name: nothing to remove
		return nil
	}
	if t.tmp == "" {
		return nil // already committed or aborted
	}
	t.file.Close()
	if err := t.dir.root.Remove(t.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SyncFS flushes every file of the folder's filesystem with one syncfs(2):
// cheaper than an fsync per file when a batch of temp files was written.
func (f *Folder) SyncFS() error {
	d, err := f.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", f.dir, err)
	}
	return nil
}

// Fsync flushes the file or directory rel with fsync(2): its data and
// metadata, and for a directory the entries renamed, created or removed in
// it. "." is the folder root. A symlink is refused, at the end or in a
// parent.
func (f *Folder) Fsync(rel string) error {
	if rel != "." {
		if err := f.checkParents(rel); err != nil {
			return err
		}
	}
	fi, err := f.root.Lstat(rel)
	if err != nil {
		return err
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return fmt.Errorf("fsync %s in %s: not a file or directory", rel, f.dir)
	}
	d, err := f.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s in %s: %w", rel, f.dir, err)
	}
	return nil
}

// Symlink creates or replaces rel with a symlink to target, atomically: the
// link is made under a temporary name and renamed into place. The target is
// stored as given and never followed by lockstep.
func (f *Folder) Symlink(rel, target string, dirPerm fs.FileMode) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	dir := parent(rel)
	if dir != "." {
		if err := f.MkdirAll(dir, dirPerm); err != nil {
			return err
		}
	}
	if err := f.checkParents(rel); err != nil {
		return err
	}
	tmp := tempName(dir)
	if err := f.root.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	if fi, err := f.root.Lstat(rel); err == nil && fi.IsDir() {
		_ = f.root.Remove(tmp)
		return fmt.Errorf("symlink %s: a directory is in the way", rel)
	}
	if err := f.root.Rename(tmp, rel); err != nil {
		_ = f.root.Remove(tmp)
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	return nil
}

// Chmod sets rel's permission bits; rel must not be a symlink.
func (f *Folder) Chmod(rel string, mode fs.FileMode) error {
	if err := f.checkParents(rel); err != nil {
		return err
	}
	fi, err := f.root.Lstat(rel)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("chmod %s: is a symlink", rel)
	}
	return f.root.Chmod(rel, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}

// Chtimes sets rel's mtime (and atime to the same value).
func (f *Folder) Chtimes(rel string, mtime time.Time) error {
	if err := f.checkParents(rel); err != nil {
		return err
	}
	return f.root.Chtimes(rel, mtime, mtime)
}

// Lchown sets rel's owner without following a final symlink.
func (f *Folder) Lchown(rel string, uid, gid int) error {
	if err := f.checkParents(rel); err != nil {
		return err
	}
	return f.root.Lchown(rel, uid, gid)
}

// Remove deletes a file, symlink or empty directory. A missing path is not
// an error: the goal, its absence, holds.
func (f *Folder) Remove(rel string) error {
	if err := f.checkParents(rel); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := f.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// CopyOut copies the regular file rel to dst, a path outside the folder
// (the conflict store), flushing it, so that the copy is byte-identical and
// durable before the caller replaces rel.
func (f *Folder) CopyOut(rel, dst string) error {
	src, err := f.Open(rel)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copy out %s: not a regular file", rel)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("copy out %s: %w", rel, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}
