package replica

import (
	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/index"
	"lockstep/protocol"
)

// content identifies what a version holds, independent of metadata: two
// versions with equal content are interchangeable bytes (or the same link,
// or both directories), which lets concurrent identical writes merge.
func content(t index.Type, refs []chunker.Ref, target string) [32]byte {
	switch t {
	case index.Dir:
		return dirContent
	case index.Symlink:
		return chunker.Sum([]byte("lockstep symlink\x00" + target))
	}
	return chunker.Manifest{Chunks: refs}.Hash()
}

var dirContent = chunker.Sum([]byte("lockstep directory"))

// recordVersion returns what the conflict rule needs of a local record.
func recordVersion(r *index.Record) conflict.Version {
	v := conflict.Version{Vector: r.Version, Stamp: r.Stamp, Origin: r.Origin, Deleted: r.Deleted}
	if !r.Deleted {
		v.Content = content(r.Type, r.Manifest.Chunks, r.Target)
	}
	return v
}

// infoVersion returns what the conflict rule needs of a peer's announcement.
func infoVersion(fi *protocol.FileInfo) conflict.Version {
	v := conflict.Version{Vector: fi.Version, Stamp: fi.Stamp, Origin: fi.Origin, Deleted: fi.Deleted}
	if !fi.Deleted {
		v.Content = content(index.Type(fi.Type), fi.Chunks, fi.Target)
	}
	return v
}

// toInfo converts a local record into its announcement. Local-only fields
// (inode, device) stay behind.
func toInfo(r *index.Record) protocol.FileInfo {
	return protocol.FileInfo{
		Path:     r.Path,
		Type:     protocol.FileType(r.Type),
		Size:     uint64(r.Size),
		Mode:     r.Mode,
		ModTime:  r.MTime,
		UID:      r.UID,
		GID:      r.GID,
		Target:   r.Target,
		Chunks:   r.Manifest.Chunks,
		Version:  r.Version,
		Stamp:    r.Stamp,
		Origin:   r.Origin,
		Deleted:  r.Deleted,
		Sequence: r.Sequence,
	}
}

// fromInfo converts an announcement into a record to store once applied.
// The caller fills in the local fields and may replace the vector.
func fromInfo(fi *protocol.FileInfo) index.Record {
	return index.Record{
		Path:     fi.Path,
		Type:     index.Type(fi.Type),
		Size:     int64(fi.Size),
		Mode:     fi.Mode,
		MTime:    fi.ModTime,
		UID:      fi.UID,
		GID:      fi.GID,
		Target:   fi.Target,
		Manifest: chunker.Manifest{Chunks: fi.Chunks},
		Version:  fi.Version,
		Stamp:    fi.Stamp,
		Origin:   fi.Origin,
		Deleted:  fi.Deleted,
	}
}
