// Package scanner finds what changed in a synced folder by comparing it
// with the index, and records each change as a new local version.
//
// A scan walks the folder (Scan) or some paths of it and everything below
// them (ScanPaths, what the watcher reports). For each entry it stats,
// the quick check (decide) compares size, mtime, inode and device with the
// entry's record: a match is not read at all. Other files are read and cut
// into chunks; a version is recorded only when the content or the
// replicated metadata (mode, owner, mtime; a symlink's target) differ. A
// touch is a new version with the same chunks, so that peers get the
// mtime; a file that only moved to a new inode (replaced by an identical
// copy) just has its record's local fields refreshed. A new version raises
// the local node's counter in the vector, takes a stamp from the Clock and
// the folder's next sequence.
//
// Invariants:
//
//   - Nothing outside the folder is read: symlinks are recorded with their
//     target and never followed, and every directory opened is checked to
//     be the one its parent listed (so one swapped for a symlink meanwhile
//     is not followed either).
//   - A file is recorded only if it did not change while it was read: its
//     stat before and after (size, mtime, ctime) must agree, the bytes read
//     must equal its size, and its mtime must be older than racyWindow (a
//     write within the same timestamp tick would be invisible to the quick
//     check). Otherwise it goes to Result.Retry and its old record stays.
//     The one exception to the mtime rule is a file its writer is known to
//     be done with (ScanPathsComplete): it is recorded, remembered as racy
//     — read again at every look, never trusted to the quick check — and
//     retried until a read finds its mtime old.
//   - A file that Config.Writing says a writer still has open is not read:
//     it goes to Result.Retry and its old record stays.
//   - Records are written conditionally on the record the decision was
//     made from, so a version the replication engine stored meanwhile is
//     never overwritten (the path is retried).
//   - Deletions are held until the walk is over and the DeleteGuard has
//     agreed; ignored paths are never deleted, and an unreadable directory
//     deletes nothing. Sockets, devices and fifos are skipped with one
//     warning per path, as are names lockstep cannot sync (vfs.CheckPath).
//
// Work is parallel and bounded: Readers goroutines list directories (a
// depth-first work stack) and merge each listing with the index's records
// of that directory, both sorted by name, so memory holds one directory's
// names per reader; Hashers goroutines, each with its own reused Chunker,
// read files (from largeFile on with chunker.SplitParallel); one writer
// stores the results in batches of writeBatch records per transaction.
package scanner
