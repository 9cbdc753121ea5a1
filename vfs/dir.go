package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrDirMoved is returned when a directory handle no longer is the
// directory at its path: the directory was renamed or removed, or a symlink
// or another entry took its place.
var ErrDirMoved = errors.New("directory is no longer at its path")

// Dir is a directory of a Folder opened once, so that the calls on its
// entries each resolve one name instead of walking the whole path again.
// It was reached without passing through a symlink; Verify checks that it
// still is the directory at its path, which Temp.Commit does before every
// rename. Its methods are safe for concurrent use.
type Dir struct {
	folder   *Folder
	rel      string   // "." for the folder root
	root     *os.Root // the directory itself
	file     *os.File // the directory, for the *at calls os.Root lacks
	fd       int      // file's descriptor, taken once (File.Fd is not free)
	dev, ino uint64
	size     int64 // st_size when opened

	// The directory's entry names, for LstatListed (list.go).
	listMu sync.Mutex
	asked  int                 // LstatListed calls so far
	names  map[string]struct{} // nil: not listed
}

// OpenDir opens the directory rel ("." for the folder root). With create,
// missing directories are made with mode perm, refusing to pass through
// symlinks (MkdirAll); without it a missing directory is fs.ErrNotExist.
func (f *Folder) OpenDir(rel string, create bool, perm fs.FileMode) (*Dir, error) {
	if rel != "." {
		if err := CheckPath(rel); err != nil {
			return nil, err
		}
		if create {
			if err := f.MkdirAll(rel, perm); err != nil {
				return nil, err
			}
		}
	}
	r := f.root
	if rel != "." {
		var err error
		if r, err = f.root.OpenRoot(rel); err != nil {
			return nil, err
		}
	}
	d := &Dir{folder: f, rel: rel, root: r, file: f.rootDir}
	var fi fs.FileInfo
	var err error
	if rel != "." {
		d.file, err = r.Open(".")
	}
	if err == nil {
		d.fd = int(d.file.Fd())
		fi, err = d.file.Stat()
	}
	if err == nil {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			err = errors.New("no device and inode")
		} else {
			d.dev, d.ino, d.size = uint64(st.Dev), st.Ino, st.Size
		}
	}
	if err == nil {
		// The handle was opened following the path as os.Root does, which
		// may pass through symlinks inside the folder: make sure that,
		// walked without them, the path leads to this very directory.
		err = d.Verify()
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open directory %s: %w", rel, err)
	}
	return d, nil
}

// Path returns the directory's path in the folder, "." for the root.
func (d *Dir) Path() string { return d.rel }

// Close releases the handle.
func (d *Dir) Close() error {
	if d.root == d.folder.root {
		return nil
	}
	if d.file != nil {
		d.file.Close()
	}
	return d.root.Close()
}

// Verify checks that the handle still is the directory at its path: every
// component of the path is a directory, none a symlink, and the last is
// the directory the handle holds.
func (d *Dir) Verify() error {
	if d.rel == "." {
		return nil
	}
	if !strings.Contains(d.rel, "/") {
		// A directory of the root: one fstatat(2) on the root's handle,
		// which follows no symlink, says it all.
		var st unix.Stat_t
		err := unix.Fstatat(d.folder.rootFd, d.rel, &st, unix.AT_SYMLINK_NOFOLLOW)
		runtime.KeepAlive(d.folder.rootDir)
		switch {
		case errors.Is(err, unix.ENOENT):
			return fmt.Errorf("%s: %w", d.rel, ErrDirMoved)
		case err != nil:
			return &fs.PathError{Op: "lstat", Path: d.rel, Err: err}
		case st.Mode&unix.S_IFMT != unix.S_IFDIR || uint64(st.Dev) != d.dev || st.Ino != d.ino:
			return fmt.Errorf("%s: %w", d.rel, ErrDirMoved)
		}
		return nil
	}
	if ok, err := d.verifyBeneath(); ok {
		return err
	}
	if err := d.folder.checkParents(d.rel); err != nil {
		return err
	}
	fi, err := d.folder.root.Lstat(d.rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", d.rel, ErrDirMoved)
		}
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || uint64(st.Dev) != d.dev || st.Ino != d.ino {
		return fmt.Errorf("%s: %w", d.rel, ErrDirMoved)
	}
	return nil
}

// noOpenat2 is set once openat2(2) was refused (a kernel before 5.6, or a
// sandbox that filters it): Verify then looks at each component.
var noOpenat2 atomic.Bool

// verifyBeneath is Verify in one openat2(2) that refuses every symlink on
// the way, and an fstat: the cost of a lookup whatever the depth, where
// looking at each component costs one per level (12.6 against ~3 µs at
// depth 3, BenchmarkDirVerify). ok is false when it cannot tell: openat2
// is missing, or the path does not lead to a directory without symlinks,
// for which the component walk says precisely what is in the way.
func (d *Dir) verifyBeneath() (ok bool, err error) {
	if noOpenat2.Load() {
		return false, nil
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(d.folder.rootFd, d.rel, &how)
	runtime.KeepAlive(d.folder.rootDir)
	switch {
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
		noOpenat2.Store(true)
		return false, nil
	case err != nil:
		return false, nil
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, nil
	}
	if uint64(st.Dev) != d.dev || st.Ino != d.ino {
		return true, fmt.Errorf("%s: %w", d.rel, ErrDirMoved)
	}
	return true, nil
}

// Lstat returns information about the entry name of the directory without
// following a symlink, with one fstatat(2). Its Sys is a *syscall.Stat_t.
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	var err error
	for {
		if err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.EINTR {
			break
		}
	}
	runtime.KeepAlive(d.file)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: join(d.rel, name), Err: err}
	}
	return infoOf(name, &st), nil
}

