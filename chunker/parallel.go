package chunker

import (
	"context"
	"io"
	"runtime"
	"sync"

	"github.com/zeebo/blake3"
)

// batchSize is how much input SplitParallel hands a worker at once: large
// enough that the channel hand-off and the copy of the uncut tail into the
// next batch cost nothing next to hashing, small enough that a few batches
// in flight stay a few tens of MiB.
func batchSize(p Params) int { return max(4<<20, 4*p.Max) }

// batch is one buffer of input on its way through SplitParallel: the reading
// goroutine fills it and finds its cut points, a worker hashes its chunks,
// and the reading goroutine collects the refs and reuses the buffer.
type batch struct {
	buf  []byte
	lens []uint32      // chunk lengths, in order, from buf[0]
	refs []Ref         // filled by the worker
	done chan struct{} // capacity 1: the worker signals that refs are ready
}

// SplitParallel cuts r into chunks like Split and returns the same manifest,
// but hashes the chunks on workers goroutines (GOMAXPROCS if workers < 1)
// while the calling goroutine reads and finds cut points. Memory is bounded:
// at most 2×workers+1 batch buffers of max(4 MiB, 4×Max) exist, recycled in
// order. An input that fits in one batch is hashed on the calling goroutine
// and starts nothing.
//
// Cancellation is checked between reads and while waiting for workers; on
// cancellation SplitParallel returns ctx.Err(). A Read that blocks forever
// cannot be interrupted: close the reader to unblock it. Every goroutine
// SplitParallel starts has exited when it returns, whatever the outcome.
func SplitParallel(ctx context.Context, r io.Reader, p Params, workers int) (Manifest, error) {
	if err := p.Validate(); err != nil {
		return Manifest{}, err
	}
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	return splitParallel(ctx, r, p, workers, batchSize(p))
}

// splitParallel is SplitParallel with the batch size as a parameter, so that
// tests can push many batches through on small inputs. size must be at least
// 2×Max.
func splitParallel(ctx context.Context, r io.Reader, p Params, workers, size int) (Manifest, error) {
	small, large := p.thresholds()
	limit := 2*workers + 1

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	work := make(chan *batch, limit) // never full: at most limit batches exist
	defer func() {
		cancel()
		close(work)
		wg.Wait()
	}()

	var (
		m        Manifest
		src      = source{r: r}
		free     []*batch
		inflight []*batch // dispatched, in input order
		created  int
		started  bool
		tail     []byte // uncut end of the previous batch, carried over
		eof      bool
	)
	collect := func(b *batch) error {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		// A worker stops hashing a batch early once ctx is done.
		if err := ctx.Err(); err != nil {
			return err
		}
		m.Chunks = append(m.Chunks, b.refs...)
		return nil
	}

	for !eof {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		var b *batch
		switch {
		case len(free) > 0:
			b, free = free[len(free)-1], free[:len(free)-1]
		case created < limit:
			// The first buffer starts small and grows only if the input
			// fills it, so small inputs stay cheap.
			n := size
			if created == 0 {
				n = min(initialBuffer, size)
			}
			b = &batch{buf: make([]byte, n), done: make(chan struct{}, 1)}
			created++
		default:
			b, inflight = inflight[0], inflight[1:]
			if err := collect(b); err != nil {
				return Manifest{}, err
			}
		}

		// Fill the batch: the carried-over tail, then fresh input until the
		// buffer is full or the input ends.
		n := copy(b.buf, tail)
		for !eof {
			if n == len(b.buf) {
				if len(b.buf) >= size {
					break
				}
				nb := make([]byte, min(2*len(b.buf), size))
				copy(nb, b.buf[:n])
				b.buf = nb
			}
			k, e, err := src.read(b.buf[n:])
			n += k
			eof = e
			if err != nil {
				return Manifest{}, err
			}
		}

		// Cut. Without eof, the last < Max bytes might end differently once
		// more input follows, so they go to the next batch.
		b.lens = b.lens[:0]
		data := b.buf[:n]
		for len(data) >= p.Max || eof && len(data) > 0 {
			l := cut(data, p.Min, p.Avg, p.Max, small, large)
			b.lens = append(b.lens, uint32(l))
			data = data[l:]
		}
		tail = data
		if len(b.lens) == 0 {
			free = append(free, b)
			continue
		}

		if !started {
			if eof {
				hashBatch(context.Background(), blake3.New(), b)
				return Manifest{Chunks: b.refs}, nil
			}
			started = true
			wg.Add(workers)
			for range workers {
				go func() {
					defer wg.Done()
					h := blake3.New()
					for b := range work {
						hashBatch(ctx, h, b)
						b.done <- struct{}{}
					}
				}()
			}
		}
		work <- b
		inflight = append(inflight, b)
	}
	for _, b := range inflight {
		if err := collect(b); err != nil {
			return Manifest{}, err
		}
	}
	return m, nil
}

// hashBatch hashes the chunks of b into b.refs with h, giving up early once
// ctx is done.
func hashBatch(ctx context.Context, h *blake3.Hasher, b *batch) {
	b.refs = b.refs[:0]
	off := 0
	for _, l := range b.lens {
		if ctx.Err() != nil {
			return
		}
		h.Reset()
		h.Write(b.buf[off : off+int(l)])
		b.refs = append(b.refs, Ref{Length: l})
		h.Sum(b.refs[len(b.refs)-1].Hash[:0])
		off += int(l)
	}
}
