package daemon

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
)

// sysctlFile is where an operator puts the kernel settings lockstep asks
// for: it overrides the packaged /usr/lib/sysctl.d/60-lockstep.conf.
const sysctlFile = "/etc/sysctl.d/60-lockstep.conf"

// The values the package's sysctl file sets, and the least the daemon
// recommends.
const (
	recommendedWatches   = 1 << 20
	recommendedInstances = 1024
	recommendedQueued    = 65536
)

// kernelLimits are the inotify limits in force; 0 means unreadable.
type kernelLimits struct {
	MaxUserWatches   int // fs.inotify.max_user_watches
	MaxUserInstances int // fs.inotify.max_user_instances
	MaxQueuedEvents  int // fs.inotify.max_queued_events
}

// limitWarning is one kernel limit set too low.
type limitWarning struct {
	Sysctl     string // e.g. fs.inotify.max_user_watches
	Have, Want int
	Why        string
}

// Line is the sysctl.d line that fixes the limit.
func (w limitWarning) Line() string { return fmt.Sprintf("%s = %d", w.Sysctl, w.Want) }

func (w limitWarning) String() string {
	return fmt.Sprintf("%s is %d, too low: %s; add the line %q to %s and run 'sysctl --system'",
		w.Sysctl, w.Have, w.Why, w.Line(), sysctlFile)
}

// checkLimits decides which inotify limits are too low for watches
// directory watches and instances inotify instances (one per folder).
// The watch and instance limits are shared by every inotify user of the
// uid, so each must leave headroom: watches at most 80% of the limit,
// instances at most half of it. Queued events
// below the packaged value make overflows (and full rescans) likely under
// a large deploy. A limit that could not be read is not judged.
func checkLimits(have kernelLimits, watches, instances int) []limitWarning {
	var out []limitWarning
	if h := have.MaxUserWatches; h > 0 && watches > h/10*8 {
		out = append(out, limitWarning{
			Sysctl: "fs.inotify.max_user_watches", Have: h,
			Want: max(recommendedWatches, ceilPow2(2*watches)),
			Why:  fmt.Sprintf("the folders need %d directory watches, and other inotify users of this uid share the limit", watches),
		})
	}
	if h := have.MaxUserInstances; h > 0 && instances > h/2 {
		out = append(out, limitWarning{
			Sysctl: "fs.inotify.max_user_instances", Have: h,
			Want: max(recommendedInstances, ceilPow2(2*instances)),
			Why:  fmt.Sprintf("the %d folders use one inotify instance each, and other inotify users of this uid share the limit", instances),
		})
	}
	if h := have.MaxQueuedEvents; h > 0 && h < recommendedQueued {
		out = append(out, limitWarning{
			Sysctl: "fs.inotify.max_queued_events", Have: h, Want: recommendedQueued,
			Why: "a large deploy overflows the event queue, and every overflow costs a full rescan",
		})
	}
	return out
}

// ceilPow2 returns the smallest power of two >= n (1 for n <= 1).
func ceilPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// readKernelLimits reads the inotify limits from /proc/sys.
func readKernelLimits() kernelLimits {
	return kernelLimits{
		MaxUserWatches:   readSysctl("/proc/sys/fs/inotify/max_user_watches"),
		MaxUserInstances: readSysctl("/proc/sys/fs/inotify/max_user_instances"),
		MaxQueuedEvents:  readSysctl("/proc/sys/fs/inotify/max_queued_events"),
	}
}

func readSysctl(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// checkKernelLimits waits until every folder's watcher has set up its
// watches (started is closed then), counts them, and logs one warning per
// inotify limit that is too low.
func (d *Daemon) checkKernelLimits(ctx context.Context, started <-chan struct{}) error {
	select {
	case <-started:
	case <-ctx.Done():
		return nil
	}
	watches := 0
	for _, f := range d.folders {
		watches += f.watcher.Stats().WatchedDirs
	}
	for _, w := range checkLimits(d.readLimits(), watches, len(d.folders)) {
		d.log.Warn("kernel limit too low: "+w.String(), "sysctl", w.Line(), "file", sysctlFile)
	}
	return nil
}
