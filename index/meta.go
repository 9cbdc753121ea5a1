package index

import (
	"encoding/binary"
	"fmt"
	"math"

	"lockstep/chunker"
)

// FolderInfo is what the index keeps about a folder besides its records.
// The counts are maintained with every write, in the same transaction, so
// status never scans.
type FolderInfo struct {
	// Epoch identifies this incarnation of the folder's index: random,
	// renewed by ResetFolder. A peer that sees it change starts over from
	// sequence 0.
	Epoch uint64
	// Sequence is the highest sequence assigned so far (0: none).
	Sequence uint64
	// Live entries by type, and tombstones.
	Files, Dirs, Symlinks, Deleted int64
	// Bytes is the total size of the live files.
	Bytes int64
	// RootDevice is the device of the folder root as recorded by
	// SetRootDevice (0: not recorded), for guards that notice a folder
	// whose file system was unmounted or replaced.
	RootDevice uint64
}

// Entries returns the number of live entries (not tombstones).
func (fi FolderInfo) Entries() int64 { return fi.Files + fi.Dirs + fi.Symlinks }

// count adds (sign +1) or removes (sign -1) r from the counts.
func (fi *FolderInfo) count(r *Record, sign int64) {
	switch {
	case r.Deleted:
		fi.Deleted += sign
	case r.Type == File:
		fi.Files += sign
		fi.Bytes += sign * r.Size
	case r.Type == Dir:
		fi.Dirs += sign
	case r.Type == Symlink:
		fi.Symlinks += sign
	}
}

const metaVersion = 1

func encodeMeta(fi *FolderInfo) []byte {
	b := make([]byte, 0, 64)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, fi.Epoch)
	for _, v := range []uint64{fi.Sequence, uint64(fi.Files), uint64(fi.Dirs), uint64(fi.Symlinks),
		uint64(fi.Deleted), uint64(fi.Bytes), fi.RootDevice} {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func decodeMeta(b []byte) (FolderInfo, error) {
	var fi FolderInfo
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != metaVersion {
		return fi, fmt.Errorf("unknown folder metadata version %d", v)
	}
	fi.Epoch = d.uint64("epoch")
	fi.Sequence = d.uvarint("sequence")
	fi.Files = int64(d.uvarintMax("files", math.MaxInt64))
	fi.Dirs = int64(d.uvarintMax("dirs", math.MaxInt64))
	fi.Symlinks = int64(d.uvarintMax("symlinks", math.MaxInt64))
	fi.Deleted = int64(d.uvarintMax("deleted", math.MaxInt64))
	fi.Bytes = int64(d.uvarintMax("bytes", math.MaxInt64))
	fi.RootDevice = d.uvarint("root device")
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return fi, d.err
}

// Progress is where replication with one peer stands for one folder.
type Progress struct {
	// Received is the last sequence of the peer's index that this node has
	// fully processed; PeerEpoch is the peer's index epoch it refers to.
	Received  uint64
	PeerEpoch uint64
	// Confirmed is the last sequence of this node's index that the peer has
	// confirmed holding.
	Confirmed uint64
}

const progressVersion = 1

func encodeProgress(p Progress) []byte {
	b := []byte{progressVersion}
	b = binary.AppendUvarint(b, p.Received)
	b = binary.BigEndian.AppendUint64(b, p.PeerEpoch)
	return binary.AppendUvarint(b, p.Confirmed)
}

func decodeProgress(b []byte) (Progress, error) {
	var p Progress
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != progressVersion {
		return p, fmt.Errorf("unknown progress version %d", v)
	}
	p.Received = d.uvarint("received")
	p.PeerEpoch = d.uint64("peer epoch")
	p.Confirmed = d.uvarint("confirmed")
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return p, d.err
}

// A pending entry keeps the chunk list a record had before a write too
// large for one transaction, until the chunk locations have been moved
// from the old list to the new one.
const pendingVersion = 1

func encodePending(refs []chunker.Ref) []byte {
	return appendRefs([]byte{pendingVersion}, refs)
}

func decodePending(b []byte) ([]chunker.Ref, error) {
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != pendingVersion {
		return nil, fmt.Errorf("unknown pending version %d", v)
	}
	refs := d.refs()
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return refs, d.err
}
