package vfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWindowSpans(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []span
		want   []span
	}{
		{"one", []span{{0, 10}}, []span{{0, 10}}},
		{"apart", []span{{20, 30}, {0, 10}}, []span{{0, 10}, {20, 30}}},
		{"touching", []span{{0, 10}, {10, 20}}, []span{{0, 20}}},
		{"touching before", []span{{10, 20}, {0, 10}}, []span{{0, 20}}},
		{"same twice", []span{{5, 15}, {5, 15}}, []span{{5, 15}}},
		{"inside", []span{{0, 100}, {10, 20}}, []span{{0, 100}}},
		{"covering several", []span{{0, 5}, {10, 15}, {20, 25}, {3, 22}}, []span{{0, 25}}},
		{"bridging a gap", []span{{0, 5}, {10, 15}, {5, 10}}, []span{{0, 15}}},
		{"overlapping end", []span{{10, 20}, {15, 30}, {40, 50}}, []span{{10, 30}, {40, 50}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w window
			for _, s := range tc.writes {
				w.add(s.from, s.to)
			}
			if len(w.spans) != len(tc.want) {
				t.Fatalf("spans %v, want %v", w.spans, tc.want)
			}
			var filled int64
			for i := range w.spans {
				if w.spans[i] != tc.want[i] {
					t.Fatalf("spans %v, want %v", w.spans, tc.want)
				}
				filled += tc.want[i].to - tc.want[i].from
			}
			if w.filled != filled {
				t.Fatalf("filled %d, want %d", w.filled, filled)
			}
		})
	}
}

// directTemp creates a temp file on a filesystem with direct I/O: the
// test's temp dir, else /var/tmp (tmpfs is left to the page cache).
func directTemp(t *testing.T, size int64) (*Temp, *DirectWriter, string) {
	t.Helper()
	for _, dir := range []string{t.TempDir(), "/var/tmp"} {
		d, err := os.MkdirTemp(dir, "direct")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		f, err := Open(d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		temp, err := f.Create("big.bin", 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if err := temp.File().Truncate(size); err != nil {
			t.Fatal(err)
		}
		if w := temp.Direct(size); w != nil {
			return temp, w, d
		}
		temp.Abort()
	}
	t.Skip("no filesystem here offers direct I/O (statx STATX_DIOALIGN): neither the test's temp dir nor /var/tmp")
	return nil, nil, ""
}

// chunked cuts data into pieces of 1 byte to 100 KiB, in random order.
func chunked(rng *rand.Rand, data []byte) []span {
	var pieces []span
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+rng.IntN(100<<10))
		pieces = append(pieces, span{int64(off), int64(off + n)})
		off += n
	}
	rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	return pieces
}

func TestDirectWriterAssemblesAFile(t *testing.T) {
	// Not a multiple of the window nor of any alignment, so that the last
	// window goes through the page cache.
	const size = 3*directWindow + 12345
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	temp, w, dir := directTemp(t, size)
	pieces := chunked(rng, data)
	// Some pieces written twice, as a chunk retried after its batch failed.
	pieces = append(pieces, pieces[:len(pieces)/4]...)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(pieces); i += 4 {
				p := pieces[i]
				if n, err := w.WriteAt(data[p.from:p.to], p.from); err != nil || n != int(p.to-p.from) {
					t.Errorf("WriteAt %d bytes at %d: %d, %v", p.to-p.from, p.from, n, err)
				}
			}
		})
	}
	wg.Wait()
	if w.noDirect {
		t.Error("the filesystem refused the direct writes it offered")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkTemp(t, temp, dir, data)
}

func TestDirectWriterWithoutBuffers(t *testing.T) {
	// Every window buffer taken: the writes go through the page cache.
	var held [][]byte
	for {
		b := getDirectBuf()
		if b == nil {
			break
		}
		held = append(held, b)
	}
	defer func() {
		for _, b := range held {
			putDirectBuf(b)
		}
	}()
	const size = 2 * directWindow
	data := bytes.Repeat([]byte("lockstep"), size/8)
	temp, w, dir := directTemp(t, size)
	for _, p := range chunked(rand.New(rand.NewPCG(3, 4)), data) {
		if _, err := w.WriteAt(data[p.from:p.to], p.from); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.wins) != 2 || w.wins[0].buf != nil || w.wins[1].buf != nil {
		t.Fatalf("windows %v: want both without a buffer", w.wins)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkTemp(t, temp, dir, data)
}

func TestDirectWriterCloseWritesPartialWindows(t *testing.T) {
	// A window never filled (an assembly that stopped early) is written
	// at Close as far as it was filled, and its buffer goes back.
	const size = 4 * directWindow
	temp, w, dir := directTemp(t, size)
	before := directInUse.Load()
	part := bytes.Repeat([]byte{7}, 1000)
	if _, err := w.WriteAt(part, directWindow+500); err != nil {
		t.Fatal(err)
	}
	if got := directInUse.Load(); got != before+1 {
		t.Fatalf("%d buffers in use, want %d", got, before+1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := directInUse.Load(); got != before {
		t.Fatalf("%d buffers in use after Close, want %d", got, before)
	}
	want := make([]byte, size)
	copy(want[directWindow+500:], part)
	checkTemp(t, temp, dir, want)
}

func TestDirectWriterRefusesPastTheEnd(t *testing.T) {
	temp, w, _ := directTemp(t, 2*directWindow)
	defer temp.Abort()
	defer w.Close()
	if _, err := w.WriteAt([]byte("x"), 2*directWindow); err == nil {
		t.Fatal("a write past the file's size was taken")
	}
}

func TestDirectSmallFile(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	temp, err := f.Create("small", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer temp.Abort()
	if w := temp.Direct(directWindow); w != nil {
		w.Close()
		t.Fatal("a file of one window got direct I/O")
	}
}

// checkTemp commits temp and compares its content with want.
func checkTemp(t *testing.T, temp *Temp, dir string, want []byte) {
	t.Helper()
	if err := temp.Seal(Meta{Mode: 0o644}, true); err != nil {
		t.Fatal(err)
	}
	if err := temp.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, temp.rel))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file differs from what was written (%d bytes, want %d)", len(got), len(want))
	}
}

// TestDirectWriterFailureSticks: once a window's write fails, the data of
// chunks already reported written may be lost: every later write and
// Close return the error, so the assembly is abandoned, not committed
// with a hole.
func TestDirectWriterFailureSticks(t *testing.T) {
	const size = 4 * directWindow
	temp, w, dir := directTemp(t, size)
	defer temp.Abort()
	// A descriptor that cannot write stands in for a disk that fails.
	ro, err := os.Open(filepath.Join(dir, "."))
	if err != nil {
		t.Fatal(err)
	}
	w.direct.Close()
	w.direct = ro
	before := directInUse.Load()
	window := bytes.Repeat([]byte{1}, directWindow)
	if _, err := w.WriteAt(window[:100], 0); err != nil {
		t.Fatalf("a write into a window's buffer failed: %v", err)
	}
	if _, err := w.WriteAt(window[100:], 100); err == nil {
		t.Fatal("the write that completed the window reported no error")
	}
	if _, err := w.WriteAt(window, directWindow); err == nil {
		t.Fatal("a write after the failed window was taken")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed window reported no error")
	}
	if got := directInUse.Load(); got != before {
		t.Fatalf("%d buffers in use after Close, want %d", got, before)
	}
}
