//go:build !linux

package watcher

import (
	"os"
	"time"
)

// defaultSource is the event source Run uses: fsnotify, which cannot tell
// when a writer is done with a file.
var defaultSource = newNotifySource

// timestampTick is the assumed coarsest timestamp tick where the kernel's
// coarse clock cannot be asked.
func timestampTick() time.Duration { return maxTimeTick }

// ctimeOf is zero here: placed files wait only placedQuiet.
func ctimeOf(os.FileInfo) time.Time { return time.Time{} }
