package chunker

import (
	"fmt"
	"math/bits"
)

// Params bound the size of the chunks FastCDC cuts. Every node of a cluster
// must use the same Params for a folder, or the same content cuts
// differently and stops deduplicating.
type Params struct {
	// Min bounds chunks from below: no cut point is looked for in a chunk's
	// first Min bytes, so every chunk but the last of an input is longer.
	Min int
	// Avg is the target chunk size, a power of two. Before a chunk reaches
	// Avg bytes a cut is 4× less likely than 1/Avg per byte, after it 4×
	// more likely (normalized chunking, level 2), which narrows the spread
	// of sizes around Avg.
	Avg int
	// Max is the largest chunk: a chunk is cut at Max bytes when no content
	// cut point came earlier.
	Max int
}

// DefaultParams are the sizes lockstep uses: 16 KiB / 64 KiB / 256 KiB.
// With them, random and text data give chunks of about 74 KiB on average
// (the minimum skip adds to Avg) with a standard deviation of about 22 KiB:
// few enough that a 10 TB node indexes ~130 M chunks, small enough that a
// small edit re-sends one chunk of ~74 KiB.
var DefaultParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

// Bounds enforced by Validate. The lower bound on Avg leaves the loose mask
// at least 4 bits; the upper bound on Max keeps a chunk a reasonable unit of
// transfer and keeps Length within uint32 with room to spare.
const (
	minAvg = 64
	maxMax = 64 << 20
)

// Validate reports whether p can be used: 0 < Min < Avg < Max, Avg a power
// of two of at least 64, Max at most 64 MiB.
func (p Params) Validate() error {
	switch {
	case p.Min <= 0:
		return fmt.Errorf("chunk params %v: min must be positive", p)
	case p.Avg < minAvg || p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunk params %v: avg must be a power of two of at least %d", p, minAvg)
	case p.Min >= p.Avg:
		return fmt.Errorf("chunk params %v: min must be less than avg", p)
	case p.Avg >= p.Max:
		return fmt.Errorf("chunk params %v: avg must be less than max", p)
	case p.Max > maxMax:
		return fmt.Errorf("chunk params %v: max must be at most %d", p, maxMax)
	}
	return nil
}

// String returns "min/avg/max" in bytes, as used in errors and logs.
func (p Params) String() string { return fmt.Sprintf("%d/%d/%d", p.Min, p.Avg, p.Max) }

// mustValidate panics when p is invalid. Params come from code or from
// validated configuration, never from a peer, so invalid ones are a
// programming error.
func (p Params) mustValidate() {
	if err := p.Validate(); err != nil {
		panic("chunker: " + err.Error())
	}
}

// thresholds returns the values the fingerprint is compared with before
// (small) and after (large) the average size. A cut needs the top
// log2(Avg)+2 bits of the fingerprint to be zero before Avg and the top
// log2(Avg)-2 bits after it: fp < 1<<(64-k) tests the top k bits. The top
// bits are used because bit j of the Gear fingerprint depends on the last
// j+1 bytes, so the top bits see the widest window (64 bytes).
func (p Params) thresholds() (small, large uint64) {
	b := bits.TrailingZeros(uint(p.Avg))
	return 1 << (64 - (b + 2)), 1 << (64 - (b - 2))
}
