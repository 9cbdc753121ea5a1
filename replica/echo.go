package replica

import (
	"slices"
	"sync"

	"lockstep/conflict"
)

// Echo suppression. A version the puller applied from a peer's
// announcement gets a sequence in this node's log and would be announced
// back to that peer in its turn, which would decide it (Keep: it holds
// that version or a later one) and drop it: an entry per file on the wire
// and a lookup on each side for nothing. Before recording what it
// applied, the puller notes per path the version and the peers that
// announced that very version from their current index (with its epoch);
// the index stream toward such a peer leaves out a record of exactly that
// version while the peer's index is the one it announced from (same
// epoch), and still moves the update's Through past it, so that the peer
// confirms it. A peer whose index was rebuilt (a new epoch) gets every
// record again. The notes live in memory only: after a restart the echoes
// are sent, as they were before.

// maxEchoes bounds the paths noted (about 150 bytes each); past it,
// applied versions are announced back as before.
const maxEchoes = 1 << 17

// peerEpoch is a peer and the epoch of its index.
type peerEpoch struct {
	id    conflict.NodeID
	epoch uint64
}

// echo is the note of one applied path.
type echo struct {
	version conflict.Vector // the version applied
	holders []peerEpoch     // the peers that announced it
}

// echoes holds the notes. Safe for concurrent use.
type echoes struct {
	mu sync.Mutex
	m  map[string]echo
}

// note remembers that the peers holders announced version v of path.
func (e *echoes) note(path string, v conflict.Vector, holders []peerEpoch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(holders) == 0 {
		delete(e.m, path) // an older note is of no use any more
		return
	}
	if e.m == nil {
		e.m = map[string]echo{}
	}
	if _, ok := e.m[path]; !ok && len(e.m) >= maxEchoes {
		return
	}
	e.m[path] = echo{version: slices.Clone(v), holders: slices.Clone(holders)}
}

// skip reports whether the record of path, of version v, can be left out
// of the index stream toward peer id, whose index has epoch epoch, and
// forgets what no stream needs any more.
func (e *echoes) skip(path string, v conflict.Vector, id conflict.NodeID, epoch uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[path]
	if !ok {
		return false
	}
	skip, left := echoDecide(x, v, peerEpoch{id, epoch})
	switch {
	case len(left) == 0:
		delete(e.m, path)
	case len(left) != len(x.holders):
		e.m[path] = echo{version: x.version, holders: left}
	}
	return skip
}

// len returns how many paths are noted.
func (e *echoes) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.m)
}

// echoDecide is the rule of skip: a record of version v is left out toward
// p when v is the version noted and p announced it from the index p has
// now. left is what the note keeps: p is dropped from it once decided
// for, and the whole note once a later version was recorded. A record of
// another version (an older one, read before the note) is sent.
func echoDecide(x echo, v conflict.Vector, p peerEpoch) (skip bool, left []peerEpoch) {
	switch x.version.Compare(v) {
	case conflict.Equal:
	case conflict.Less:
		return false, nil // replaced since: the note is void
	default:
		return false, x.holders
	}
	i := slices.IndexFunc(x.holders, func(h peerEpoch) bool { return h.id == p.id })
	if i < 0 {
		return false, x.holders
	}
	skip = x.holders[i].epoch == p.epoch
	left = slices.Delete(slices.Clone(x.holders), i, i+1)
	return skip, left
}
