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

// guessSpan is how many chunks next to a run of unchanged chunks
// GuessOffsets guesses for, on each side.
const guessSpan = 8

// GuessOffsets guesses where in the previous version of a file, base, the
// chunks of the new version, target, that base does not list may lie
// unchanged: after an edit, content-defined chunking takes a few chunks to
// fall back on the old cut points, and those chunks hold old bytes cut
// differently. Each chunk common to both versions fixes the shift between
// them; a new chunk within guessSpan chunks of a common one is guessed at
// that shift, from the common chunk before it and the one after it. The
// result maps a chunk's hash to its candidate offsets in base; a guess is
// only worth a local read that the chunk hash then confirms or refutes.
// Pure.
func GuessOffsets(base, target []chunker.Ref) map[chunker.Hash][]int64 {
	at := make(map[chunker.Ref]int64, len(base))
	var size int64
	for _, c := range base {
		if _, ok := at[c]; !ok {
			at[c] = size
		}
		size += int64(c.Length)
	}
	offs := make([]int64, len(target))
	shift := make([]int64, len(target))
	common := make([]bool, len(target))
	var off int64
	for i, c := range target {
		offs[i] = off
		if o, ok := at[c]; ok {
			common[i], shift[i] = true, o-off
		}
		off += int64(c.Length)
	}
	out := map[chunker.Hash][]int64{}
	add := func(i int, s int64) {
		c := target[i]
		o := offs[i] + s
		if o < 0 || o+int64(c.Length) > size {
			return
		}
		for _, have := range out[c.Hash] {
			if have == o {
				return
			}
		}
		out[c.Hash] = append(out[c.Hash], o)
	}
	// Forward from the last common chunk, then backward from the next.
	last := -1
	for i := range target {
		if common[i] {
			last = i
		} else if last >= 0 && i-last <= guessSpan {
			add(i, shift[last])
		}
	}
	next := -1
	for i := len(target) - 1; i >= 0; i-- {
		if common[i] {
			next = i
		} else if next >= 0 && next-i <= guessSpan {
			add(i, shift[next])
		}
	}
	return out
}
