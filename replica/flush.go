package replica

import (
	"slices"
	"strings"
)

// flush is how a batch of applied entries is made durable before it is
// recorded and confirmed.
type flush int

const (
	// flushNone: the batch wrote no file; nothing is flushed.
	flushNone flush = iota
	// flushEach: each temp file is flushed (fsync, data and metadata)
	// before its rename; after the renames, each file whose metadata alone
	// changed and the directories of every entry put in place (with their
	// parents, which the batch may have created) are flushed. Only this
	// batch's entries reach the disk.
	flushEach
	// flushFS: one syncfs(2) before the renames and one after. Cheaper
	// than an fsync per file for many files, but it also writes out
	// whatever other programs left dirty on the filesystem.
	flushFS
)

func (f flush) String() string {
	return [...]string{"none", "each", "fs"}[f]
}

// flushEachMax is the most temp files a batch flushes one by one. Up to
// about this many 4 KiB files, fsyncs issued 16 at once plus one of the
// directory cost less than two syncfs calls on an otherwise idle ext4, and
// their cost does not depend on other programs' writes
// (BenchmarkBatchFlush in package vfs).
const flushEachMax = 64

// chooseFlush picks how a batch that writes files temp files is flushed.
func chooseFlush(files int) flush {
	switch {
	case files <= 0:
		return flushNone
	case files <= flushEachMax:
		return flushEach
	}
	return flushFS
}

// flushAfter picks how the entries a batch put in place are flushed
// before they are recorded and confirmed. plan is what the batch's temp
// files were written for; a batch that renamed no temp file still removed
// files, made directories and links or changed metadata, and those must
// reach the disk too: a deletion confirmed but lost in a crash would bring
// the file back at the next scan as a new version, resurrecting it on every
// peer.
func flushAfter(plan flush, renamedTemps bool, entries int) flush {
	if renamedTemps {
		return plan
	}
	return chooseFlush(entries)
}

// dirsToFlush returns the directories whose entries must be flushed for
// the given paths to be durable where they are: each path's parent and
// every directory above it up to the folder root ("."), each once,
// deepest first.
func dirsToFlush(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		for {
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				p = "."
			} else {
				p = p[:i]
			}
			if seen[p] {
				break
			}
			seen[p] = true
			out = append(out, p)
			if p == "." {
				break
			}
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return depth(b) - depth(a) })
	return out
}

func depth(dir string) int {
	if dir == "." {
		return 0
	}
	return strings.Count(dir, "/") + 1
}
