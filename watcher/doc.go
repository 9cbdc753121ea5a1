// Package watcher turns filesystem events in one synced folder into
// "these paths may have changed" for the scanner, once each path has
// stopped changing. It knows nothing of content, hashes or the index: a
// reported path is a hint to stat, never a claim that something changed.
//
// # Watching
//
// inotify watches are not recursive, so every directory gets its own watch
// (on Linux inotify read directly, elsewhere fsnotify). A new directory is
// watched the moment its creation is seen, then listed, and its
// subdirectories likewise; only then is the directory reported. The scanner walks a reported directory, so
// files created in it before its watch existed are not missed. A directory
// removed or renamed away loses its watch and those of its whole subtree
// (a watch follows the inode, so one left on a renamed directory would
// report its files under the old name); a rename is reported under both
// names, which the scanner sees as deletes plus creates. Ignored
// directories and every name beginning with ".lockstep" (lockstep's own
// temporary and staging names) are never watched and never reported,
// whatever the ignore filter says.
//
// # Settling
//
// A path is reported once it has been quiet for a delay that depends on
// what was seen last:
//
//   - after a write (IN_MODIFY), the settle time (default 50ms): more
//     writes may follow, and each one restarts the wait;
//   - after a non-empty file appears (created), a removal, a rename away
//     or a change of attributes, the prompt time (default settle/10, but
//     more than the timestamp tick: 5ms): none of these leaves a
//     half-written file behind, and a write that follows puts the path
//     back on the settle clock. An empty new file is most likely open in a
//     writer that has not written yet, so it waits the full settle time;
//   - after a regular file is renamed into place (atomic writers, uploads,
//     rsync), 1ms, or until a timestamp tick has passed since its ctime
//     if that is later (on Linux, where its writer is known to be done;
//     a rename is a touch elsewhere): it was finished elsewhere, and by
//     then Writing can tell that every event up to its ctime was read, so
//     the scanner reads it at once. An attribute change right after (PHP's
//     chmod after move_uploaded_file) keeps that short wait.
//
// Events below a directory that is itself pending (a new directory still
// being filled, as by tar or cp -r) move that directory's deadline instead
// of adding paths: the directory's one report covers its subtree, so a
// deploy is typically reported once per new top-level directory. A
// directory absorbs its children's events for at most max(1s, 20×settle),
// so a new directory under constant traffic is still reported, and its
// later changes path by path. The
// decisions live in settler, a clock-free state machine; Run only feeds it
// events and the time.
//
// # Writers (Linux)
//
// fsnotify hides two signals that say when a writer is done with a file,
// so on Linux the watcher reads inotify itself (source_linux.go):
//
//   - a name renamed into place (IN_MOVED_TO) or a file closed after
//     writing (IN_CLOSE_WRITE) is finished: reported after the short wait
//     above or the prompt time whatever writes came before, and tagged in
//     Batch.Complete, so the scanner may record it though its mtime is
//     fresh;
//   - a file created (with one link) or written, and not closed since, is
//     open: held until its close, for at most max(2s, 40×settle) from its
//     opening, then reported as it is. An empty file found in a directory
//     just created counts as open (its creation was not seen). Writing
//     tells a scanner about open files, and about files changed after the
//     last event read and applied (the loop is behind), so that it leaves
//     them alone: a writer that stalls between creating and filling a file
//     never gets the empty file recorded.
//
// Where closes are not reported (fsnotify: other platforms), a writer that
// pauses longer than the settle time mid-file gets its file reported
// early; settling plus the scanner's own checks (the file did not change
// while read, its mtime is not racy) are what guard against half-written
// files, and its next write reports it again.
//
// # Output and memory
//
// Run sends Batches on the caller's channel: up to MaxBatch paths in the
// order they settled, or a Rescan of the whole folder. While the consumer
// is slow, events keep being read and coalesce: each distinct path is held
// once. Beyond MaxPending distinct paths the watcher forgets them all and
// emits one rescan instead, so memory is bounded whatever the event rate.
//
// # Rescans
//
// A rescan is asked for at start (once every directory is watched), when
// the kernel's event queue overflowed, when the event source reports an
// error, past MaxPending, and periodically (default 1h, ±10% jitter). It
// settles like a path — emitted once the folder has been quiet for the
// settle time, but never later than max(1s, 20×settle) after it was asked
// for — and it replaces every pending path, which it covers. After lost
// events, and at each periodic rescan, the watch set is rebuilt from
// scratch before the rescan is emitted: directories whose creation was
// lost get their watch, watches the kernel dropped silently (an unmount)
// come back.
//
// # Polling fallback
//
// When the folder cannot be watched — the per-user inotify watch limit is
// exhausted (ENOSPC), no inotify instance can be created, the root was
// removed or moved away — the watcher drops its watches, logs one error
// naming the cause (for the watch limit: fs.inotify.max_user_watches, its
// value and how many directories the folder needs), shows Mode Polling
// with that reason, and emits a full rescan every PollInterval. It goes
// back to watching by itself when the cause is gone: the limit was raised,
// the root is back.
//
// Invariants: Run is the only goroutine that touches the loop, the settler
// and the watch set; Stats and Mode may be read from anywhere. Every
// reported path is relative, slash-separated and clean, never the root and
// never a .lockstep name. Run returns only after the event source's reader
// has exited, and closes its output channel.
package watcher
