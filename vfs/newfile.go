package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A file that does not exist yet at its path is written through CreateNew.
// Where the filesystem allows it (ext4, xfs, btrfs, tmpfs: O_TMPFILE), the
// file has no name at all until Commit links it into its directory, which
// also fails if anything took the name meanwhile. That costs less than
// creating a temp name and renaming it (BenchmarkCreateNew, 1 KiB files with
// their metadata: 39 against 52 µs per file on a journaled ext4, 17.5
// against 20 on tmpfs), leaves no temp name for a reader to see and nothing
// to clean up after a crash. Elsewhere the file gets a temp name and Commit
// renames it with RENAME_NOREPLACE.

// unnamedBudget bounds how many unnamed files may be open at once in the
// process: each holds a file descriptor from its creation to its Commit,
// which for a batch of small files is after the whole batch is written.
// Past it, new files get a temp name, which holds none. It is a quarter of
// the descriptor limit, at most 4096.
var unnamedBudget = sync.OnceValue(func() int64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int64(min(lim.Cur/4, 4096))
})

// unnamedOpen counts the unnamed files open now.
var unnamedOpen atomic.Int64

// noEmptyPathLink is set once linkat(2) with AT_EMPTY_PATH was refused for
// want of CAP_DAC_READ_SEARCH: unnamed files are then linked by their
// /proc/self/fd path, which needs no privilege.
var noEmptyPathLink atomic.Bool

// CreateNew is Create for a file that must not exist yet: Commit fails
// with an error matching fs.ErrExist when anything has the name by then,
// so no check right before it is needed. See above for how. perm is the
// mode Seal will give it: an unnamed file is made with it when the umask
// keeps it whole, which spares Seal a chmod(2) (nobody can open a file
// that has no name, so it need not start private).
func (d *Dir) CreateNew(name string, perm fs.FileMode) (*Temp, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !d.folder.noUnnamed.Load() {
		if unnamedOpen.Add(1) <= unnamedBudget() {
			made := fs.FileMode(0o600)
			if mask, ok := umask(); ok && perm&^fs.ModePerm == 0 && perm&mask == 0 {
				made = perm
			}
			fd, err := unix.Openat(d.fd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(made))
			runtime.KeepAlive(d.file)
			if err == nil {
				t := &Temp{dir: d, name: name, rel: join(d.rel, name), unnamed: true, noReplace: true, perm: made}
				var st unix.Stat_t
				if unix.Fstat(fd, &st) == nil {
					d.folder.unnamed.add(st.Ino)
					// Nobody else can open a file with no name: its owner
					// stays this one until Seal (Temp.ownedBy).
					t.ino, t.uid, t.gid = st.Ino, int(st.Uid), int(st.Gid)
				}
				t.file = os.NewFile(uintptr(fd), t.rel)
				return t, nil
			}
			unnamedOpen.Add(-1)
			// A filesystem or kernel without O_TMPFILE says so in one of
			// these ways; anything else is a real failure to create.
			if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
				return nil, fmt.Errorf("create %s: %w", join(d.rel, name), err)
			}
			d.folder.noUnnamed.Store(true)
		} else {
			unnamedOpen.Add(-1)
		}
	}
	t, err := d.Create(name)
	if err == nil {
		t.noReplace = true
	}
	return t, err
}

// CreateNew starts writing rel, which must not exist yet, in its
// directory, made if missing (see Dir.CreateNew).
func (ds *Dirs) CreateNew(rel string, perm fs.FileMode) (*Temp, error) {
	d, name, err := ds.Parent(rel, true)
	if err != nil {
		return nil, err
	}
	return d.CreateNew(name, perm)
}

// umask returns the process's file mode creation mask, read once from
// /proc/self/status (umask(2) can only be read by setting it, which would
// race with files being created meanwhile); ok is false where it cannot
// be read.
var umask = sync.OnceValues(func() (fs.FileMode, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, found := strings.CutPrefix(line, "Umask:"); found {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return fs.FileMode(m), err == nil
		}
	}
	return 0, false
})

