package chunker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"testing/synctest"
)

// TestSplitParallelMatchesSplit: the same manifest as Split, for inputs
// around every boundary (Min, Max, batch size) and for any worker count.
func TestSplitParallelMatchesSplit(t *testing.T) {
	type input struct {
		p    Params
		size int // batch size
		n    int
	}
	var inputs []input
	for _, p := range []Params{DefaultParams, smallParams} {
		size := 4 * p.Max
		for _, n := range []int{0, 1, p.Min, p.Min + 1, p.Max - 1, p.Max, p.Max + 1, size - 1, size, size + 1, 2*size + p.Max/3} {
			inputs = append(inputs, input{p, size, n})
		}
	}
	// Many batches, so that every buffer is recycled several times.
	inputs = append(inputs, input{smallParams, 4 * smallParams.Max, 40*4*smallParams.Max + 12345})
	inputs = append(inputs, input{DefaultParams, 4 * DefaultParams.Max, 9*4*DefaultParams.Max + 12345})
	for i, in := range inputs {
		data := randomData(uint64(60+i), in.n)
		if i%3 == 1 {
			data = textData(uint64(60+i), in.n)
		}
		want, err := Split(bytes.NewReader(data), in.p)
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 2, 3} {
			got, err := splitParallel(context.Background(), iotest.HalfReader(bytes.NewReader(data)), in.p, workers, in.size)
			if err != nil {
				t.Fatalf("%v, %d bytes, batch %d, %d workers: %v", in.p, in.n, in.size, workers, err)
			}
			if !got.Equal(want) || (got.Chunks == nil) != (want.Chunks == nil) {
				t.Fatalf("%v, %d bytes, batch %d, %d workers: %d chunks (%s), Split gives %d (%s)",
					in.p, in.n, in.size, workers, len(got.Chunks), got.Hash(), len(want.Chunks), want.Hash())
			}
		}
	}
	// The public entry point, with its default batch size and worker count.
	data := randomData(70, batchSize(DefaultParams)+1<<20+1)
	want, _ := Split(bytes.NewReader(data), DefaultParams)
	got, err := SplitParallel(context.Background(), bytes.NewReader(data), DefaultParams, 0)
	if err != nil || !got.Equal(want) {
		t.Fatalf("SplitParallel = %d chunks, %v; want %d chunks", len(got.Chunks), err, len(want.Chunks))
	}
	if _, err := SplitParallel(context.Background(), bytes.NewReader(data), Params{}, 2); err == nil {
		t.Fatal("SplitParallel accepted invalid Params")
	}
}

// endlessReader produces pseudo-random bytes forever and calls onRead with
// the running total after each read.
type endlessReader struct {
	pattern []byte
	total   int64
	onRead  func(total int64)
}

func (r *endlessReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.pattern[int((r.total+int64(n))%int64(len(r.pattern))):])
	}
	r.total += int64(n)
	if r.onRead != nil {
		r.onRead(r.total)
	}
	return n, nil
}

// TestSplitParallelCancel: cancelling returns ctx.Err() within one batch of
// input, and every goroutine SplitParallel started has exited by then
// (synctest.Test fails if any goroutine of the bubble is left blocked).
func TestSplitParallelCancel(t *testing.T) {
	p := smallParams
	size := 4 * p.Max
	for _, cancelAt := range []int64{0, 1, int64(size), 50 * int64(size)} {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var afterCancel int64
			r := &endlessReader{pattern: randomData(80, 1<<20+3)}
			r.onRead = func(total int64) {
				if total >= cancelAt {
					if ctx.Err() != nil {
						afterCancel++
					}
					cancel()
				}
			}
			if cancelAt == 0 {
				cancel()
			}
			_, err := splitParallel(ctx, r, p, 2, size)
			if !errors.Is(err, context.Canceled) || err != ctx.Err() {
				t.Fatalf("cancel at %d: err = %v, want ctx.Err()", cancelAt, err)
			}
			if afterCancel > 1 {
				t.Fatalf("cancel at %d: %d reads after cancellation, want at most 1", cancelAt, afterCancel)
			}
			if cancelAt == 0 && r.total != 0 {
				t.Fatalf("read %d bytes with a context cancelled beforehand", r.total)
			}
		})
	}
}

// TestSplitParallelCancelWhileHashing cancels while workers are busy and the
// reading goroutine waits for them.
func TestSplitParallelCancelWhileHashing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		data := randomData(81, 1<<20)
		var reads atomic.Int64
		r := readFunc(func(p []byte) (int, error) {
			if reads.Add(1) == 4 {
				// Batches are in flight; the next ones will wait for workers.
				cancel()
			}
			return copy(p, data), nil
		})
		_, err := splitParallel(ctx, r, DefaultParams, 1, batchSize(DefaultParams))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func TestSplitParallelReadError(t *testing.T) {
	boom := errors.New("connection reset")
	for _, at := range []int{0, 100, 4 << 20, 10<<20 + 17} {
		synctest.Test(t, func(t *testing.T) {
			r := io.MultiReader(bytes.NewReader(randomData(82, at)), iotest.ErrReader(boom))
			m, err := SplitParallel(t.Context(), r, DefaultParams, 2)
			if !errors.Is(err, boom) || m.Chunks != nil {
				t.Fatalf("read error at %d: %d chunks, err %v; want none and %v", at, len(m.Chunks), err, boom)
			}
		})
	}
}

// TestSplitParallelMemory: a 64 MiB input goes through a bounded set of
// buffers, not one the size of the input.
func TestSplitParallelMemory(t *testing.T) {
	data := randomData(83, 64<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := SplitParallel(context.Background(), bytes.NewReader(data), DefaultParams, 2)
	runtime.ReadMemStats(&after)
	if err != nil || m.Size() != int64(len(data)) {
		t.Fatalf("SplitParallel = %d bytes, %v", m.Size(), err)
	}
	// 2×2+3 buffers, the manifest, slack for the runtime.
	bound := uint64(7*(DefaultParams.Max+batchSize(DefaultParams)) + 8<<20)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
		t.Fatalf("allocated %d MiB for a 64 MiB input, want < %d MiB", alloc>>20, bound>>20)
	}
}
