package replica

import (
	"lockstep/chunker"
	"lockstep/conflict"
)

// Location is a place on this node where a chunk's bytes can be read: a
// file of the folder and an offset in it. The bytes there are verified
// against the hash before use, since the file may have changed since it was
// indexed.
type Location struct {
	Path   string
	Offset int64
}

// Step is one distinct chunk of a file being assembled: where its bytes go
// and where they can come from, best first.
type Step struct {
	Ref chunker.Ref
	// Offsets lists every offset of the new file that holds this chunk; a
	// chunk repeated inside a file is obtained once and written many times.
	Offsets []int64
	// Local lists copies on this node's disk; tried before any peer.
	Local []Location
	// Peers lists the peers that announced the version, in the order to
	// try them. The order is rotated from chunk to chunk so that a file's
	// chunks are spread over every peer that holds it.
	Peers []conflict.NodeID
}

// Plan decides how to assemble a file with manifest m. locate returns the
// local copies of a chunk (nil when none); sources are the peers that hold
// the version. Plan is pure: it reads nothing but its arguments.
func Plan(m chunker.Manifest, locate func(chunker.Hash) []Location, sources []conflict.NodeID) []Step {
	steps := make([]Step, 0, len(m.Chunks))
	seen := make(map[chunker.Hash]int, len(m.Chunks))
	var off int64
	remote := 0
	for _, ref := range m.Chunks {
		if i, ok := seen[ref.Hash]; ok && steps[i].Ref.Length == ref.Length {
			steps[i].Offsets = append(steps[i].Offsets, off)
			off += int64(ref.Length)
			continue
		}
		s := Step{Ref: ref, Offsets: []int64{off}}
		if locate != nil {
			s.Local = locate(ref.Hash)
		}
		if len(s.Local) == 0 && len(sources) > 0 {
			s.Peers = rotate(sources, remote)
			remote++
		} else if len(sources) > 0 {
			// Keep the peers as a fallback for a local copy that turns
			// out to have changed.
			s.Peers = rotate(sources, 0)
		}
		seen[ref.Hash] = len(steps)
		steps = append(steps, s)
		off += int64(ref.Length)
	}
	return steps
}

func rotate(ids []conflict.NodeID, k int) []conflict.NodeID {
	out := make([]conflict.NodeID, len(ids))
	k %= len(ids)
	copy(out, ids[k:])
	copy(out[len(ids)-k:], ids[:k])
	return out
}
