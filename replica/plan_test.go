package replica

import (
	"slices"
	"testing"

	"lockstep/chunker"
	"lockstep/conflict"
)

func ref(b byte, n uint32) chunker.Ref { return chunker.Ref{Hash: chunker.Hash{b}, Length: n} }

func TestPlan(t *testing.T) {
	m := chunker.Manifest{Chunks: []chunker.Ref{ref(1, 10), ref(2, 20), ref(1, 10), ref(3, 5), ref(4, 7)}}
	localHas := map[chunker.Hash][]Location{{2}: {{Path: "old", Offset: 100}}}
	locate := func(h chunker.Hash) []Location { return localHas[h] }
	peers := []conflict.NodeID{7, 8}
	steps := Plan(m, locate, peers)
	if len(steps) != 4 {
		t.Fatalf("%d steps, want 4 distinct chunks", len(steps))
	}
	if !slices.Equal(steps[0].Offsets, []int64{0, 30}) {
		t.Fatalf("repeated chunk offsets = %v, want [0 30]", steps[0].Offsets)
	}
	if len(steps[1].Local) != 1 || steps[1].Local[0].Path != "old" {
		t.Fatalf("local chunk not planned from disk: %+v", steps[1])
	}
	// Remote chunks alternate between the two peers.
	if steps[0].Peers[0] != 7 || steps[2].Peers[0] != 8 || steps[3].Peers[0] != 7 {
		t.Fatalf("remote chunks not spread: %v %v %v", steps[0].Peers, steps[2].Peers, steps[3].Peers)
	}
	if len(steps[2].Peers) != 2 {
		t.Fatalf("fallback peers missing: %v", steps[2].Peers)
	}
	if got := Plan(chunker.Manifest{}, locate, peers); len(got) != 0 {
		t.Fatalf("empty manifest planned %d steps", len(got))
	}
	// With no peer at all, remote chunks have nobody to ask.
	for _, s := range Plan(m, nil, nil) {
		if len(s.Peers) != 0 || len(s.Local) != 0 {
			t.Fatalf("step with sources out of nowhere: %+v", s)
		}
	}
}

func TestWatermark(t *testing.T) {
	w := newWatermark(5)
	if w.Mark() != 5 {
		t.Fatalf("fresh mark = %d, want the start 5", w.Mark())
	}
	w.Start(7)
	w.Start(9)
	w.Received(12)
	if w.Mark() != 6 {
		t.Fatalf("mark with 7 open = %d, want 6", w.Mark())
	}
	w.Finish(9)
	if w.Mark() != 6 {
		t.Fatalf("mark after finishing 9 but not 7 = %d, want 6", w.Mark())
	}
	w.Start(7) // the same sequence twice: a path re-announced
	w.Finish(7)
	if w.Mark() != 6 {
		t.Fatalf("mark with one of two 7s open = %d, want 6", w.Mark())
	}
	w.Finish(7)
	if w.Mark() != 12 || w.Open() != 0 {
		t.Fatalf("mark with nothing open = %d (open %d), want 12", w.Mark(), w.Open())
	}
	w.Finish(3) // unknown: ignored
	w.Start(13)
	w.Start(13)
	w.Finish(13)
	w.Finish(13)
	w.Start(13)
	if w.Mark() != 12 {
		t.Fatalf("restarted 13: mark = %d, want 12", w.Mark())
	}
}

func TestGuessOffsets(t *testing.T) {
	// Chunks of 10 bytes named by a letter; new chunks are upper case.
	chunks := func(s string) []chunker.Ref {
		var out []chunker.Ref
		for _, c := range s {
			out = append(out, ref(byte(c), 10))
		}
		return out
	}
	far := "abcdefghijklmnopqrstuvwxyz" // more than guessSpan chunks
	tests := []struct {
		name, base, target string
		want               map[byte][]int64
	}{
		{"same", "abcd", "abcd", map[byte][]int64{}},
		{"overwrite: same offsets", "abcdef", "abXYef", map[byte][]int64{'X': {20}, 'Y': {30}}},
		{"insert: shifted after, nothing before", "abcdef", "XYZcdef", map[byte][]int64{'Y': {0}, 'Z': {10}}},
		{"shift differs on each side", "abcdef", "abXef", map[byte][]int64{'X': {20, 30}}},
		{"out of the base", "ab", "abX", map[byte][]int64{}},
		{"nothing common", "ab", "XY", map[byte][]int64{}},
		{"too far from a common chunk", "a" + far, "a" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ", map[byte][]int64{
			'A': {10}, 'B': {20}, 'C': {30}, 'D': {40}, 'E': {50}, 'F': {60}, 'G': {70}, 'H': {80}}},
	}
	for _, tt := range tests {
		got := GuessOffsets(chunks(tt.base), chunks(tt.target))
		want := map[chunker.Hash][]int64{}
		for b, offs := range tt.want {
			want[chunker.Hash{b}] = offs
		}
		if len(got) != len(want) {
			t.Errorf("%s: guesses %v, want %v", tt.name, got, want)
			continue
		}
		for h, offs := range want {
			if !slices.Equal(got[h], offs) {
				t.Errorf("%s: chunk %c at %v, want %v", tt.name, h[0], got[h], offs)
			}
		}
	}
}
