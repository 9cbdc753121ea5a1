package chunker

import (
	"flag"
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"
)

var randSeed = flag.Uint64("seed", 0, "seed of the randomized tests (0: from the clock)")

// smallParams make chunks small enough that short test inputs hold many.
var smallParams = Params{Min: 256, Avg: 1024, Max: 4096}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		p  Params
		ok bool
	}{
		{DefaultParams, true},
		{smallParams, true},
		{Params{Min: 1, Avg: 64, Max: 65}, true},
		{Params{Min: 16 << 20, Avg: 32 << 20, Max: 64 << 20}, true},
		{Params{}, false},
		{Params{Min: 0, Avg: 1024, Max: 4096}, false},
		{Params{Min: -1, Avg: 1024, Max: 4096}, false},
		{Params{Min: 256, Avg: 1000, Max: 4096}, false},  // not a power of two
		{Params{Min: 16, Avg: 32, Max: 4096}, false},     // avg too small
		{Params{Min: 1024, Avg: 1024, Max: 4096}, false}, // min = avg
		{Params{Min: 256, Avg: 4096, Max: 4096}, false},  // avg = max
		{Params{Min: 256, Avg: 1024, Max: 512}, false},
		{Params{Min: 1 << 20, Avg: 32 << 20, Max: 64<<20 + 1}, false},
	} {
		err := tt.p.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%v.Validate() = %v, want ok=%v", tt.p, err, tt.ok)
		}
	}
}

func TestNewPanicsOnInvalidParams(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with invalid Params did not panic")
		}
	}()
	New(nil, Params{Min: 10, Avg: 100, Max: 1000})
}

// naiveCut is the reference for Cut, written from the definition one byte at
// a time with explicit masks and none of Cut's loop structure.
func naiveCut(p Params, data []byte) int {
	b := bits.Len(uint(p.Avg)) - 1
	maskS := ^uint64(0) << (64 - (b + 2)) // top b+2 bits
	maskL := ^uint64(0) << (64 - (b - 2)) // top b-2 bits
	var fp uint64
	for i := range data {
		size := i + 1 // the chunk's length if it ends after data[i]
		if size <= p.Min {
			continue
		}
		fp = fp<<1 + gear[data[i]]
		mask := maskS
		if size > p.Avg {
			mask = maskL
		}
		if fp&mask == 0 || size == p.Max {
			return size
		}
	}
	return len(data)
}

// naiveLengths splits all of data with naiveCut.
func naiveLengths(p Params, data []byte) []int {
	var lens []int
	for len(data) > 0 {
		n := naiveCut(p, data)
		lens = append(lens, n)
		data = data[n:]
	}
	return lens
}

func cutLengths(p Params, data []byte) []int {
	var lens []int
	for len(data) > 0 {
		n := Cut(p, data)
		lens = append(lens, n)
		data = data[n:]
	}
	return lens
}

func TestCutShortInputs(t *testing.T) {
	data := randomData(3, 2*smallParams.Max)
	p := smallParams
	for _, n := range []int{0, 1, p.Min - 1, p.Min} {
		if got := Cut(p, data[:n]); got != n {
			t.Errorf("Cut of %d bytes (<= Min) = %d, want %d", n, got, n)
		}
	}
	// Above Min, a cut comes after at least Min+1 bytes and at most Max.
	for n := p.Min + 1; n <= len(data); n += 97 {
		got := Cut(p, data[:n])
		if got <= p.Min || got > min(n, p.Max) {
			t.Fatalf("Cut of %d bytes = %d, want in (%d, %d]", n, got, p.Min, min(n, p.Max))
		}
	}
}

// TestCutMax: data on which no content cut point exists is cut at exactly Max.
func TestCutMax(t *testing.T) {
	// Over zero bytes the fingerprint is (2^k-1)·gear[0], which never has its
	// top 4 bits clear with this table: check that, then that Max is honoured.
	zeros := make([]byte, 3*DefaultParams.Max+5)
	if n := naiveCut(Params{Min: 1, Avg: 64, Max: len(zeros)}, zeros); n != len(zeros) {
		t.Fatalf("zero bytes have a content cut at %d: the gear table changed", n)
	}
	lens := cutLengths(DefaultParams, zeros)
	want := []int{DefaultParams.Max, DefaultParams.Max, DefaultParams.Max, 5}
	if !equalInts(lens, want) {
		t.Fatalf("zeros cut into %v, want %v", lens, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCutMatchesNaive is the property test: on random inputs of random sizes
// (random and text-like bytes, and long runs that defeat content cuts) with
// random valid Params, Cut agrees with the naive reference everywhere.
func TestCutMatchesNaive(t *testing.T) {
	seed := *randSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed %[1]d)", seed)
	r := rand.New(rand.NewPCG(seed, 0x10c4))
	rounds := 300
	if raceEnabled {
		rounds = 60
	}
	for round := range rounds {
		avgBits := 6 + r.IntN(10) // 64 B .. 32 KiB
		p := Params{Avg: 1 << avgBits}
		p.Min = 1 + r.IntN(p.Avg-1)
		p.Max = p.Avg + 1 + r.IntN(4*p.Avg)
		var data []byte
		n := r.IntN(8 * p.Max)
		switch r.IntN(4) {
		case 0:
			data = textData(r.Uint64(), n)
		case 1:
			// Runs of one byte value between random stretches.
			data = randomData(r.Uint64(), n)
			for i := 0; i < n; i += 1 + r.IntN(3*p.Max) {
				run := data[i:min(n, i+r.IntN(2*p.Max))]
				for j := range run {
					run[j] = byte(round)
				}
			}
		default:
			data = randomData(r.Uint64(), n)
		}
		got, want := cutLengths(p, data), naiveLengths(p, data)
		if !equalInts(got, want) {
			t.Fatalf("seed %d round %d, params %v, %d bytes: Cut gives %v, reference %v", seed, round, p, n, got, want)
		}
		for i, l := range got {
			if l > p.Max || l <= p.Min && i != len(got)-1 {
				t.Fatalf("seed %d round %d, params %v: chunk %d has length %d", seed, round, p, i, l)
			}
		}
	}
}

// TestCutAverage checks that normalized chunking lands near its design
// point on random data: mean size around Min + Avg (the skip adds to the
// target) and a narrow spread, not the wide geometric spread of plain CDC.
func TestCutAverage(t *testing.T) {
	data := randomData(5, 4<<20)
	p := smallParams
	lens := cutLengths(p, data[:len(data)-p.Max]) // drop the remainder effect
	mean := float64(len(data)-p.Max) / float64(len(lens))
	if mean < 1.0*float64(p.Avg) || mean > 1.5*float64(p.Avg) {
		t.Errorf("mean chunk %0.f bytes with %v, want within [Avg, 1.5 Avg]", mean, p)
	}
	atMax := 0
	for _, l := range lens {
		if l == p.Max {
			atMax++
		}
	}
	if frac := float64(atMax) / float64(len(lens)); frac > 0.01 {
		t.Errorf("%.1f%% of chunks cut at Max, want < 1%%", 100*frac)
	}
}
