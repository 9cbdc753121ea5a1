package vfs

import (
	"fmt"
	"sync"
	"testing"
	"time"
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
