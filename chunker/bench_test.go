package chunker

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
)

// benchSize is the input of every benchmark: large enough that caches do not
// flatter the figures and that every benchmark iteration cuts thousands of
// chunks.
const benchSize = 256 << 20

// benchInputs are generated once per process, not per benchmark or
// iteration: generating 512 MiB costs more than the benchmarks measure.
var benchInputs = sync.OnceValue(func() []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"random", randomData(1, benchSize)},
		{"text", textData(2, benchSize)},
	}
})

func forEachInput(b *testing.B, f func(b *testing.B, data []byte)) {
	for _, in := range benchInputs() {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			f(b, in.data)
		})
	}
}

// BenchmarkCut measures the cut-point search alone.
func BenchmarkCut(b *testing.B) {
	forEachInput(b, func(b *testing.B, data []byte) {
		chunks := 0
		for b.Loop() {
			chunks = 0
			for rest := data; len(rest) > 0; chunks++ {
				rest = rest[Cut(DefaultParams, rest):]
			}
		}
		b.ReportMetric(float64(len(data))/float64(chunks), "B/chunk")
	})
}

// BenchmarkSplit measures a Chunker on one goroutine: read, cut and BLAKE3.
func BenchmarkSplit(b *testing.B) {
	forEachInput(b, func(b *testing.B, data []byte) {
		c := New(nil, DefaultParams)
		for b.Loop() {
			c.Reset(bytes.NewReader(data))
			for {
				if _, err := c.Next(); err != nil {
					break
				}
			}
		}
	})
}

// BenchmarkBLAKE3 measures hashing alone, in pieces of the average chunk
// size with a reused hasher, as a Chunker hashes: the ceiling for Split.
func BenchmarkBLAKE3(b *testing.B) {
	forEachInput(b, func(b *testing.B, data []byte) {
		h := blake3.New()
		var sum Hash
		const piece = 64 << 10
		for b.Loop() {
			for off := 0; off < len(data); off += piece {
				h.Reset()
				h.Write(data[off:min(off+piece, len(data))])
				h.Sum(sum[:0])
			}
		}
	})
}

// BenchmarkSplitParallel measures SplitParallel with two hashing workers.
func BenchmarkSplitParallel(b *testing.B) {
	forEachInput(b, func(b *testing.B, data []byte) {
		for b.Loop() {
			if _, err := SplitParallel(context.Background(), bytes.NewReader(data), DefaultParams, 2); err != nil {
				b.Fatal(err)
			}
		}
	})
}
