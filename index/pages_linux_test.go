package index

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSharedMappingUnder(t *testing.T) {
	prefix := []byte("/var/lib/lockstep/index/")
	for _, tc := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"7f62fdf15000-7f62fe00b000 rw-s 00000000 fe:00 10399313                   /var/lib/lockstep/index/000028.sst", 0x7f62fdf15000, 0x7f62fe00b000, true},
		{"7f62fdf15000-7f62fe00b000 r--s 00000000 fe:00 10399313 /var/lib/lockstep/index/000001.vlog", 0x7f62fdf15000, 0x7f62fe00b000, true},
		{"7f62fdf15000-7f62fe00b000 rw-s 00000000 fe:00 10399313 /var/lib/lockstep/index/00005.mem (deleted)", 0x7f62fdf15000, 0x7f62fe00b000, true},
		// Private mappings keep private changes: never released.
		{"7f62fdf15000-7f62fe00b000 rw-p 00000000 fe:00 10399313 /var/lib/lockstep/index/000028.sst", 0, 0, false},
		// Other files, and a sibling directory sharing the prefix's text.
		{"7f62fdf15000-7f62fe00b000 rw-s 00000000 fe:00 10399313 /var/lib/lockstep/indexes/000028.sst", 0, 0, false},
		{"7f62fdf15000-7f62fe00b000 rw-s 00000000 fe:00 10399313 /srv/www/index/a.sst", 0, 0, false},
		{"00400000-0080c000 r-xp 00000000 fe:00 9981489 /usr/bin/lockstep", 0, 0, false},
		{"7f97e1609000-7f97e16eb000 rw-p 00000000 00:00 0", 0, 0, false},
		{"7ffd1000-7ffd2000 rw-s 00000000 00:01 3 [stack]", 0, 0, false},
		{"", 0, 0, false},
		{"zz-7f62fe00b000 rw-s 00000000 fe:00 1 /var/lib/lockstep/index/x", 0, 0, false},
		{"7f62fe00b000-7f62fdf15000 rw-s 00000000 fe:00 1 /var/lib/lockstep/index/x", 0, 0, false},
	} {
		start, end, ok := sharedMappingUnder([]byte(tc.line), prefix)
		if start != tc.start || end != tc.end || ok != tc.ok {
			t.Errorf("%q: got %#x-%#x %v, want %#x-%#x %v", tc.line, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}

// mappingRSS returns the resident bytes of this process's mappings of
// path, from /proc/self/smaps.
func mappingRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); in && ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestReleaseMappedKeepsData maps a file shared and one private, dirties
// both, and releases what lies under the directory: the shared mapping's
// pages leave the resident set and its unsynced writes still reach the
// file; the private mapping is untouched.
func TestReleaseMappedKeepsData(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	mapFile := func(name string, flags int) (string, []byte) {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(b) })
		for i := range b {
			b[i] = byte(i*7 + 1)
		}
		return path, b
	}
	shared, sb := mapFile("shared.sst", unix.MAP_SHARED)
	private, _ := mapFile("private.sst", unix.MAP_PRIVATE)
	if got := mappingRSS(t, shared); got < size {
		t.Fatalf("shared mapping resident %d bytes after writing it all, want %d", got, size)
	}

	n, err := releaseMapped(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Errorf("released %d bytes of mappings, want %d (the shared one only)", n, size)
	}
	if got := mappingRSS(t, shared); got != 0 {
		t.Errorf("shared mapping still has %d bytes resident", got)
	}
	if got := mappingRSS(t, private); got < size {
		t.Errorf("private mapping lost resident pages: %d of %d bytes", got, size)
	}

	// The data is still there, through the mapping and in the file.
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7 + 1)
	}
	if !bytes.Equal(sb, want) {
		t.Fatal("the shared mapping reads back other data after the release")
	}
	if err := unix.Munmap(sb); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(shared)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("writes made through the shared mapping before the release did not reach the file")
	}
}