// commitNew puts a temp file of CreateNew at its name, failing with
// fs.ErrExist if the name is taken. An unnamed file's lstat after the link
// is kept (Temp.Placed).
func (t *Temp) commitNew() error {
	if !t.unnamed {
		err := unix.Renameat2(t.dir.fd, t.tmp, t.dir.fd, t.name, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) {
			// The filesystem cannot refuse to replace: check, then rename.
			if _, err = t.dir.Lstat(t.name); err == nil {
				err = unix.EEXIST
			} else if errors.Is(err, fs.ErrNotExist) {
				err = unix.Renameat(t.dir.fd, t.tmp, t.dir.fd, t.name)
			}
		}
		runtime.KeepAlive(t.dir.file)
		return err
	}
	fd := int(t.file.Fd())
	if t.own && t.ino != 0 {
		t.claimed = t.dir.folder.own.note(t.rel, t.ino)
	}
	err := t.link(fd)
	if err != nil {
		if t.claimed {
			t.dir.folder.own.drop(t.rel)
			t.claimed = false
		}
		return err
	}
	if t.claimed {
		t.dir.folder.own.linked(t.rel)
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		t.placed = infoOf(t.name, &st)
	}
	return nil
}

// link links the unnamed file open as fd at its name.
func (t *Temp) link(fd int) error {
	var err error
	if !noEmptyPathLink.Load() {
		err = unix.Linkat(fd, "", t.dir.fd, t.name, unix.AT_EMPTY_PATH)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
			// Without CAP_DAC_READ_SEARCH the kernel refuses an empty path
			// (ENOENT): use the descriptor's name in /proc instead.
			if err = linkProc(fd, t.dir.fd, t.name); err == nil {
				noEmptyPathLink.Store(true)
			}
		}
	} else {
		err = linkProc(fd, t.dir.fd, t.name)
	}
	runtime.KeepAlive(t.dir.file)
	return err
}

func linkProc(fd, dirfd int, name string) error {
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
}

// futimens sets the access and modification times of an open file: the
// utimensat(2) call with no path, which x/sys/unix does not offer.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// The kernel names an unnamed file "#<inode number>" in the events that
// a watch on its directory reports (writes, metadata changes). inoRing
// remembers the inode numbers of a folder's latest unnamed files, so that
// those reports are told from a real file of that name without a look at
// the disk (Folder.IsUnnamed).
type inoRing struct {
	mu   sync.Mutex
	set  map[uint64]struct{}
	ring []uint64 // the latest inoRingSize numbers, oldest at next
	next int
}

// inoRingSize is how many unnamed files are remembered: more than a batch
// holds, so that the reports of a batch's files, which arrive up to a few
// seconds after them, still find theirs.
const inoRingSize = 1 << 16

func (r *inoRing) add(ino uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = make(map[uint64]struct{})
		r.ring = make([]uint64, 0, inoRingSize)
	}
	if _, ok := r.set[ino]; ok {
		return
	}
	if len(r.ring) < inoRingSize {
		r.ring = append(r.ring, ino)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = ino
		r.next = (r.next + 1) % inoRingSize
	}
	r.set[ino] = struct{}{}
}

func (r *inoRing) has(ino uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[ino]
	return ok
}

// IsUnnamed reports whether rel is the name under which a watch reports
// one of the folder's latest unnamed files ("#<inode>", see inoRing), and
// not a file a watcher should look at. A real file that happens to have
// such a name while an unnamed file has that inode number is missed by
// the watcher until the next scan: a name of this form is the kernel's,
// and a clash needs both at once.
func (f *Folder) IsUnnamed(rel string) bool {
	base := rel[strings.LastIndexByte(rel, '/')+1:]
	if len(base) < 2 || base[0] != '#' || base[1] < '0' || base[1] > '9' {
		return false
	}
	ino, err := strconv.ParseUint(base[1:], 10, 64)
	return err == nil && f.unnamed.has(ino)
}
