package protocol

import (
	"fmt"

	"lockstep/chunker"
)

// FeatureChunkDelta in Hello.Features says that the sender accepts chunk
// lists written as differences (FileInfo.Delta) and keeps a DeltaWindow per
// folder of the connection to resolve them.
const FeatureChunkDelta uint64 = 1 << 0

// Bounds of the lists a DeltaWindow keeps. Both sides of a connection apply
// the same rule, so a sender knows which bases its peer still holds.
const (
	// DeltaMinChunks is the shortest list kept: shorter lists are always
	// sent in full, a difference would save little.
	DeltaMinChunks = 8
	// DeltaWindowRefs bounds the chunk references a window keeps (about
	// 2.3 MiB, the list of a file of about 4.5 GiB at the default chunk
	// sizes): the least recently announced lists are dropped beyond it.
	DeltaWindowRefs = 64 << 10
	// maxListChunks is the longest list a difference may produce: no longer
	// than a full list that fits in one frame.
	maxListChunks = MaxPayload / minChunkRefSize
)

// ChunkDelta is a file's chunk list written as a difference from a base
// list, the one last announced for the same path on the same connection and
// folder, named by its manifest hash (chunker.Manifest.Hash). Ops rebuild
// the list in order.
type ChunkDelta struct {
	Base chunker.Hash
	Ops  []DeltaOp
}

// DeltaOp is one step of a ChunkDelta: Count chunks of the base from index
// From when Refs is empty, otherwise the chunks Refs themselves.
type DeltaOp struct {
	From  uint32
	Count uint32
	Refs  []chunker.Ref
}

// DiffChunks writes target as a difference from base: runs of chunks that
// appear in base in the same order are copied from it, the rest are
// listed. Apply(base) of the result returns target.
func DiffChunks(base, target []chunker.Ref) ChunkDelta {
	d := ChunkDelta{Base: chunker.Manifest{Chunks: base}.Hash()}
	at := make(map[chunker.Ref]int, len(base))
	for i := len(base) - 1; i >= 0; i-- {
		at[base[i]] = i // the first occurrence wins
	}
	lit := -1 // start of the pending literal run in target, or -1
	flush := func(end int) {
		if lit >= 0 {
			d.Ops = append(d.Ops, DeltaOp{Refs: target[lit:end:end]})
			lit = -1
		}
	}
	for i := 0; i < len(target); {
		j, ok := at[target[i]]
		if !ok {
			if lit < 0 {
				lit = i
			}
			i++
			continue
		}
		flush(i)
		n := 1
		for i+n < len(target) && j+n < len(base) && target[i+n] == base[j+n] {
			n++
		}
		d.Ops = append(d.Ops, DeltaOp{From: uint32(j), Count: uint32(n)})
		i += n
	}
	flush(len(target))
	return d
}

// Apply rebuilds the chunk list from base, which must be the list whose
// manifest hash is d.Base.
func (d *ChunkDelta) Apply(base []chunker.Ref) ([]chunker.Ref, error) {
	if (chunker.Manifest{Chunks: base}).Hash() != d.Base {
		return nil, fmt.Errorf("chunk-list difference against base %s, which is not the one held", d.Base.Short())
	}
	n := 0
	for _, op := range d.Ops {
		if len(op.Refs) == 0 {
			if uint64(op.From)+uint64(op.Count) > uint64(len(base)) {
				return nil, fmt.Errorf("chunk-list difference copies chunks %d…%d of a base of %d", op.From, uint64(op.From)+uint64(op.Count), len(base))
			}
			n += int(op.Count)
		} else {
			n += len(op.Refs)
		}
		if n > maxListChunks {
			return nil, fmt.Errorf("chunk-list difference makes more than %d chunks", maxListChunks)
		}
	}
	out := make([]chunker.Ref, 0, n)
	for _, op := range d.Ops {
		if len(op.Refs) == 0 {
			out = append(out, base[op.From:op.From+op.Count]...)
		} else {
			out = append(out, op.Refs...)
		}
	}
	return out, nil
}

func (d *ChunkDelta) validate() error {
	for _, op := range d.Ops {
		if len(op.Refs) == 0 && op.Count == 0 {
			return fmt.Errorf("empty step")
		}
		if len(op.Refs) > 0 && (op.From != 0 || op.Count != 0) {
			return fmt.Errorf("step both copies and lists chunks")
		}
		for _, c := range op.Refs {
			if c.Length == 0 || c.Length > MaxChunkSize {
				return fmt.Errorf("chunk %s has length %d, want 1…%d", c.Hash.Short(), c.Length, MaxChunkSize)
			}
		}
	}
	return nil
}

