package scanner

import (
	"time"

	"golang.org/x/sys/unix"

	"lockstep/chunker"
	"lockstep/index"
)

// stat is what the scanner needs of an lstat(2) result.
type stat struct {
	kind         kind
	mode         uint32 // permission bits (0o7777)
	size         int64
	mtime, ctime int64 // nanoseconds since the Unix epoch
	ino, dev     uint64
	uid, gid     uint32
}

// kind is an entry's type on disk: one lockstep records, or another.
type kind uint8

const (
	kindFile kind = iota
	kindDir
	kindSymlink
	kindSpecial // socket, device, fifo: never recorded
)

func (k kind) indexType() index.Type {
	switch k {
	case kindDir:
		return index.Dir
	case kindSymlink:
		return index.Symlink
	}
	return index.File
}

func fromUnix(st *unix.Stat_t) stat {
	s := stat{
		mode:  st.Mode & 0o7777,
		size:  st.Size,
		mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		ino:   st.Ino,
		dev:   uint64(st.Dev),
		uid:   st.Uid,
		gid:   st.Gid,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		s.kind = kindFile
	case unix.S_IFDIR:
		s.kind = kindDir
	case unix.S_IFLNK:
		s.kind = kindSymlink
	default:
		s.kind = kindSpecial
	}
	return s
}

// action is what the scanner does with an entry found on disk.
type action uint8

const (
	skip       action = iota // unchanged: nothing to do
	hash                     // a file whose content may have changed: read it
	readTarget               // a symlink that may have changed: read its target
	version                  // record a new version from the stat alone
	refresh                  // rewrite local fields (inode, device) only
)

func (a action) String() string {
	return [...]string{"skip", "hash", "readTarget", "version", "refresh"}[a]
}

// live reports whether old is a stored record of a path that exists.
func live(old *index.Record) bool { return old != nil && !old.Deleted }

// sameOwnerMode reports whether the replicated metadata that a stat shows
// matches a record.
func sameOwnerMode(st stat, old *index.Record) bool {
	return st.mode == old.Mode && st.uid == old.UID && st.gid == old.GID
}

// decide is the quick check: from an entry's stat and its stored record
// (nil: none), what must be done. A file whose size, mtime, inode and
// device match its record is not read; if its mode or owner changed, that
// is a new version with the same chunks. A directory's mtime changes with
// its entries and is not compared: a directory's version changes with its
// mode and owner only.
func decide(st stat, old *index.Record) action {
	if !live(old) || old.Type != st.kind.indexType() {
		switch st.kind {
		case kindFile:
			return hash
		case kindSymlink:
			return readTarget
		}
		return version
	}
	switch st.kind {
	case kindFile:
		if st.size != old.Size || st.mtime != old.MTime || st.ino != old.Inode || st.dev != old.Device {
			return hash
		}
		if !sameOwnerMode(st, old) {
			return version
		}
	case kindDir:
		if !sameOwnerMode(st, old) {
			return version
		}
		if st.ino != old.Inode || st.dev != old.Device {
			return refresh
		}
	case kindSymlink:
		if st.mtime != old.MTime || st.ino != old.Inode || st.dev != old.Device {
			return readTarget
		}
	}
	return skip
}

// decideContent decides, once a file's content or a symlink's target is
// known, between a new version and a refresh of local fields: the same
// content and replicated metadata is not a new version. An mtime-only
// change (a touch) is a new version, with the same chunks, so that peers
// get the mtime.
func decideContent(st stat, m chunker.Manifest, target string, old *index.Record) action {
	if !live(old) || old.Type != st.kind.indexType() {
		return version
	}
	switch st.kind {
	case kindFile:
		if !old.Manifest.Equal(m) || !sameOwnerMode(st, old) || st.mtime != old.MTime {
			return version
		}
	case kindSymlink:
		// A symlink's mode is meaningless on Linux and its mtime is not
		// replicated; its version is its target (and owner).
		if target != old.Target || st.uid != old.UID || st.gid != old.GID {
			return version
		}
	}
	if st.ino == old.Inode && st.dev == old.Device && st.mtime == old.MTime {
		return skip
	}
	return refresh
}

// record builds the record of an entry from its stat and content. The
// version fields are the writer's.
func record(rel string, st stat, m chunker.Manifest, target string) index.Record {
	r := index.Record{
		Path:   rel,
		Type:   st.kind.indexType(),
		Mode:   st.mode,
		MTime:  st.mtime,
		Inode:  st.ino,
		Device: st.dev,
		UID:    st.uid,
		GID:    st.gid,
	}
	switch st.kind {
	case kindFile:
		r.Size = st.size
		r.Manifest = m
	case kindSymlink:
		r.Target = target
	}
	return r
}

// tombstone returns the record that says old's path was removed.
func tombstone(old *index.Record) index.Record {
	return index.Record{
		Path:    old.Path,
		Type:    old.Type,
		Mode:    old.Mode,
		MTime:   old.MTime,
		UID:     old.UID,
		GID:     old.GID,
		Deleted: true,
	}
}

// racyWindow is how recent a file's mtime may be for its content to be
// recorded. File timestamps come from a clock that advances in ticks of up
// to 10 ms: a file read within a tick of its last write could be written
// again with the same mtime and size, and the quick check would never see
// it. Such a file is not recorded but retried, so every recorded mtime is
// older than a tick and a later write changes it (SPEC guarantee 2: a
// change is announced once its file has stopped changing).
const racyWindow = 25 * time.Millisecond

// racy reports whether a file with this mtime, read at now, is too fresh to
// record. An mtime further in the future is not racy: no tick produced it.
func racy(mtime int64, now time.Time) bool {
	age := now.UnixNano() - mtime
	return age < int64(racyWindow) && age > -int64(racyWindow)
}
