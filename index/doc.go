// Package index is this node's record of every synced folder: one Badger
// database (in <data_dir>/index) holding, per folder, a record per path
// (file, directory or symlink, with its stat data, chunk manifest, version
// vector, HLC stamp, origin node and tombstone flag), a sequence log, the
// chunk locations, per-peer progress and folder metadata (epoch, counts,
// root device). The key layout is described in keys.go; records use a
// versioned binary encoding (record.go), not gob or JSON, so they stay
// small and a decoder can refuse what it does not understand.
//
// # Invariants
//
// Every write of a record changes, in the same Badger transaction, the
// record, its entry in the sequence log, its chunk locations and the
// folder's counts. Hence, at every commit and after a crash at any point:
//
//   - each record has exactly one sequence-log entry, under its own
//     Sequence, and the log has no other entries: a path that changes
//     loses its old entry, so the log holds one entry per path, and
//     streaming it from sequence S (Since) yields every path changed after
//     S once, with its latest version;
//   - each live file's chunks have a location entry (hash → path, offset)
//     and no other location entries exist;
//   - the counts in FolderInfo equal what a scan of the records would give;
//   - sequences grow: each write takes the folder's next one, and
//     ResetFolder continues above the old ones.
//
// One exception keeps transactions bounded: a record whose chunk
// locations do not fit in one transaction (a file of many gigabytes) is
// stored with a pending entry holding its previous chunk list; the
// locations are then moved in further transactions and the pending entry
// removed last. Open finishes any such move a crash interrupted, before it
// returns, so the invariants hold for every opened Index.
//
// Records and metadata read back are validated; bytes that do not decode
// give an error wrapping ErrCorrupt that names the folder and key, never a
// panic (FuzzDecodeRecord).
//
// # Durability
//
// Badger runs with SyncWrites off: a commit writes to Badger's memory-mapped
// write-ahead log and returns without fsync. That survives a crash of the
// process (kill -9), since the kernel holds the pages, but not a power
// loss or kernel crash. Index.Sync flushes the log: call it before telling
// anyone that a version is durable (a quorum confirmation), and at the end
// of a scan. Apply batches many records per transaction, so a first scan of
// many files costs a few commits, not one fsync per file.
//
// # Memory
//
// Badger's defaults (64 MiB memtables ×5, 256 MiB block cache, unbounded
// table indexes, tables doubling in size per level) peak above 1 GiB on a
// million keys. Badger's arenas and table builders live on the Go heap, so
// the index runs with:
//
//   - two 2 MiB memtables: a memtable costs about three times its size
//     while it is flushed (4 MiB ones cost a first scan of 100k files
//     ~10 MiB more at its peak);
//   - no compression, hence no block cache: tables are read through the
//     page cache;
//   - no index cache: Badger caches table indexes and bloom filters only
//     for encrypted tables; an unencrypted table's are read in place from
//     its mapped file, cache or no cache, and the cache's goroutine woke
//     every 2.5 s for nothing;
//   - 1 MiB tables at every level (TableSizeMultiplier 1): a compaction
//     builds up to 13 tables at once, each in a buffer of twice the table
//     size, and tables doubling per level made that hundreds of MiB.
//     Against Badger's default of 2 MiB, a first scan of a million files
//     peaks at about 165 MiB of anonymous memory instead of 215, at the
//     same speed; one of 100k files at about 97 MiB instead of 78 (more
//     tables are built, each with a 3 MiB index buffer), so the anonymous
//     part grows half as fast with the number of files;
//   - the minimum of two compactors;
//   - values up to 64 KiB kept in the LSM tree (a manifest of up to ~1900
//     chunks), so iteration never reads the value log; 128 MiB value-log
//     files for the rare larger record.
//
// Badger's largest transaction is then 15% of a memtable (~300 KiB, some
// 750 new files), which Apply respects by splitting.
//
// Badger maps its table, memtable and value-log files, so every page it
// writes or reads there counts in the process's resident set: without more,
// about the whole index after a first scan. While the index is in use,
// pages.go reclaims those pages (MADV_PAGEOUT) whenever the process's
// file-backed resident memory exceeds 32 MiB, looking every 200 ms. TuneRuntime, which the daemon calls,
// sets GOGC to 50 (Badger's arenas and table builders make the heap's live
// part bursty) and a soft limit with debug.SetMemoryLimit.
// scanner.BenchmarkScan reports the anonymous and file-backed peaks apart.
// The one fixed structure of the index's own is the 1 MiB filter of chunk
// hashes (presence.go) that lets Locate and LocateAll skip the seek of a
// hash the index never held.
//
// # Maintenance
//
// Open starts no goroutine of its own (Badger starts its compactors; the
// idle check of idle.go and the pager of pages.go run on timers that Close
// stops and waits for). Run, called by the daemon, first reads the stored
// chunk hashes into that filter (~4M hashes/s, keys only), then does
// periodic maintenance (Maintain): removing the
// data ResetFolder left behind, and Badger's value-log garbage collection;
// a round with nothing written since the last is skipped.
//
// # Idle
//
// Badger's compactors poll for work every 50 ms each. The index pauses them
// (idle.go) once nothing has been written for two seconds and no level
// needs compacting, and resumes them when the next write begins, so an
// idle index costs almost no CPU. This reaches two unexported Badger
// methods; TestIdlePausesCompactors fails if an upgrade of Badger breaks
// that.
package index
