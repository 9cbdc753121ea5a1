package replica

import (
	"strings"
	"sync"
	"time"

	"lockstep/chunker"
	"lockstep/vfs"
)

// Serving small chunks. A chunk shorter than the chunker's minimum that
// starts at offset 0 is a whole file: no later request reuses what keeping
// that file open would keep (its record, read from the index, and the open
// file), and hashing the chunk (a few µs) costs less than reading the
// record. Such chunks — any chunk up to smallChunk bytes — are read and
// hashed. What is kept instead is the file's directory, open (vfs.Dir), so
// that opening each of the many small files of a directory is one
// openat(2) rather than one per component of its path.
//
// A kept directory handle was reached without a symlink when it was
// opened (vfs.Folder.OpenDir), and is opened again once it is
// servedRecheck old: a directory moved meanwhile is served from its old
// handle for that long at most. Every chunk read through it is hashed and
// compared with what the peer asked for, so nothing else than the content
// asked for can be served.

const (
	// smallChunk is the length up to which a chunk is read and hashed,
	// without its file being kept open (see above).
	smallChunk = uint32(16 << 10)
	// servedDirsMax is how many directory handles are kept for serving.
	servedDirsMax = 32
)

// servedDirs holds the directories of recently served small files open.
// It keeps them only while the serving sweep runs (Folder.serveLoop).
type servedDirs struct {
	mu     sync.Mutex
	active bool
	dirs   map[string]*servedDir
}

// servedDir is one kept directory; its fields after d are guarded by
// servedDirs.mu.
type servedDir struct {
	d       *vfs.Dir
	opened  time.Time
	last    time.Time
	refs    int
	dropped bool // out of the map: closed when refs reach 0
}

// acquire returns the open directory rel, opening it (through open) when
// it is not kept or was opened more than servedRecheck ago; nil when none
// are kept (inactive). The caller must release it.
func (s *servedDirs) acquire(rel string, now time.Time, open func(string) (*vfs.Dir, error)) (*servedDir, error) {
	s.mu.Lock()
	if !s.active {
		s.mu.Unlock()
		return nil, nil
	}
	if e := s.dirs[rel]; e != nil {
		if now.Sub(e.opened) <= servedRecheck {
			e.refs++
			e.last = now
			s.mu.Unlock()
			return e, nil
		}
		s.dropLocked(rel, e)
	}
	s.mu.Unlock()
	d, err := open(rel)
	if err != nil {
		return nil, err
	}
	e := &servedDir{d: d, opened: now, last: now, refs: 1}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch old := s.dirs[rel]; {
	case old != nil:
		// Opened meanwhile for another request: one is enough.
		e.dropped = true
	case !s.active || len(s.dirs) >= servedDirsMax && !s.evictLocked():
		e.dropped = true
	default:
		s.dirs[rel] = e
	}
	return e, nil
}

func (s *servedDirs) release(e *servedDir) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.dropped {
		e.d.Close()
	}
}

func (s *servedDirs) dropLocked(rel string, e *servedDir) {
	delete(s.dirs, rel)
	e.dropped = true
	if e.refs == 0 {
		e.d.Close()
	}
}

// evictLocked drops the least recently used directory not in use; false
// if every one is in use.
func (s *servedDirs) evictLocked() bool {
	p, ok := leastRecentIdle(s.dirs, (*servedDir).idle)
	if ok {
		s.dropLocked(p, s.dirs[p])
	}
	return ok
}

// idle reports when e was last used, and whether it is out of use.
func (e *servedDir) idle() (time.Time, bool) { return e.last, e.refs == 0 }

// sweep drops the directories idle since before cutoff.
func (s *servedDirs) sweep(cutoff time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range idleBefore(s.dirs, cutoff, (*servedDir).idle) {
		s.dropLocked(p, s.dirs[p])
	}
}

// setActive starts or stops keeping directories; stopping closes every
// one not in use (those in use are closed on release).
func (s *servedDirs) setActive(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = on
	if on {
		if s.dirs == nil {
			s.dirs = map[string]*servedDir{}
		}
		return
	}
	for p, e := range s.dirs {
		s.dropLocked(p, e)
	}
}

// count returns how many directories are kept.
func (s *servedDirs) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dirs)
}

// readSmallChunk reads the chunk ref at offset of path through the kept
// handle of path's directory and verifies it, like readLocalChunk.
func (f *Folder) readSmallChunk(path string, offset int64, ref chunker.Ref, buf []byte) ([]byte, error) {
	if err := vfs.CheckPath(path); err != nil {
		return nil, err
	}
	dir, name := ".", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, name = path[:i], path[i+1:]
	}
	e, err := f.servedDirs.acquire(dir, f.now(), func(rel string) (*vfs.Dir, error) { return f.fs.OpenDir(rel, false, 0) })
	if err != nil {
		return nil, err
	}
	if e == nil {
		return f.readLocalChunk(path, offset, ref, buf)
	}
	defer f.servedDirs.release(e)
	file, err := e.d.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return readVerified(file, path, offset, ref, buf)
}
