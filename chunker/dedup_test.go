package chunker

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// dedupSize is the input of the dedup tests. Cutting 64 MiB takes ~70 ms,
// ~1.2 s under the race detector, so it stays 64 MiB in every mode.
const dedupSize = 64 << 20

type span struct {
	off, length int
	hash        Hash
}

func spans(p Params, data []byte) []span {
	var s []span
	for off := 0; off < len(data); {
		n := Cut(p, data[off:])
		s = append(s, span{off, n, Sum(data[off : off+n])})
		off += n
	}
	return s
}

// dedupOriginal is the input both dedup tests edit, cut once per process.
var dedupOriginal = sync.OnceValues(func() ([]byte, []span) {
	data := randomData(51, dedupSize)
	return data, spans(DefaultParams, data)
})

func hashSet(s []span) map[Hash]bool {
	set := make(map[Hash]bool, len(s))
	for _, c := range s {
		set[c.hash] = true
	}
	return set
}

// TestDedupInsert: inserting bytes changes only the chunk it lands in, and
// at most one more, so nearly every byte is still in a known chunk.
func TestDedupInsert(t *testing.T) {
	data, orig := dedupOriginal()
	known := hashSet(orig)
	insert := randomData(52, 100)
	for _, at := range []int{1000, dedupSize / 2} {
		mod := slices.Concat(data[:at], insert, data[at:])
		var fresh []span
		unchanged := 0
		for _, c := range spans(DefaultParams, mod) {
			if known[c.hash] {
				unchanged += c.length
			} else {
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 || len(fresh) > 2 {
			t.Errorf("insert at %d: %d new chunks %v, want 1 or 2", at, len(fresh), fresh)
		}
		// The new chunks are the one holding the inserted bytes and, maybe,
		// the one right after it.
		for i, c := range fresh {
			if i == 0 && (c.off > at || c.off+c.length < at+len(insert)) ||
				i > 0 && c.off != fresh[i-1].off+fresh[i-1].length {
				t.Errorf("insert at %d: new chunk at [%d, %d) is away from the insertion", at, c.off, c.off+c.length)
			}
		}
		frac := float64(unchanged) / float64(len(mod))
		if frac < 0.99 {
			t.Errorf("insert at %d: %.4f of bytes in unchanged chunks, want >= 0.99", at, frac)
		}
		t.Logf("insert at %d: %d new chunks, %.4f%% of bytes in unchanged chunks", at, len(fresh), 100*frac)
	}
}

// TestDedupOverwrite: overwriting 1 MiB in the middle changes the chunks
// that overlap it and a short run of chunks right after it; every other
// chunk is unchanged. The run after the edit is there because the chunker
// leaves the new bytes at an arbitrary position relative to the old cut
// points and needs a chunk or more to fall back in step (TestResync
// measures how many).
func TestDedupOverwrite(t *testing.T) {
	data, orig := dedupOriginal()
	known := hashSet(orig)
	origBounds := map[int]bool{}
	for _, c := range orig {
		origBounds[c.off] = true
	}
	const start, end = dedupSize / 2, dedupSize/2 + 1<<20
	mod := slices.Clone(data)
	copy(mod[start:end], randomData(54, end-start))

	overlapping, after := 0, 0
	resynced := false // a chunk after the edit started at an old cut point
	for _, c := range spans(DefaultParams, mod) {
		switch {
		case c.off+c.length <= start:
			if !known[c.hash] {
				t.Errorf("chunk [%d, %d) before the overwrite changed", c.off, c.off+c.length)
			}
		case c.off < end:
			overlapping++
			if known[c.hash] {
				t.Errorf("chunk [%d, %d) overlaps the overwrite but is unchanged", c.off, c.off+c.length)
			}
		default:
			resynced = resynced || origBounds[c.off]
			switch {
			case resynced && !known[c.hash]:
				t.Errorf("chunk [%d, %d) changed after the cut points fell back in step", c.off, c.off+c.length)
			case !resynced && known[c.hash]:
				t.Errorf("chunk [%d, %d) unchanged but does not start at an old cut point", c.off, c.off+c.length)
			case !resynced:
				after++
			}
		}
	}
	if overlapping < 1<<20/DefaultParams.Max {
		t.Fatalf("%d chunks overlap 1 MiB, impossible with Max %d", overlapping, DefaultParams.Max)
	}
	if !resynced || after > 3 {
		t.Errorf("%d changed chunks after the overwrite (resynced: %v), want at most 3", after, resynced)
	}
	t.Logf("%d chunks overlap the overwrite, %d more changed after it", overlapping, after)
}

// TestResync measures how soon cut points fall back in step with the old
// ones after the chunker starts at an arbitrary position, as it does after
// an edit that replaces more than a chunk. FastCDC's minimum skip and its
// strict mask before Avg (normalization level 2) delay this: on random data
// about half of the starts resync after the first chunk, the mean is about
// two chunks (measured 1.99 over 1500 starts with DefaultParams; level 1
// gives 1.27 but a spread of sizes nearly twice as wide). The bounds below
// catch a change that would break resynchronization outright.
func TestResync(t *testing.T) {
	data, orig := dedupOriginal()
	bounds := map[int]bool{}
	for _, c := range orig {
		bounds[c.off+c.length] = true
	}
	const trials = 400
	r := rand.New(rand.NewPCG(55, 56))
	hist := map[int]int{}
	total := 0
	for range trials {
		off, chunks := r.IntN(len(data)-8<<20), 0
		for ; !bounds[off]; chunks++ {
			if chunks == 32 {
				t.Fatalf("no resync within 32 chunks of a start at %d", off)
			}
			off += Cut(DefaultParams, data[off:])
		}
		hist[chunks]++
		total += chunks
	}
	mean := float64(total) / float64(trials)
	t.Logf("chunks until resync over %d random starts: mean %.2f, histogram %v", trials, mean, hist)
	if mean > 3 || float64(hist[1]) < 0.35*float64(trials) {
		t.Errorf("resync takes %.2f chunks on average, %d of %d starts in one chunk; want <= 3 and >= 35%%", mean, hist[1], trials)
	}
}
