package index

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// releaseMapped reclaims the resident pages of every shared file mapping
// whose file lies under dir (madvise MADV_PAGEOUT, Linux 5.4 or later), and
// returns the bytes of the mappings it covered. Reclaiming loses nothing:
// a dirty page is written back first, and the next access reads the page
// in again. It is also harmless if the range was unmapped, or even mapped
// again as something else, between reading /proc/self/maps and the call
// (Badger drops tables as it compacts): MADV_PAGEOUT never discards data,
// on any kind of mapping. MADV_DONTNEED, which keeps the pages in the page
// cache, would zero anonymous memory mapped into such a range, so it is not
// used. Private mappings are skipped.
func releaseMapped(dir string) (int64, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	prefix := []byte(filepath.Clean(dir) + string(filepath.Separator))
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		start, end, ok := sharedMappingUnder(sc.Bytes(), prefix)
		if !ok {
			continue
		}
		// The range is Badger's, not a Go value: the raw call passes
		// the addresses without making a slice of them.
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_PAGEOUT)
		switch errno {
		case 0:
		case unix.ENOMEM:
			continue // unmapped since the list was read: nothing to do
		default:
			return total, fmt.Errorf("madvise(MADV_PAGEOUT) %s: %w", dir, errno)
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}

// fileResident returns the process's file-backed resident memory: the
// third field of /proc/self/statm (resident shared pages, which for a Go
// program is RssFile) times the page size.
func fileResident() (int64, error) {
	var buf [128]byte
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	n, err := f.Read(buf[:])
	f.Close()
	if err != nil {
		return 0, err
	}
	fields := bytes.Fields(buf[:n])
	if len(fields) < 3 {
		return 0, fmt.Errorf("/proc/self/statm: %q: too few fields", buf[:n])
	}
	pages, err := strconv.ParseInt(string(fields[2]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// sharedMappingUnder parses one line of /proc/self/maps
// ("start-end perms offset dev inode path") and reports the address range
// if the mapping is shared and its path starts with prefix.
func sharedMappingUnder(line, prefix []byte) (start, end uintptr, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 6 || len(fields[1]) != 4 || fields[1][3] != 's' {
		return 0, 0, false
	}
	// The path is the rest of the line after the inode; it may contain
	// spaces, and a deleted file ends with " (deleted)".
	i := bytes.Index(line, fields[5])
	if !bytes.HasPrefix(line[i:], prefix) {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte{'-'})
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
