package conflict

import (
	"bytes"
	"fmt"
)

// Version is what the conflict rule needs to know about one version of a
// path.
type Version struct {
	Vector  Vector
	Stamp   Stamp
	Origin  NodeID
	Deleted bool
	// Content identifies what the version holds — kind, bytes or link
	// target — so that two versions with equal Content are interchangeable
	// apart from metadata. A deletion's Content is ignored.
	Content [32]byte
}

// sameContent reports whether a and b hold the same thing: both deleted, or
// both present with equal Content.
func sameContent(a, b Version) bool {
	if a.Deleted || b.Deleted {
		return a.Deleted == b.Deleted
	}
	return a.Content == b.Content
}

// Action is what the receiving node does with a remote version.
type Action int

const (
	// Keep: the local version stays. Either it equals or supersedes the
	// remote one, or the two are concurrent and the local one wins.
	Keep Action = iota
	// Take: the remote version replaces the local one, which it
	// supersedes, or which is concurrent with it, loses, and holds the same
	// content (so nothing is lost and no copy is kept).
	Take
	// TakeConflict: the versions are concurrent, the remote one wins and
	// the local content differs. The local content moves to the conflict
	// store, then the remote version is applied.
	TakeConflict
)

func (a Action) String() string {
	switch a {
	case Keep:
		return "keep"
	case Take:
		return "take"
	case TakeConflict:
		return "take-conflict"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Resolve decides what happens when a node holding local receives remote for
// the same path. It is a pure function of its inputs: every node that holds
// the same pair decides the same way.
//
// The version that stays carries its own vector, never a merge of both: a
// merged vector would dominate the loser and let a node that still holds
// the loser overwrite it as if it were an older edit, without keeping a
// copy. Because the winner of concurrent versions is chosen by a total
// order, every node that meets the loser later rejects it again, and every
// node holding the loser keeps a copy when the winner reaches it.
func Resolve(local, remote Version) Action {
	switch local.Vector.Compare(remote.Vector) {
	case Equal, Greater:
		return Keep
	case Less:
		return Take
	}
	if !Wins(remote, local) {
		return Keep
	}
	if sameContent(local, remote) || local.Deleted {
		return Take
	}
	return TakeConflict
}

// Wins reports whether a beats b when the two are concurrent. The order is
// total and strict for distinct versions: a modification beats a deletion
// (so concurrent edits are never lost to a delete), then the later stamp,
// then the larger origin, then the larger content digest, and last the
// larger vector in a fixed lexical order (distinct versions from one node
// never share a stamp, but the order must be total for any input).
func Wins(a, b Version) bool {
	if a.Deleted != b.Deleted {
		return !a.Deleted
	}
	if a.Stamp != b.Stamp {
		return a.Stamp > b.Stamp
	}
	if a.Origin != b.Origin {
		return a.Origin > b.Origin
	}
	if c := bytes.Compare(a.Content[:], b.Content[:]); c != 0 {
		return c > 0
	}
	return lexical(a.Vector, b.Vector) > 0
}

// lexical orders vectors by their counters, node by node.
func lexical(a, b Vector) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		switch {
		case a[i].Node != b[i].Node:
			return cmpNode(b[i].Node, a[i].Node) // a has a node b lacks: a is larger
		case a[i].Value != b[i].Value:
			if a[i].Value > b[i].Value {
				return 1
			}
			return -1
		}
	}
	return len(a) - len(b)
}