// infoOf wraps a stat(2) result as os.Lstat would.
func infoOf(name string, st *unix.Stat_t) fs.FileInfo {
	return &fileInfo{name: name, sys: syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		Mtim: syscall.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
		Ctim: syscall.Timespec{Sec: st.Ctim.Sec, Nsec: st.Ctim.Nsec},
	}}
}

// fileInfo is the fs.FileInfo of a stat(2), as package os makes it.
type fileInfo struct {
	name string
	sys  syscall.Stat_t
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.sys.Size }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(fi.sys.Mtim.Unix()) }
func (fi *fileInfo) IsDir() bool        { return fi.Mode().IsDir() }
func (fi *fileInfo) Sys() any           { return &fi.sys }

func (fi *fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(fi.sys.Mode & 0o777)
	switch fi.sys.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if fi.sys.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if fi.sys.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if fi.sys.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// Open opens the entry name of the directory for reading with one
// openat(2). It refuses a symlink.
func (d *Dir) Open(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	runtime.KeepAlive(d.file)
	rel := join(d.rel, name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// Create starts writing the entry name of the directory: it creates an
// empty temporary file beside it. Commit renames it into place.
func (d *Dir) Create(name string) (*Temp, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	tmp := tempName(".")
	// A file opened with openat(2) and wrapped by os.NewFile skips what
	// os.Root.OpenFile adds for files that could be polled.
	fd, err := unix.Openat(d.fd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	runtime.KeepAlive(d.file)
	if err != nil {
		return nil, fmt.Errorf("create temporary file for %s: %w", join(d.rel, name), err)
	}
	file := os.NewFile(uintptr(fd), join(d.rel, tmp))
	return &Temp{dir: d, file: file, name: name, tmp: tmp, rel: join(d.rel, name)}, nil
}

// checkName accepts one component of a path lockstep may use.
func checkName(name string) error {
	if strings.IndexByte(name, '/') >= 0 {
		return fmt.Errorf("%w %q: not a single name", ErrUnsafePath, name)
	}
	return CheckPath(name)
}

func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// Dirs keeps the directories of a batch of entries open, so that each is
// opened and checked once for the whole batch. It is safe for concurrent
// use. Close releases every handle.
type Dirs struct {
	folder *Folder
	perm   fs.FileMode
	mu     sync.Mutex
	open   map[string]*Dir
}

// Dirs returns an empty cache of directory handles; directories it creates
// get mode perm.
func (f *Folder) Dirs(perm fs.FileMode) *Dirs {
	return &Dirs{folder: f, perm: perm, open: map[string]*Dir{}}
}

// Dir returns the open directory rel ("." for the root), opening it —
// and, with create, making it and its missing parents — when it is not
// open yet. A missing directory is not remembered: it may be made later.
func (ds *Dirs) Dir(rel string, create bool) (*Dir, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d, ok := ds.open[rel]; ok {
		return d, nil
	}
	d, err := ds.folder.OpenDir(rel, create, ds.perm)
	if err != nil {
		return nil, err
	}
	ds.open[rel] = d
	return d, nil
}

// Parent returns the open directory holding rel and rel's last component.
func (ds *Dirs) Parent(rel string, create bool) (*Dir, string, error) {
	if err := CheckPath(rel); err != nil {
		return nil, "", err
	}
	i := strings.LastIndexByte(rel, '/')
	d, err := ds.Dir(parent(rel), create)
	if err != nil {
		return nil, "", err
	}
	return d, rel[i+1:], nil
}

// Lstat returns information about rel without following a final symlink.
// A missing parent directory is reported as fs.ErrNotExist.
func (ds *Dirs) Lstat(rel string) (fs.FileInfo, error) {
	d, name, err := ds.Parent(rel, false)
	if err != nil {
		return nil, err
	}
	return d.Lstat(name)
}

// Open opens rel for reading from its directory's handle (see Dir.Open),
// which is opened and checked the first time one of its entries is: like
// Folder.Open it refuses symlinks, at the end or in a parent, but a batch
// of files in few directories costs one openat(2) each instead of one per
// component of its path. A missing parent directory is fs.ErrNotExist.
func (ds *Dirs) Open(rel string) (*os.File, error) {
	d, name, err := ds.Parent(rel, false)
	if err != nil {
		return nil, err
	}
	return d.Open(name)
}

// Create starts writing rel in its directory, which is made if missing
// (see Dir.Create).
func (ds *Dirs) Create(rel string) (*Temp, error) {
	d, name, err := ds.Parent(rel, true)
	if err != nil {
		return nil, err
	}
	return d.Create(name)
}

// Close releases every handle. Temp files created through them must be
// committed or aborted first.
func (ds *Dirs) Close() error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	var first error
	for rel, d := range ds.open {
		if err := d.Close(); err != nil && first == nil {
			first = err
		}
		delete(ds.open, rel)
	}
	return first
}
