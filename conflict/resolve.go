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
	// Keep: the local version equals or supersedes the remote one; nothing
	// changes locally.
	Keep Action = iota
	// Take: the remote version supersedes the local one; apply it.
	Take
	// Merge: the versions are concurrent but hold the same content. The
	// local record takes the merged vector (and the winner's metadata, see
	// Decision.RemoteMeta); nothing is transferred and no copy is kept.
	Merge
	// TakeConflict: concurrent, and the remote version wins. The local
	// content is the loser: it moves to the conflict store, then the remote
	// version is applied under the merged vector.
	TakeConflict
	// KeepConflict: concurrent, and the local version wins. The local record
	// takes the merged vector so that it supersedes both; the remote
	// version's origin keeps the losing copy when it learns of the winner.
	KeepConflict
)

func (a Action) String() string {
	switch a {
	case Keep:
		return "keep"
	case Take:
		return "take"
	case Merge:
		return "merge"
	case TakeConflict:
		return "take-conflict"
	case KeepConflict:
		return "keep-conflict"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the outcome of Resolve.
type Decision struct {
	Action Action
	// Vector is the vector the local record must carry afterwards: the
	// remote one for Take, the merge of both for Merge and the conflicts,
	// the local one for Keep.
	Vector Vector
	// RemoteMeta reports, for Merge, whether the remote version's metadata
	// (mode, mtime, stamp, origin) wins over the local one's.
	RemoteMeta bool
}

// Resolve decides what happens when a node holding local receives remote for
// the same path. It is a pure function of its inputs: every node that holds
// the same pair decides the same way.
func Resolve(local, remote Version) Decision {
	switch local.Vector.Compare(remote.Vector) {
	case Equal, Greater:
		return Decision{Action: Keep, Vector: local.Vector}
	case Less:
		return Decision{Action: Take, Vector: remote.Vector}
	}
	merged := local.Vector.Merge(remote.Vector)
	remoteWins := Wins(remote, local)
	if sameContent(local, remote) {
		return Decision{Action: Merge, Vector: merged, RemoteMeta: remoteWins}
	}
	if remoteWins {
		return Decision{Action: TakeConflict, Vector: merged}
	}
	return Decision{Action: KeepConflict, Vector: merged}
}

// Wins reports whether a beats b when the two are concurrent. The order is
// total and strict for distinct versions: a modification beats a deletion
// (so concurrent edits are never lost to a delete), then the later stamp,
// then the larger origin, then the larger content digest.
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
	return bytes.Compare(a.Content[:], b.Content[:]) > 0
}
