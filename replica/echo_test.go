package replica

import (
	"fmt"
	"slices"
	"testing"

	"lockstep/conflict"
)

func TestEchoDecide(t *testing.T) {
	a, b := peerEpoch{0xa, 1}, peerEpoch{0xb, 7}
	v := conflict.Vector{{Node: 0xa, Value: 3}}
	later := conflict.Vector{{Node: 0xa, Value: 3}, {Node: 0xb, Value: 4}}
	older := conflict.Vector{{Node: 0xa, Value: 2}}
	other := conflict.Vector{{Node: 0xc, Value: 1}}
	for _, tc := range []struct {
		name string
		x    echo
		v    conflict.Vector
		p    peerEpoch
		skip bool
		left []peerEpoch
	}{
		{"the holder", echo{v, []peerEpoch{a, b}}, v, a, true, []peerEpoch{b}},
		{"the last holder", echo{v, []peerEpoch{b}}, v, b, true, nil},
		{"a holder whose index was rebuilt", echo{v, []peerEpoch{a, b}}, v, peerEpoch{0xa, 2}, false, []peerEpoch{b}},
		{"another peer", echo{v, []peerEpoch{b}}, v, a, false, []peerEpoch{b}},
		{"a record replaced since", echo{v, []peerEpoch{a}}, later, a, false, nil},
		{"a record read before the note", echo{v, []peerEpoch{a}}, older, a, false, []peerEpoch{a}},
		{"a concurrent version", echo{v, []peerEpoch{a}}, other, a, false, []peerEpoch{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.x.holders)
			skip, left := echoDecide(tc.x, tc.v, tc.p)
			if skip != tc.skip || !slices.Equal(left, tc.left) {
				t.Errorf("echoDecide = %v, %v; want %v, %v", skip, left, tc.skip, tc.left)
			}
			if !slices.Equal(tc.x.holders, before) {
				t.Errorf("the note's holders changed to %v", tc.x.holders)
			}
		})
	}
}

func TestEchoesBounded(t *testing.T) {
	var e echoes
	ver := func(i int) conflict.Vector { return conflict.Vector{{Node: 0xa, Value: uint64(i + 1)}} }
	for i := range maxEchoes + 10 {
		e.note(fmt.Sprint(i), ver(i), []peerEpoch{{0xa, 1}})
	}
	if e.len() != maxEchoes {
		t.Fatalf("%d notes, want %d", e.len(), maxEchoes)
	}
	if !e.skip("0", ver(0), 0xa, 1) || e.skip("0", ver(0), 0xa, 1) {
		t.Fatal("a note is used once")
	}
	if e.skip(fmt.Sprint(maxEchoes+5), ver(maxEchoes+5), 0xa, 1) {
		t.Fatal("a path noted past the bound was skipped")
	}
	e.note("1", ver(1), nil)
	if e.skip("1", ver(1), 0xa, 1) {
		t.Fatal("a note replaced by one without holders was used")
	}
}

// TestNoEchoToTheSender: what b applies from a's announcements is not
// announced back to a, yet a confirms b's log through it; b's own change
// is announced.
func TestNoEchoToTheSender(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	cut := link(t, ctx, a, b)
	for i := range 10 {
		a.write(fmt.Sprintf("d/f%d", i), randomBytes(uint64(i), 3000))
	}
	for i := range 10 {
		eventually(t, "files on b", hasContent(b, fmt.Sprintf("d/f%d", i), randomBytes(uint64(i), 3000)))
	}
	// a has all of b's log: b's records are confirmed.
	confirmedAll := func() bool {
		info, err := b.ix.Info("docroot")
		if err != nil {
			t.Fatal(err)
		}
		pr, err := b.ix.Progress("docroot", conflict.NodeID(a.id))
		return err == nil && info.Sequence > 0 && pr.Confirmed == info.Sequence
	}
	eventually(t, "a confirms b's log", confirmedAll)
	b.mu.Lock()
	n := b.announced
	b.mu.Unlock()
	if n != 0 {
		t.Fatalf("b announced %d entries to a, want none: all came from a", n)
	}
	// The notes are used as b's stream to a passes their entries, which
	// may be just after a's confirmation arrived.
	eventually(t, "b's notes used", func() bool { return b.engine.echoes.len() == 0 })

	b.write("d/f3", randomBytes(99, 2000))
	eventually(t, "b's edit on a", hasContent(a, "d/f3", randomBytes(99, 2000)))
	b.mu.Lock()
	n = b.announced
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("b announced %d entries, want its own edit alone", n)
	}
	// Nor does a announce b's version back to b.
	eventually(t, "b confirms a's log", func() bool {
		info, _ := a.ix.Info("docroot")
		pr, err := a.ix.Progress("docroot", conflict.NodeID(b.id))
		return err == nil && pr.Confirmed == info.Sequence
	})
	a.mu.Lock()
	n = a.announced
	a.mu.Unlock()
	if n != 10 {
		t.Fatalf("a announced %d entries, want its own 10", n)
	}
	cut()
}

// TestEchoHeldBackFromSenderOnly: in a chain a — b — c, what b applies from
// a is announced to c (c has no other way to get it) and not back to a;
// c's confirmation then lets a's version count as held by all three.
func TestEchoHeldBackFromSenderOnly(t *testing.T) {
	a := newTestNode(t, "a", 0xa, []Peer{{Name: "b", ID: 0xb}})
	b := newTestNode(t, "b", 0xb, []Peer{{Name: "a", ID: 0xa}, {Name: "c", ID: 0xc}})
	c := newTestNode(t, "c", 0xc, []Peer{{Name: "b", ID: 0xb}})
	ctx := runEngines(t, a, b, c)
	defer link(t, ctx, a, b)()
	defer link(t, ctx, b, c)()
	for i := range 5 {
		a.write(fmt.Sprintf("f%d", i), randomBytes(uint64(i), 2000))
	}
	for i := range 5 {
		eventually(t, "a's files on c, through b", hasContent(c, fmt.Sprintf("f%d", i), randomBytes(uint64(i), 2000)))
	}
	eventually(t, "c confirms b's log", func() bool {
		info, _ := b.ix.Info("docroot")
		pr, err := b.ix.Progress("docroot", conflict.NodeID(c.id))
		return err == nil && info.Sequence > 0 && pr.Confirmed == info.Sequence
	})
	// b announced a's 5 files to c alone, and c announced nothing back.
	b.mu.Lock()
	nb := b.announced
	b.mu.Unlock()
	c.mu.Lock()
	nc := c.announced
	c.mu.Unlock()
	if nb != 5 || nc != 0 {
		t.Fatalf("b announced %d entries (want 5, to c), c %d (want none)", nb, nc)
	}
}
