package replica

import (
	"io/fs"
	"syscall"
	"time"
)

// The puller's own renames come back from the watcher as changed paths.
// Scanning them again costs index lookups, a directory walk and a stat per
// file, only to find what the puller just recorded. The folder remembers
// the lstat of each file it put in place instead, and a watcher report of
// such a path is dropped when the file still has exactly that lstat, so
// that nothing happened to it since. A local edit made after the rename
// changes its ctime, size or mtime, and is scanned as usual.
const (
	// maxPlaced bounds how many files are remembered; past it, the
	// puller's files are scanned again as before.
	maxPlaced = 1 << 18
	// placedMinAge is how old a file's mtime must be for its report to be
	// dropped. A write in the same tick of the file system's clock as the
	// remembered lstat may leave the ctime as it was, but it also sets
	// the mtime to the present: a file whose mtime is in the past was not
	// written since.
	placedMinAge = time.Second
)

// placedStat is what the check compares of an lstat(2) result.
type placedStat struct {
	ino, dev           uint64
	size, mtime, ctime int64
	mode               uint32 // the whole st_mode: type and permissions
	uid, gid           uint32
}

func placedStatOf(fi fs.FileInfo) (placedStat, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return placedStat{}, false
	}
	return placedStatFrom(st), true
}

func placedStatFrom(st *syscall.Stat_t) placedStat {
	return placedStat{
		ino: st.Ino, dev: uint64(st.Dev),
		size:  st.Size,
		mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		mode:  st.Mode, uid: st.Uid, gid: st.Gid,
	}
}

// notePlaced remembers that the puller put rel in place and recorded it,
// as after shows it. scanMu must be held.
func (f *Folder) notePlaced(rel string, after fs.FileInfo) {
	st, ok := placedStatOf(after)
	if !ok {
		return
	}
	if f.placed == nil {
		f.placed = map[string]placedStat{}
	}
	if _, have := f.placed[rel]; !have && len(f.placed) >= maxPlaced {
		return
	}
	f.placed[rel] = st
}

// forgetPlaced drops every remembered file: a full scan looks at them all
// anyway. scanMu must be held.
func (f *Folder) forgetPlaced() { clear(f.placed) }

// dropPlaced removes from paths (and complete, nil or parallel to it) the
// files the puller put in place that are still exactly as it left them,
// each remembered path checked once, and the names under which the watcher
// reported the puller's unnamed files while they were written
// (vfs.Folder.IsUnnamed). scanMu must be held.
func (f *Folder) dropPlaced(paths []string, complete []bool) ([]string, []bool) {
	var keptPaths []string
	var keptComplete []bool
	dropped := 0
	for i, p := range paths {
		if f.fs.IsUnnamed(p) || f.unchangedPlaced(p) {
			if dropped == 0 {
				// Copy on the first drop: the caller's slices stay intact.
				keptPaths = append(make([]string, 0, len(paths)), paths[:i]...)
				if complete != nil {
					keptComplete = append(make([]bool, 0, len(complete)), complete[:i]...)
				}
			}
			dropped++
			continue
		}
		if dropped > 0 {
			keptPaths = append(keptPaths, p)
			if complete != nil && i < len(complete) {
				keptComplete = append(keptComplete, complete[i])
			}
		}
	}
	if dropped == 0 {
		return paths, complete
	}
	if complete == nil {
		keptComplete = nil
	}
	return keptPaths, keptComplete
}

// unchangedPlaced reports whether rel is a file the puller put in place
// and nothing changed since, and forgets it.
func (f *Folder) unchangedPlaced(rel string) bool {
	want, ok := f.placed[rel]
	if !ok {
		return false
	}
	delete(f.placed, rel)
	// One call: a match of device, inode and ctime is the very file,
	// however its path was resolved.
	st, err := f.fs.QuickLstat(rel)
	if err != nil {
		return false
	}
	got := placedStat{
		ino: st.Ino, dev: uint64(st.Dev),
		size:  st.Size,
		mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		mode:  st.Mode, uid: st.Uid, gid: st.Gid,
	}
	if got != want {
		return false
	}
	return time.Since(time.Unix(0, got.mtime)) >= placedMinAge
}
