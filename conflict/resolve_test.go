package conflict

import (
	"math/rand/v2"
	"testing"
)

func content(b byte) [32]byte { return [32]byte{b} }

func TestResolve(t *testing.T) {
	const a, b NodeID = 10, 20
	base := vec(uint64(a), 1)
	editA := Version{Vector: base.Update(a), Stamp: 100, Origin: a, Content: content(2)}
	editB := Version{Vector: base.Update(b), Stamp: 200, Origin: b, Content: content(3)}
	sameB := Version{Vector: base.Update(b), Stamp: 50, Origin: b, Content: content(2)}
	delB := Version{Vector: base.Update(b), Stamp: 300, Origin: b, Deleted: true}
	delA := Version{Vector: base.Update(a), Stamp: 1, Origin: a, Deleted: true}
	old := Version{Vector: base, Stamp: 10, Origin: a, Content: content(1)}
	tests := []struct {
		name          string
		local, remote Version
		want          Action
		remoteMeta    bool
	}{
		{"equal", old, old, Keep, false},
		{"remote newer", old, editA, Take, false},
		{"local newer", editA, old, Keep, false},
		{"concurrent later stamp wins", editA, editB, TakeConflict, false},
		{"concurrent local later", editB, editA, KeepConflict, false},
		{"concurrent same content merges", editA, sameB, Merge, false},
		{"concurrent same content, remote meta later", sameB, editA, Merge, true},
		{"edit beats later delete", editA, delB, KeepConflict, false},
		{"remote edit beats local delete", delB, editA, TakeConflict, false},
		{"two deletes merge", delA, delB, Merge, true},
		{"delete after edit supersedes", editA, Version{Vector: editA.Vector.Update(b), Origin: b, Deleted: true}, Take, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Resolve(tt.local, tt.remote)
			if d.Action != tt.want {
				t.Fatalf("Resolve = %v, want %v", d.Action, tt.want)
			}
			if d.Action == Merge && d.RemoteMeta != tt.remoteMeta {
				t.Fatalf("RemoteMeta = %v, want %v", d.RemoteMeta, tt.remoteMeta)
			}
			if d.Vector.Compare(tt.local.Vector) == Less || d.Vector.Compare(tt.remote.Vector) == Less {
				if d.Action != Keep {
					t.Fatalf("result vector %v does not dominate both inputs", d.Vector)
				}
			}
		})
	}
}

func TestWinsTieBreaks(t *testing.T) {
	x := Version{Stamp: 5, Origin: 1, Content: content(1)}
	y := Version{Stamp: 5, Origin: 2, Content: content(1)}
	if Wins(x, y) || !Wins(y, x) {
		t.Fatal("equal stamps: larger origin must win")
	}
	z := Version{Stamp: 5, Origin: 1, Content: content(9)}
	if Wins(x, z) || !Wins(z, x) {
		t.Fatal("equal stamp and origin: larger content digest must win")
	}
	if Wins(x, x) {
		t.Fatal("a version must not beat itself")
	}
}

// node is one replica's view of a single path in the convergence test.
type node struct {
	cur Version
}

// receive applies the conflict rule the way the engine does.
func (n *node) receive(remote Version) {
	d := Resolve(n.cur, remote)
	switch d.Action {
	case Take, TakeConflict:
		n.cur = remote
	case Merge:
		if d.RemoteMeta {
			n.cur = remote
		}
	}
	n.cur.Vector = d.Vector
}

// TestConvergence delivers a set of concurrent versions to several nodes in
// random orders, with forwarding of each node's resulting state, and checks
// that every node ends with the same winner and vector regardless of order.
func TestConvergence(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for round := range 2000 {
		n := 2 + r.IntN(4)
		base := Vector(nil).Update(NodeID(100))
		versions := make([]Version, n)
		for i := range versions {
			origin := NodeID(r.IntN(3) + 1)
			versions[i] = Version{
				Vector:  base.Update(origin).set(NodeID(200+i), 1),
				Stamp:   Stamp(r.IntN(3)),
				Origin:  origin,
				Deleted: r.IntN(4) == 0,
				Content: content(byte(r.IntN(3))),
			}
		}
		nodes := make([]*node, n)
		for i := range nodes {
			nodes[i] = &node{cur: versions[i]}
		}
		// Every node receives every other node's original version, in a
		// random order, then everybody's resulting state once more.
		for _, nd := range nodes {
			for _, j := range r.Perm(n) {
				nd.receive(versions[j])
			}
		}
		for _, nd := range nodes {
			for _, j := range r.Perm(n) {
				nd.receive(nodes[j].cur)
			}
		}
		first := nodes[0].cur
		for i, nd := range nodes[1:] {
			got := nd.cur
			if got.Vector.Compare(first.Vector) != Equal || !sameContent(got, first) {
				t.Fatalf("round %d: node %d ended with %+v, node 0 with %+v", round, i+1, got, first)
			}
		}
	}
}
