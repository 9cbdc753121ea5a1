package replica

import (
	"context"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"lockstep/chunker"
	"lockstep/index"
)

// Serving a peer's chunk requests. A peer names the chunk by hash and
// length, and hints where it lies: a path and an offset in that path's
// version. Reading and hashing every chunk served would cost the sender as
// much CPU per byte as the receiver's own check; instead the files being
// served are kept open, each with the record the index holds for it, and
// a chunk is served unhashed when the record says that this chunk lies at
// that offset and the file is still what the record describes: the same
// inode, size and mtime, read after the data (so a write during the read
// is seen), and not recorded with a racy mtime, which the quick check
// cannot vouch for. That is the check the scanner itself trusts to skip
// reading a file. A file that fails it is served as before, read and
// hashed per chunk. The receiver verifies every chunk whatever the sender
// did.

// RacyScanner is a Scanner that can tell which files it recorded with a
// modification time too fresh for the quick check to vouch for: such a
// file may have changed without its size or mtime changing. A Scanner
// that is not one gets every served chunk hashed.
type RacyScanner interface {
	// Racy reports whether the file at the relative path was recorded
	// with a racy mtime and not read again since. Safe for concurrent use.
	Racy(path string) bool
}

const (
	// servedMax is how many files are kept open for serving at most.
	servedMax = 64
	// servedMaxChunks bounds the chunk lists kept with them (about 44
	// bytes each, so about 46 MB; 64 GiB of files at the default chunk
	// size). A file whose list does not fit is served with hashing.
	servedMaxChunks = 1 << 20
	// servedIdle is how long a served file stays open after its last
	// request: a removed or replaced file's space is held that long.
	servedIdle = 5 * time.Second
	// servedRecheck is how long a file that could not be vouched for is
	// served with hashing before its record is looked at again.
	servedRecheck = time.Second
	// servedSweep is how often idle files are closed.
	servedSweep = time.Second
)

// servedFiles holds the files recently served to peers. It keeps files
// only while its sweep runs (Folder.Run); otherwise every request opens
// and hashes.
type servedFiles struct {
	mu     sync.Mutex
	active bool
	files  map[string]*servedFile
	chunks int // chunk refs held by the entries that count them
	// maxChunks is servedMaxChunks; a field for tests.
	maxChunks int
}

// servedFile is one file kept for serving. The fields before mu are set
// before ready is closed and not changed after.
type servedFile struct {
	ready chan struct{}
	// file is nil when the file could not be vouched for.
	file    *os.File
	fd      int
	size    int64
	mtime   int64
	ino     uint64
	offsets []int64 // offsets[i] is where chunks[i] starts
	chunks  []chunker.Ref
	built   time.Time

	// Guarded by servedFiles.mu.
	refs    int
	last    time.Time
	dropped bool // out of the map: closed when refs reach 0
	counted bool // its chunks count in servedFiles.chunks
}

// acquire returns the entry for path, building it with build when there
// is none; nil when no entry can be kept (inactive, or full of files in
// use). The caller must release it.
func (s *servedFiles) acquire(path string, now time.Time, build func(*servedFile)) *servedFile {
	s.mu.Lock()
	if !s.active {
		s.mu.Unlock()
		return nil
	}
	e := s.files[path]
	if e != nil && isClosed(e.ready) && e.file == nil && now.Sub(e.built) > servedRecheck {
		// Not vouched for a while ago: look again.
		s.dropLocked(path, e)
		e = nil
	}
	if e == nil {
		if len(s.files) >= servedMax && !s.evictLocked() {
			s.mu.Unlock()
			return nil
		}
		e = &servedFile{ready: make(chan struct{}), fd: -1, built: now}
		s.files[path] = e
		e.refs++
		e.last = now
		s.mu.Unlock()
		build(e)
		s.mu.Lock()
		s.account(e)
		s.mu.Unlock()
		close(e.ready)
		return e
	}
	e.refs++
	e.last = now
	s.mu.Unlock()
	<-e.ready
	return e
}

func (s *servedFiles) release(e *servedFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.dropped {
		e.close()
	}
}

// drop forgets e (if path still maps to it): its file no longer matches.
func (s *servedFiles) drop(path string, e *servedFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files[path] == e {
		s.dropLocked(path, e)
	}
}

func (s *servedFiles) dropLocked(path string, e *servedFile) {
	delete(s.files, path)
	e.dropped = true
	if e.counted {
		s.chunks -= len(e.chunks)
		e.counted = false
	}
	if e.refs == 0 {
		e.close()
	}
}

// account counts the chunk list of e, just built, making room for it by
// dropping idle entries; a list that does not fit is let go, and the file
// with it. Called before e.ready is closed, so e's fields may change.
func (s *servedFiles) account(e *servedFile) {
	if e.file == nil || e.dropped {
		return
	}
	limit := s.maxChunks
	if limit == 0 {
		limit = servedMaxChunks
	}
	for s.chunks+len(e.chunks) > limit && s.evictLocked() {
	}
	if s.chunks+len(e.chunks) > limit {
		e.file.Close()
		e.file, e.fd, e.offsets, e.chunks = nil, -1, nil, nil
		return
	}
	s.chunks += len(e.chunks)
	e.counted = true
}

