package vfs

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkBatchFlush writes a batch of 4 KiB files and makes them durable
// as the puller does, either with one syncfs before the renames and one
// after, or with an fsync per file (16 at once) and one of their
// directory after the renames.
func BenchmarkBatchFlush(b *testing.B) {
	data := make([]byte, 4096)
	for _, n := range []int{1, 4, 16, 64, 256} {
		for _, each := range []bool{true, false} {
			name := "syncfs"
			if each {
				name = "fsync"
			}
			b.Run(fmt.Sprintf("files=%d/%s", n, name), func(b *testing.B) {
				f, err := Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				meta := Meta{Mode: 0o644, MTime: time.Now()}
				for i := 0; b.Loop(); i++ {
					temps := make([]*Temp, n)
					sem := make(chan struct{}, 16)
					var wg sync.WaitGroup
					for k := range temps {
						sem <- struct{}{}
						wg.Add(1)
						go func() {
							defer wg.Done()
							defer func() { <-sem }()
							t, err := f.Create(fmt.Sprintf("d/f%d-%d", i, k), 0o755)
							if err != nil {
								b.Error(err)
								return
							}
							if _, err := t.File().Write(data); err != nil {
								b.Error(err)
							}
							if err := t.Seal(meta, each); err != nil {
								b.Error(err)
							}
							temps[k] = t
						}()
					}
					wg.Wait()
					if b.Failed() {
						return
					}
					if !each {
						if err := f.SyncFS(); err != nil {
							b.Fatal(err)
						}
					}
					for _, t := range temps {
						if err := t.Commit(); err != nil {
							b.Fatal(err)
						}
					}
					if each {
						err = f.Fsync("d")
					} else {
						err = f.SyncFS()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCreateNew writes 1 KiB files that do not exist yet and puts
// them in place, through a temp name and a rename (Create) or unnamed and
// linked in (CreateNew), with their metadata and without a flush, in
// alternation. Run it with TMPDIR on the filesystem of interest.
func BenchmarkCreateNew(b *testing.B) {
	data := make([]byte, 1024)
	meta := Meta{Mode: 0o644, MTime: time.Now()}
	for _, name := range []string{"create-rename", "unnamed-link"} {
		b.Run(name, func(b *testing.B) {
			f, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			ds := f.Dirs(0o755)
			defer ds.Close()
			for i := 0; b.Loop(); i++ {
				rel := fmt.Sprintf("d%d/f%d", i/1000, i)
				var t *Temp
				if name == "create-rename" {
					t, err = ds.Create(rel)
				} else {
					t, err = ds.CreateNew(rel, meta.Mode)
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := t.File().Write(data); err != nil {
					b.Fatal(err)
				}
				if err := t.Seal(meta, false); err != nil {
					b.Fatal(err)
				}
				if err := t.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLargeFile writes a 64 MiB file of fresh data in chunks of 64
// KiB, in order, and makes it durable: through the page cache, and
// gathered into windows written with direct I/O (DirectWriter). Run it
// with TMPDIR on the filesystem of interest (tmpfs gets no direct I/O).
func BenchmarkLargeFile(b *testing.B) {
	const size, chunk = 64 << 20, 64 << 10
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) {
			f, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(size)
			cpu0 := processCPU(b)
			for i := 0; b.Loop(); i++ {
				temp, err := f.Create(fmt.Sprintf("f%d", i), 0o755)
				if err != nil {
					b.Fatal(err)
				}
				if err := temp.File().Truncate(size); err != nil {
					b.Fatal(err)
				}
				var out io.WriterAt = temp.File()
				var w *DirectWriter
				if direct {
					if w = temp.Direct(size); w == nil {
						b.Skip("no direct I/O on this filesystem")
					}
					out = w
				}
				for off := 0; off < size; off += chunk {
					if _, err := out.WriteAt(data[off:off+chunk], int64(off)); err != nil {
						b.Fatal(err)
					}
				}
				if w != nil {
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				if err := temp.Seal(Meta{Mode: 0o644}, true); err != nil {
					b.Fatal(err)
				}
				if err := temp.Commit(); err != nil {
					b.Fatal(err)
				}
				if err := f.Remove(fmt.Sprintf("f%d", i)); err != nil {
					b.Fatal(err)
				}
			}
			cpu := processCPU(b) - cpu0
			b.ReportMetric(float64(cpu.Microseconds())/1000/(float64(b.N)*size/1e6), "cpu_ms/MB")
		})
	}
}

// processCPU is the user and system time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
