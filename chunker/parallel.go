package chunker

import (
	"context"
	"io"
	"runtime"
	"sync"

	"github.com/zeebo/blake3"
)

// batchSize is how much input SplitParallel hands a worker at once: large
// enough that the channel hand-offs and the copy of the uncut tail into the
// next batch cost little next to hashing, small enough that a batch is still
// in cache when it is cut and hashed. On the reference machine 1 MiB batches
// ran ~10% faster than 2 MiB and ~20% faster than 4 MiB.
func batchSize(p Params) int { return max(1<<20, 4*p.Max) }

// batch is one buffer of input on its way through SplitParallel. The
// reading goroutine fills buf[p.Max:]; the cutting goroutine puts the uncut
// tail of the previous batch just before it, finds the cut points, and hands
// the batch to a worker, which hashes the chunks; the cutting goroutine then
// collects the refs, in input order, and gives the buffer back to the reader.
type batch struct {
	buf   []byte // p.Max bytes of room for the previous tail, then input
	n     int    // input bytes in buf[p.Max:]
	eof   bool   // the input ends after this batch
	err   error  // the read error that ended the input
	start int    // the batch's chunks start at buf[start]
	lens  []uint32
	refs  []Ref         // filled by the worker
	done  chan struct{} // capacity 1: the worker signals that refs are ready
}

// SplitParallel cuts r into chunks like Split and returns the same manifest,
// using several goroutines: one reads, the calling goroutine finds the cut
// points, and workers goroutines (GOMAXPROCS if workers < 1) hash the
// chunks. Memory is bounded: at most 2×workers+3 buffers of max(1 MiB,
// 4×Max) bytes exist, recycled in order. An input that fits in one buffer is
// read, cut and hashed on the calling goroutine, and starts nothing.
//
// Cancellation is checked between reads, between batches and while waiting;
// on cancellation SplitParallel returns ctx.Err(). A Read that blocks
// forever cannot be interrupted, and SplitParallel waits for it: close the
// reader to unblock it. Every goroutine SplitParallel starts has exited when
// it returns, whatever the outcome.
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
// tests can push many batches through small inputs. size must be at least
// 2×Max, so that every batch holds at least one chunk.
func splitParallel(ctx context.Context, r io.Reader, p Params, workers, size int) (Manifest, error) {
	if err := ctx.Err(); err != nil {
		return Manifest{}, err
	}
	src := &source{r: r}

	// Read the first batch here, growing its buffer as the input fills it:
	// most files are small, and those need neither goroutines nor large
	// buffers.
	first := &batch{buf: make([]byte, p.Max+min(initialBuffer, size)), done: make(chan struct{}, 1)}
	for !first.eof && first.err == nil && first.n < size {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		if p.Max+first.n == len(first.buf) {
			nb := make([]byte, p.Max+min(2*first.n, size))
			copy(nb, first.buf)
			first.buf = nb
		}
		k, eof, err := src.read(first.buf[p.Max+first.n:])
		first.n += k
		first.eof, first.err = eof, err
	}
	if first.err != nil {
		return Manifest{}, first.err
	}
	if first.eof {
		cutBatch(p, first, nil)
		hashBatch(ctx, blake3.New(), first)
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		return Manifest{Chunks: first.refs}, nil
	}

	limit := 2*workers + 3 // in flight: one being read, one being cut, two per worker
	ctx, cancel := context.WithCancel(ctx)
	free := make(chan *batch, limit)   // buffers for the reader; never full
	filled := make(chan *batch, limit) // read batches, in input order; never full
	work := make(chan *batch, limit)   // cut batches for the workers; never full
	var wg sync.WaitGroup
	defer func() {
		cancel()
		close(work)
		wg.Wait()
	}()

	wg.Go(func() { readBatches(ctx, src, p, size, limit-1, free, filled) })
	for range workers {
		wg.Go(func() {
			h := blake3.New()
			for b := range work {
				hashBatch(ctx, h, b)
				b.done <- struct{}{}
			}
		})
	}

	var (
		m        Manifest
		inflight []*batch // sent to workers, in input order
		tail     = make([]byte, 0, p.Max)
		next     = first
	)
	for {
		if next == nil {
			var oldestDone chan struct{}
			if len(inflight) > 0 {
				oldestDone = inflight[0].done
			}
			select {
			case next = <-filled:
			case <-oldestDone:
				// Collect in order, and give the buffer back to the reader.
				b := inflight[0]
				inflight = inflight[1:]
				if err := ctx.Err(); err != nil { // the worker may have stopped early
					return Manifest{}, err
				}
				m.Chunks = append(m.Chunks, b.refs...)
				free <- b
				continue
			case <-ctx.Done():
				return Manifest{}, ctx.Err()
			}
		}
		b := next
		next = nil
		if b.err != nil {
			return Manifest{}, b.err
		}
		tail = cutBatch(p, b, tail)
		if len(b.lens) > 0 {
			work <- b
			inflight = append(inflight, b)
		} else {
			free <- b
		}
		if b.eof {
			break
		}
	}
	for _, b := range inflight {
		select {
		case <-b.done:
		case <-ctx.Done():
			return Manifest{}, ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		m.Chunks = append(m.Chunks, b.refs...)
	}
	return m, nil
}

// readBatches fills batches from src and sends them to filled, in order,
// until the input ends, a read fails or ctx is done. It reuses the batches
// that come back on free and allocates up to limit of its own.
func readBatches(ctx context.Context, src *source, p Params, size, limit int, free <-chan *batch, filled chan<- *batch) {
	created := 0
	for {
		var b *batch
		select {
		case b = <-free:
		default:
			if created < limit {
				b = &batch{buf: make([]byte, p.Max+size), done: make(chan struct{}, 1)}
				created++
				break
			}
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
		}
		b.n, b.eof, b.err = 0, false, nil
		for b.n < size && !b.eof && b.err == nil {
			if ctx.Err() != nil {
				return
			}
			var k int
			k, b.eof, b.err = src.read(b.buf[p.Max+b.n:])
			b.n += k
		}
		filled <- b
		if b.eof || b.err != nil {
			return
		}
	}
}

// cutBatch puts the previous batch's uncut tail in front of b's input, finds
// the cut points, and returns b's own uncut tail (copied into tail's
// storage): without EOF, the last < Max bytes may end differently once more
// input follows, so they go with the next batch.
func cutBatch(p Params, b *batch, tail []byte) []byte {
	small, large := p.thresholds()
	b.start = p.Max - len(tail)
	copy(b.buf[b.start:], tail)
	data := b.buf[b.start : p.Max+b.n]
	b.lens = b.lens[:0]
	for len(data) >= p.Max || b.eof && len(data) > 0 {
		l := cut(data, p.Min, p.Avg, p.Max, small, large)
		b.lens = append(b.lens, uint32(l))
		data = data[l:]
	}
	return append(tail[:0], data...)
}

// hashBatch hashes the chunks of b into b.refs with h, giving up early once
// ctx is done.
func hashBatch(ctx context.Context, h *blake3.Hasher, b *batch) {
	b.refs = b.refs[:0]
	off := b.start
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
