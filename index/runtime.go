package index

import (
	"os"
	"runtime/debug"
)

// Garbage collection for a process that holds an Index (see doc.go,
// "Memory"). Badger's memtable arenas and table builders are a few MiB
// each and come and go with every flush and compaction, so the live heap
// of a busy index is mostly Badger's and the default GOGC of 100 lets the
// heap reach twice that before collecting. 50 keeps the peak at 1.5× the
// live heap; a first scan of 100k files peaks about 25 MiB lower for ~5%
// more CPU. The soft limit keeps the collector from letting the heap grow
// with the number of files.
const (
	gcPercent   = 50
	memoryLimit = 512 << 20
)

// TuneRuntime sets the garbage collector's target and soft memory limit
// for a process holding an Index, unless the operator set GOGC or
// GOMEMLIMIT in the environment, which then win.
func TuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