// evictLocked drops the least recently used entry not in use; false if
// every entry is in use.
func (s *servedFiles) evictLocked() bool {
	p, ok := leastRecentIdle(s.files, (*servedFile).idle)
	if ok {
		s.dropLocked(p, s.files[p])
	}
	return ok
}

// idle reports when e was last used, and whether it is out of use.
func (e *servedFile) idle() (time.Time, bool) { return e.last, e.refs == 0 }

// leastRecentIdle returns the key of the entry of m out of use for the
// longest time (idle tells when an entry was last used and whether it is
// in use); false if every entry is in use.
func leastRecentIdle[E any](m map[string]E, idle func(E) (time.Time, bool)) (string, bool) {
	var key string
	var oldest time.Time
	found := false
	for k, e := range m {
		if last, ok := idle(e); ok && (!found || last.Before(oldest)) {
			key, oldest, found = k, last, true
		}
	}
	return key, found
}

// idleBefore returns the keys of the entries of m out of use since before
// cutoff.
func idleBefore[E any](m map[string]E, cutoff time.Time, idle func(E) (time.Time, bool)) []string {
	var keys []string
	for k, e := range m {
		if last, ok := idle(e); ok && last.Before(cutoff) {
			keys = append(keys, k)
		}
	}
	return keys
}

// sweep drops the entries idle since before cutoff.
func (s *servedFiles) sweep(cutoff time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range idleBefore(s.files, cutoff, (*servedFile).idle) {
		s.dropLocked(p, s.files[p])
	}
}

// setActive starts or stops keeping files; stopping closes every file not
// in use (those in use are closed on release).
func (s *servedFiles) setActive(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = on
	if on {
		if s.files == nil {
			s.files = map[string]*servedFile{}
		}
		return
	}
	for p, e := range s.files {
		s.dropLocked(p, e)
	}
}

// count returns how many files are kept, and how many of them open.
func (s *servedFiles) count() (kept, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.files {
		kept++
		if isClosed(e.ready) && e.file != nil {
			open++
		}
	}
	return kept, open
}

func (e *servedFile) close() {
	if e.file != nil {
		e.file.Close()
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// unchanged reports whether the open file is still what its record
// describes.
func (e *servedFile) unchanged() bool {
	var st syscall.Stat_t
	if err := syscall.Fstat(e.fd, &st); err != nil {
		return false
	}
	return st.Size == e.size && st.Mtim.Nano() == e.mtime && st.Ino == e.ino
}

// serveLoop keeps served files while ctx lasts, closing the idle ones.
func (f *Folder) serveLoop(ctx context.Context) {
	f.served.setActive(true)
	defer f.served.setActive(false)
	f.servedDirs.setActive(true)
	defer f.servedDirs.setActive(false)
	t := time.NewTicker(servedSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.served.sweep(f.now().Add(-servedIdle))
			f.servedDirs.sweep(f.now().Add(-servedIdle))
		}
	}
}

// buildServed opens path for serving if the index's record of it can be
// trusted for its content (see above); otherwise e is left without a file.
func (f *Folder) buildServed(path string, e *servedFile) {
	rec, have, err := f.ix.Get(f.id, path)
	if err != nil || !have || rec.Deleted || rec.Type != index.File || len(rec.Manifest.Chunks) == 0 {
		return
	}
	rs, ok := f.scan.(RacyScanner)
	if !ok || rs.Racy(path) {
		return
	}
	file, err := f.fs.Open(path)
	if err != nil {
		return
	}
	var st syscall.Stat_t
	fd := int(file.Fd())
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG ||
		st.Size != rec.Size || st.Mtim.Nano() != rec.MTime || rec.Inode != 0 && st.Ino != rec.Inode {
		file.Close()
		return
	}
	offsets := make([]int64, len(rec.Manifest.Chunks))
	var off int64
	for i, c := range rec.Manifest.Chunks {
		offsets[i] = off
		off += int64(c.Length)
	}
	if off != rec.Size {
		file.Close()
		return
	}
	e.file, e.fd = file, fd
	e.size, e.mtime, e.ino = st.Size, st.Mtim.Nano(), st.Ino
	e.offsets, e.chunks = offsets, rec.Manifest.Chunks
}

// readServed reads the chunk ref at offset of path without hashing it, if
// the file's record vouches for it there; ok is false otherwise, and the
// caller reads and hashes.
func (f *Folder) readServed(path string, offset int64, ref chunker.Ref, buf []byte) (data []byte, ok bool) {
	e := f.served.acquire(path, f.now(), func(e *servedFile) { f.buildServed(path, e) })
	if e == nil {
		return nil, false
	}
	defer f.served.release(e)
	if e.file == nil {
		return nil, false
	}
	i, found := slices.BinarySearch(e.offsets, offset)
	if !found || e.chunks[i] != ref {
		return nil, false
	}
	if cap(buf) < int(ref.Length) {
		buf = make([]byte, ref.Length)
	}
	buf = buf[:ref.Length]
	// The stat after the read: a write that began before it ended has
	// moved the mtime by then.
	if _, err := e.file.ReadAt(buf, offset); err != nil || !e.unchanged() {
		f.served.drop(path, e)
		return nil, false
	}
	f.Counters.ChunksServedUnhashed.Add(1)
	return buf, true
}