// encodedSize is the bytes d takes in a FileInfo, in place of the list.
func (d *ChunkDelta) encodedSize() int {
	n := chunker.HashSize + uvarintLen(uint64(len(d.Ops)))
	for _, op := range d.Ops {
		if len(op.Refs) == 0 {
			n += uvarintLen(uint64(op.Count)<<1|1) + uvarintLen(uint64(op.From))
			continue
		}
		n += uvarintLen(uint64(len(op.Refs)) << 1)
		for _, c := range op.Refs {
			n += chunker.HashSize + uvarintLen(uint64(c.Length))
		}
	}
	return n
}

// DeltaWindow is what one side of a connection remembers of the chunk
// lists announced on it for one folder: per path, the last list announced,
// while it is at least DeltaMinChunks long and among the most recently
// announced lists totalling DeltaWindowRefs chunks. The sender and the
// receiver each keep one and call Note for every FileInfo in the order the
// stream carries them, so both hold the same lists. Not safe for concurrent
// use.
type DeltaWindow struct {
	lists map[string]*windowEntry
	head  windowEntry // sentinel of the recency list; head.next is the newest
	refs  int
}

type windowEntry struct {
	path       string
	chunks     []chunker.Ref
	hash       chunker.Hash
	prev, next *windowEntry
}

// NewDeltaWindow returns an empty window.
func NewDeltaWindow() *DeltaWindow {
	w := &DeltaWindow{lists: map[string]*windowEntry{}}
	w.head.prev, w.head.next = &w.head, &w.head
	return w
}

// Base returns the list last announced for path, if the window holds it.
func (w *DeltaWindow) Base(path string) ([]chunker.Ref, chunker.Hash, bool) {
	e, ok := w.lists[path]
	if !ok {
		return nil, chunker.Hash{}, false
	}
	return e.chunks, e.hash, true
}

// Note records that fi, with its full chunk list, was announced. The window
// keeps fi.Chunks without copying it; the caller must not modify it.
func (w *DeltaWindow) Note(fi *FileInfo) {
	if e, ok := w.lists[fi.Path]; ok {
		w.drop(e)
	}
	if fi.Deleted || fi.Type != File || len(fi.Chunks) < DeltaMinChunks || len(fi.Chunks) > DeltaWindowRefs {
		return
	}
	e := &windowEntry{path: fi.Path, chunks: fi.Chunks, hash: chunker.Manifest{Chunks: fi.Chunks}.Hash()}
	w.lists[fi.Path] = e
	e.prev, e.next = &w.head, w.head.next
	e.prev.next, e.next.prev = e, e
	w.refs += len(e.chunks)
	for w.refs > DeltaWindowRefs {
		w.drop(w.head.prev)
	}
}

func (w *DeltaWindow) drop(e *windowEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	delete(w.lists, e.path)
	w.refs -= len(e.chunks)
}

// Compress replaces fi's chunk list by a difference from the list the
// window holds for its path, when that is shorter on the wire. Call it
// before Note(fi), which needs the full list: Compress leaves fi.Chunks in
// place and sets fi.Delta, which the encoder sends instead.
func (w *DeltaWindow) Compress(fi *FileInfo) {
	fi.Delta = nil
	if fi.Deleted || fi.Type != File || len(fi.Chunks) < DeltaMinChunks {
		return
	}
	base, _, ok := w.Base(fi.Path)
	if !ok {
		return
	}
	d := DiffChunks(base, fi.Chunks)
	if d.encodedSize() < fullListSize(fi.Chunks) {
		fi.Delta = &d
	}
}

// Resolve rebuilds fi's chunk list from its difference, against the list
// the window holds for its path, and checks the result. It does nothing to
// a FileInfo that carries its full list.
func (w *DeltaWindow) Resolve(fi *FileInfo) error {
	if fi.Delta == nil {
		return nil
	}
	base, _, ok := w.Base(fi.Path)
	if !ok {
		return fmt.Errorf("%q: chunk-list difference against base %s, but no list of this path is held", fi.Path, fi.Delta.Base.Short())
	}
	chunks, err := fi.Delta.Apply(base)
	if err != nil {
		return fmt.Errorf("%q: %w", fi.Path, err)
	}
	fi.Chunks, fi.Delta = chunks, nil
	return fi.Validate()
}

func fullListSize(refs []chunker.Ref) int {
	n := uvarintLen(uint64(len(refs)))
	for _, c := range refs {
		n += chunker.HashSize + uvarintLen(uint64(c.Length))
	}
	return n
}
