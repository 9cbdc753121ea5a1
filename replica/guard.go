package replica

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrMassDeletion is returned by DeleteGuard when a scan finds too much of
// the folder gone at once: the deletions are held back and the folder is
// paused, because an unmounted disk, a botched deploy or an `rm -rf` in the
// wrong directory must not empty every node of the cluster.
var ErrMassDeletion = errors.New(massDeletionPrefix)

const massDeletionPrefix = "mass deletion held back"

// errHoldForFullScan vetoes the deletions of a partial scan until a full
// scan has judged them.
var errHoldForFullScan = errors.New("many deletions: held for a full scan")

// deleteWindow is how long deletions count together against the guard: an
// `rm -rf` reaches the scanner as several batches within it.
const deleteWindow = time.Minute

// deleteQuiet is how long held deletions must stop coming before a full
// scan judges them.
const deleteQuiet = time.Second

// DeleteGuard is the scanner's veto on deletions: it trips when at least
// delete_guard_min entries and at least the share delete_guard of the
// folder vanish within deleteWindow, unless an operator accepted the
// deletions with Resume. It has the scanner.DeleteGuard signature; the
// scanner's total (the scanned subtree) is replaced by the whole folder's.
func (f *Folder) DeleteGuard(_ string, deletions, _ int) error {
	g := f.conf()
	info, err := f.ix.Info(f.id)
	if err != nil {
		return err
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	recent := 0
	keep := f.deletes[:0]
	for _, d := range f.deletes {
		if now.Sub(d.at) < deleteWindow {
			keep = append(keep, d)
			recent += d.n
		}
	}
	f.deletes = keep
	total := int(info.Entries()) + recent // the folder before the window's deletions
	if !f.fullScanning && recent+deletions >= max(g.DeleteGuardMin, 1) && g.DeleteGuard > 0 && !f.acceptDeletes {
		// Many deletions seen through a part of the folder: hold them and
		// let a full scan, which sees the whole extent, decide.
		return errHoldForFullScan
	}
	if Trips(g.DeleteGuard, g.DeleteGuardMin, recent+deletions, total) {
		if !f.acceptDeletes {
			return fmt.Errorf("%w: %d of %d entries vanished within %s; restore them, or run 'lockstep resume --folder %s --accept-deletes' to delete them on every node",
				ErrMassDeletion, recent+deletions, total, deleteWindow, f.id)
		}
		f.acceptDeletes = false
		f.deletes = nil
		f.log.Warn("mass deletion accepted by the operator", "deleted", deletions, "of", total)
		return nil
	}
	f.deletes = append(f.deletes, deletion{at: now, n: deletions})
	return nil
}

type deletion struct {
	at time.Time
	n  int
}

// Trips is the pure rule behind DeleteGuard.
func Trips(share float64, minimum, deletions, total int) bool {
	return share > 0 && total > 0 && deletions >= max(minimum, 1) && float64(deletions) >= share*float64(total)
}

// rootOK checks that the folder root is still the directory the folder was
// opened on, and pauses the folder when it is not: a missing or replaced
// root must read as "nothing is known", never as "everything was deleted".
// It resumes the folder when the root is back.
func (f *Folder) rootOK() bool {
	reason := f.rootProblem(true)
	f.mu.Lock()
	if reason != "" {
		f.pause, f.pauseDeletes = reason, false
	} else if !f.pauseDeletes {
		f.pause = ""
	}
	f.mu.Unlock()
	f.changed()
	return reason == ""
}

// rootProblem says what is wrong with the folder root, or "". The device
// check is skipped for a resync, which records the new device.
func (f *Folder) rootProblem(checkDevice bool) string {
	path := f.opts.Folder.Path
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("folder root %s is missing or unreadable (%v); restore or remount it", path, err)
	}
	if !st.IsDir() {
		return fmt.Sprintf("folder root %s is not a directory", path)
	}
	open, err := f.fs.RootInfo()
	if err != nil {
		return fmt.Sprintf("folder root %s: %v", path, err)
	}
	if !os.SameFile(st, open) {
		return fmt.Sprintf("folder root %s was replaced by another directory; restart lockstep to use the new one", path)
	}
	info, err := f.ix.Info(f.id)
	if checkDevice && err == nil && info.RootDevice != 0 {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && uint64(sys.Dev) != info.RootDevice {
			return fmt.Sprintf("folder root %s is on another filesystem than recorded (device %d, was %d); remount the original or run 'lockstep resync --folder %s'", path, sys.Dev, info.RootDevice, f.id)
		}
	}
	return ""
}

// Resume asks the folder to check its root again and rescan; with
// acceptDeletes, deletions held back by the guard go through on that scan.
func (f *Folder) Resume(acceptDeletes bool) {
	f.mu.Lock()
	f.acceptDeletes = acceptDeletes
	f.mu.Unlock()
	select {
	case f.rescan <- struct{}{}:
	default:
	}
}
