package index

import (
	"context"
	"fmt"
	"testing"

	"lockstep/chunker"
)

const benchRecords = 100_000

// benchFile is a one-chunk file record, as a small file of a web root.
func benchFile(i int) Record {
	r := Record{Path: fmt.Sprintf("d%02d/s%02d/file%06d.php", i%100, i/100%10, i), Type: File, Mode: 0o644,
		Size: 1024, MTime: 1_700_000_000_000_000_000 + int64(i), Inode: uint64(i), Device: 2049, UID: 33, GID: 33,
		Version: vec(0xa1, 1), Stamp: 1 << 20, Origin: 0xa1}
	r.Manifest.Chunks = []chunker.Ref{{Hash: chunker.Sum(fmt.Appendf(nil, "%d", i)), Length: 1024}}
	return r
}

// filledIndex returns an index holding benchRecords file records, in an
// order that jumps between directories.
func filledIndex(b *testing.B) *Index { return filledIndexBy(b, benchFile) }

// walkedFile is benchFile with the paths in key order, as a scan walking a
// tree records them.
func walkedFile(i int) Record {
	r := benchFile(i)
	r.Path = fmt.Sprintf("d%02d/s%02d/file%06d.php", i/1000, i/100%10, i)
	return r
}

// interleavedFile is walkedFile with two halves of the tree recorded
// alternately, as when a scan walks two directories at once.
func interleavedFile(i int) Record { return walkedFile(i%2*(benchRecords/2) + i/2) }

func filledIndexBy(b *testing.B, file func(int) Record) *Index {
	b.Helper()
	ix := openTest(b, b.TempDir())
	batch := make([]Record, 0, 1000)
	for i := range benchRecords {
		batch = append(batch, file(i))
		if len(batch) == cap(batch) {
			put(b, ix, "f", batch...)
			batch = batch[:0]
		}
	}
	return ix
}

// BenchmarkApply measures storing new records in batches of 1000, as a
// first scan does: record, sequence entry, chunk location and counts.
func BenchmarkApply(b *testing.B) {
	ix := openTest(b, b.TempDir())
	batch := make([]Record, 1000)
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = benchFile(n)
			n++
		}
		if err := ix.Put("f", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	size, _ := ix.DiskSize()
	b.ReportMetric(float64(size)/float64(n), "disk_B/record")
}

// BenchmarkWalk measures reading every record of a folder in path order.
func BenchmarkWalk(b *testing.B) {
	ix := filledIndex(b)
	n := 0
	for b.Loop() {
		err := ix.Walk(context.Background(), "f", "", func(Record) error { n++; return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkChildren measures listing every directory's children, as a
// rescan does.
func BenchmarkChildren(b *testing.B) {
	ix := filledIndex(b)
	n := 0
	for b.Loop() {
		for d := range 100 {
			for s := range 10 {
				err := ix.Children(context.Background(), "f", fmt.Sprintf("d%02d/s%02d", d, s), func(Record) error { n++; return nil })
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSince measures streaming the whole sequence log, as a new peer
// needs: recorded in walk order (as by a first scan), and in an order that
// jumps between directories.
func BenchmarkSince(b *testing.B) {
	b.Run("walked", func(b *testing.B) { benchSince(b, filledIndexBy(b, walkedFile)) })
	b.Run("interleaved", func(b *testing.B) { benchSince(b, filledIndexBy(b, interleavedFile)) })
	b.Run("scattered", func(b *testing.B) { benchSince(b, filledIndex(b)) })
}

func benchSince(b *testing.B, ix *Index) {
	n := 0
	for b.Loop() {
		if err := ix.Since(context.Background(), "f", 0, func(Record) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkLoadPresence measures reading the stored chunk hashes into the
// lookup filter, as Run does first.
func BenchmarkLoadPresence(b *testing.B) {
	ix := filledIndex(b)
	for b.Loop() {
		ix.chunks.ready.Store(false)
		if err := ix.loadPresence(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "hashes/s")
}

// BenchmarkLocateAllAbsent measures looking up chunks the index does not
// hold, in groups of 64 as the puller does, with the filter loaded and
// without it.
func BenchmarkLocateAllAbsent(b *testing.B) {
	ix := filledIndex(b)
	hashes := make([]chunker.Hash, 64)
	for _, loaded := range []bool{false, true} {
		b.Run(fmt.Sprintf("filter=%v", loaded), func(b *testing.B) {
			ix.chunks.ready.Store(false)
			if loaded {
				if err := ix.loadPresence(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			n := 0
			for b.Loop() {
				for i := range hashes {
					hashes[i] = chunker.Sum(fmt.Appendf(nil, "absent %d", n))
					n++
				}
				if found, err := ix.LocateAll(hashes, 4); err != nil || len(found) != 0 {
					b.Fatal(found, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/1000, "µs/hash")
		})
	}
}
