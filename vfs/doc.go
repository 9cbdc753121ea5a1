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
// Several files can be flushed together with one syncfs(2) (Folder.SyncFS)
// before their renames, which makes durability cheap for many small files
// without giving up the guarantee.
package vfs
