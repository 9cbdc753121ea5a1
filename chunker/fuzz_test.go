package chunker

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// fuzzParams turns arbitrary numbers into valid, small Params, so that
// fuzzed inputs of a few KiB hold many chunks.
func fuzzParams(minSeed, avgBits, maxSeed uint16) Params {
	p := Params{Avg: 1 << (6 + avgBits%6)} // 64 B .. 2 KiB
	p.Min = 1 + int(minSeed)%(p.Avg-1)
	p.Max = p.Avg + 1 + int(maxSeed)%(4*p.Avg)
	return p
}

// FuzzCut checks Cut against the naive reference on arbitrary bytes and
// parameters, and that it never panics or cuts outside its bounds.
func FuzzCut(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint16(0), uint16(0))
	f.Add(bytes.Repeat([]byte{0}, 3000), uint16(10), uint16(2), uint16(77))
	f.Add(randomData(90, 4000), uint16(200), uint16(4), uint16(1000))
	f.Fuzz(func(t *testing.T, data []byte, minSeed, avgBits, maxSeed uint16) {
		p := fuzzParams(minSeed, avgBits, maxSeed)
		for rest := data; len(rest) > 0; {
			n := Cut(p, rest)
			if want := naiveCut(p, rest); n != want {
				t.Fatalf("%v: Cut = %d, reference %d", p, n, want)
			}
			if n < 1 || n > p.Max || n > len(rest) || n <= p.Min && n != len(rest) {
				t.Fatalf("%v: Cut of %d bytes = %d", p, len(rest), n)
			}
			rest = rest[n:]
		}
	})
}

// FuzzChunker checks that a Chunker fed through arbitrary read sizes, and
// SplitParallel with tiny batches, agree with Cut and Split.
func FuzzChunker(f *testing.F) {
	f.Add([]byte("hello, world"), uint16(1), uint16(7), uint16(3))
	f.Add(randomData(91, 9000), uint16(300), uint16(2), uint16(4096))
	f.Add(textData(92, 9000), uint16(17), uint16(3), uint16(65535))
	f.Fuzz(func(t *testing.T, data []byte, readSize, avgBits, maxSeed uint16) {
		p := fuzzParams(readSize, avgBits, maxSeed)
		want := cutLengths(p, data)
		sizes := []int{1 + int(readSize)%(3*p.Max), 1, int(maxSeed) % 7}
		c := New(&sizedReader{data: data, sizes: sizes}, p)
		var all []byte
		var got []int
		var m Manifest
		for {
			ch, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.Hash != Sum(ch.Data) || ch.Offset != int64(len(all)) {
				t.Fatalf("chunk %d: bad hash or offset %d", len(got), ch.Offset)
			}
			all = append(all, ch.Data...)
			got = append(got, int(ch.Length))
			m.Chunks = append(m.Chunks, ch.Ref())
		}
		if !bytes.Equal(all, data) || !equalInts(got, want) {
			t.Fatalf("%v, reads %v: lengths %v, want %v", p, sizes, got, want)
		}
		pm, err := splitParallel(context.Background(), bytes.NewReader(data), p, 2, 2*p.Max)
		if err != nil || !pm.Equal(m) {
			t.Fatalf("%v: splitParallel = %d chunks, %v; want %d chunks", p, len(pm.Chunks), err, len(m.Chunks))
		}
	})
}
