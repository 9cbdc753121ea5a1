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
	}{
		{"equal", old, old, Keep},
		{"remote newer", old, editA, Take},
		{"local newer", editA, old, Keep},
		{"concurrent later stamp wins", editA, editB, TakeConflict},
		{"concurrent local later", editB, editA, Keep},
		{"concurrent same content, local meta wins", editA, sameB, Keep},
		{"concurrent same content, remote meta wins", sameB, editA, Take},
		{"edit beats later delete", editA, delB, Keep},
		{"remote edit beats local delete: nothing to keep", delB, editA, Take},
		{"two deletes", delA, delB, Take},
		{"delete after edit supersedes", editA, Version{Vector: editA.Vector.Update(b), Origin: b, Deleted: true}, Take},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Resolve(tt.local, tt.remote); got != tt.want {
				t.Fatalf("Resolve = %v, want %v", got, tt.want)
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
	cur  Version
	kept []Version // losers this node moved to its conflict store
}

// receive applies the conflict rule the way the engine does.
func (n *node) receive(remote Version) {
	switch Resolve(n.cur, remote) {
	case TakeConflict:
		n.kept = append(n.kept, n.cur)
		n.cur = remote
	case Take:
		n.cur = remote
	}
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
			if got.Vector.Compare(first.Vector) != Equal || !sameContent(got, first) || got.Stamp != first.Stamp {
				t.Fatalf("round %d: node %d ended with %+v, node 0 with %+v", round, i+1, got, first)
			}
		}
		// Nothing is lost: every original content is the winner's or is
		// kept in some node's conflict store.
		for _, v := range versions {
			if v.Deleted || sameContent(v, first) {
				continue
			}
			found := false
			for _, nd := range nodes {
				for _, k := range nd.kept {
					found = found || sameContent(k, v)
				}
			}
			if !found {
				t.Fatalf("round %d: content of %+v lost", round, v)
			}
		}
	}
}
