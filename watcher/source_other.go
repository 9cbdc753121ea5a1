//go:build !linux

package watcher

// defaultSource is the event source Run uses: fsnotify, which cannot tell
// when a writer is done with a file.
var defaultSource = newNotifySource
