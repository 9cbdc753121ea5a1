package conflict

import (
	"math/rand/v2"
	"testing"
)

func vec(pairs ...uint64) Vector {
	var v Vector
	for i := 0; i < len(pairs); i += 2 {
		v = v.set(NodeID(pairs[i]), pairs[i+1])
	}
	return v
}

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b Vector
		want Ordering
	}{
		{nil, nil, Equal},
		{vec(1, 1), vec(1, 1), Equal},
		{nil, vec(1, 1), Less},
		{vec(1, 1), nil, Greater},
		{vec(1, 1), vec(1, 2), Less},
		{vec(1, 2), vec(1, 1), Greater},
		{vec(1, 1), vec(2, 1), Concurrent},
		{vec(1, 2, 2, 1), vec(1, 1, 2, 2), Concurrent},
		{vec(1, 1, 3, 1), vec(1, 1, 2, 1, 3, 1), Less},
		{vec(1, 1, 2, 1, 3, 1), vec(1, 1, 3, 1), Greater},
		{vec(5, 1), vec(1, 1, 5, 1), Less},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestUpdateAndMerge(t *testing.T) {
	v := Vector(nil).Update(7)
	if got, want := v.String(), vec(7, 1).String(); got != want {
		t.Fatalf("Update on empty = %s, want %s", got, want)
	}
	w := v.Update(3)
	if w.Get(3) != 2 || w.Get(7) != 1 || v.Get(3) != 0 {
		t.Fatalf("Update(3) = %v (receiver %v): want 3:2, 7:1 and receiver unchanged", w, v)
	}
	if !w.Valid() || w.Compare(v) != Greater {
		t.Fatalf("updated vector %v not valid or not greater than %v", w, v)
	}
	m := vec(1, 3, 4, 1).Merge(vec(1, 2, 2, 5))
	if got, want := m.String(), vec(1, 3, 2, 5, 4, 1).String(); got != want {
		t.Fatalf("Merge = %s, want %s", got, want)
	}
}

func TestValid(t *testing.T) {
	for _, tt := range []struct {
		v    Vector
		want bool
	}{
		{nil, true},
		{Vector{{1, 1}, {2, 3}}, true},
		{Vector{{2, 1}, {1, 1}}, false},
		{Vector{{1, 1}, {1, 2}}, false},
		{Vector{{1, 0}}, false},
	} {
		if got := tt.v.Valid(); got != tt.want {
			t.Errorf("%v.Valid() = %v, want %v", tt.v, got, tt.want)
		}
	}
}

// TestCompareAgainstNaive checks the merge-walk Compare against a map-based
// reference on random vectors.
func TestCompareAgainstNaive(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	randVec := func() Vector {
		var v Vector
		for n := range 5 {
			if r.IntN(2) == 0 {
				v = v.set(NodeID(n), r.Uint64N(3)+1)
			}
		}
		return v
	}
	naive := func(a, b Vector) Ordering {
		less, greater := false, false
		for n := range 5 {
			x, y := a.Get(NodeID(n)), b.Get(NodeID(n))
			less = less || x < y
			greater = greater || x > y
		}
		switch {
		case less && greater:
			return Concurrent
		case less:
			return Less
		case greater:
			return Greater
		}
		return Equal
	}
	for range 10000 {
		a, b := randVec(), randVec()
		if got, want := a.Compare(b), naive(a, b); got != want {
			t.Fatalf("%v.Compare(%v) = %v, naive says %v", a, b, got, want)
		}
		m := a.Merge(b)
		if !m.Valid() || m.Compare(a) == Less || m.Compare(b) == Less || m.Compare(a) == Concurrent {
			t.Fatalf("merge %v of %v and %v does not dominate both", m, a, b)
		}
	}
}