// TestIndexReleasesMappedPages writes an index of many tables, then reads
// every record, and checks that its files' pages leave the process's
// resident set after the writes, and after the next write following the
// reads. Without the pager about the whole index stays resident.
func TestIndexReleasesMappedPages(t *testing.T) {
	ix, err := Open(t.TempDir(), Options{idleAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	// The index is smaller than the budget, which the test binary's own
	// text counts in: release whatever is resident.
	ix.pages.budget.Store(0)
	batch := make([]Record, 0, 100)
	for i := range 3000 {
		batch = append(batch, wideFile(i))
		if len(batch) == cap(batch) {
			put(t, ix, "f", batch...)
			batch = batch[:0]
		}
	}
	if err := ix.Sync(); err != nil {
		t.Fatal(err)
	}
	size, _ := ix.DiskSize()
	if size < 8<<20 {
		t.Fatalf("index of %d bytes: too small to show anything", size)
	}
	// Badger may still be compacting: a quarter of the index is a margin.
	waitFor(t, "the index's mapped pages to be released", func() bool {
		return indexRSS(t, ix.Dir()) < size/4
	})
	if ix.pages.released.Load() == 0 {
		t.Fatal("nothing released, yet the index's pages are not resident")
	}
	waitFor(t, "the pager to stop once the index is idle", func() bool { return !ix.pages.armed.Load() })

	// Reads map pages in again, and do not arm the pager; the next write
	// does.
	for i := range 3000 {
		if _, ok, err := ix.Get("f", wideFile(i).Path); err != nil || !ok {
			t.Fatalf("Get %d: ok %v, %v", i, ok, err)
		}
	}
	read := indexRSS(t, ix.Dir())
	if read < size/8 {
		t.Fatalf("reading every record left %d of %d bytes resident: the test shows nothing", read, size)
	}
	if ix.pages.armed.Load() {
		t.Fatal("reads armed the pager")
	}
	put(t, ix, "f", wideFile(3000))
	var now int64
	deadline := time.Now().Add(30 * time.Second)
	// Reclaim takes only pages on the kernel's LRU lists: the last ones
	// a CPU mapped in can wait in its per-CPU batch, and are skipped.
	for now = indexRSS(t, ix.Dir()); now >= read/2; now = indexRSS(t, ix.Dir()) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes of the index resident 30 s after a write, %d after the reads (index %d bytes; pager armed %v, failed %v)",
				now, read, size, ix.pages.armed.Load(), ix.pages.failed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "the pager to stop once the index is idle", func() bool { return !ix.pages.armed.Load() })
}

// indexRSS sums the resident bytes of the mappings of the tables in dir.
// The memtables' write-ahead logs are left out: their pages are dirty
// until the kernel writes them back (within 30 s by default), and reclaim
// leaves dirty pages where they are; there are at most two of 2 MiB.
func indexRSS(t *testing.T, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".sst" {
			continue
		}
		n += mappingRSS(t, filepath.Join(dir, e.Name()))
	}
	return n
}

func BenchmarkReleaseMapped(b *testing.B) {
	dir := b.TempDir()
	for i := range 300 { // tables of an index of about a million files
		f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)+".sst"))
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(1 << 20)
		m, err := unix.Mmap(int(f.Fd()), 0, 1<<20, unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Munmap(m) })
	}
	for b.Loop() {
		if _, err := releaseMapped(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFileResident checks that fileResident counts the pages of a shared
// file mapping the process touches.
func TestFileResident(t *testing.T) {
	const size = 16 << 20
	f, err := os.Create(filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	before, err := fileResident()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < size; i += os.Getpagesize() {
		m[i] = 1
	}
	after, err := fileResident()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < size*3/4 {
		t.Fatalf("file-backed resident %d bytes before touching a %d-byte mapping, %d after", before, size, after)
	}
}
