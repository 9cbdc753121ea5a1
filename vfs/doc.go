// Package vfs is the one door through which lockstep touches a synced
// folder. A Folder wraps an os.Root, so no path — least of all one a peer
// sent — can reach outside the folder, and it adds the rules lockstep needs
// on top:
//
//   - paths are checked before use (CheckPath): relative, slash-separated,
//     clean, no "..", no component that is lockstep's own temp name;
//   - a path whose parent directories include a symlink is refused, so a
//     link inside the folder can never redirect a write;
//   - files are written under a temporary name beginning with ".lockstep",
//     flushed, given their mode and mtime, and only then renamed into place:
//     readers see the old file or the new one, never a mix (SPEC guarantee 1).
//
// A Dir (a directory opened once and checked, reached without a symlink)
// and Dirs (a batch's cache of them) resolve one name per call with the
// *at system calls — Lstat, Open for reading, Create of a temp file —
// instead of walking the whole path each time; Temp.Commit checks that the
// directory is still at its path before the rename (Dir.Verify).
//
// A temp file is flushed either on its own (Temp.Seal with sync, then
// Folder.Fsync of its directory after the rename) or, for a large batch,
// together with every other with one syncfs(2) before the renames and one
// after (Folder.SyncFS), which is cheaper for many files but also flushes
// whatever other programs wrote to the filesystem.
package vfs
