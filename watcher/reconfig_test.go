package watcher

import (
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
)

func TestReconfigureSettle(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{}, &fakeSources{})
		defer r.stop(t)
		r.w.Reconfigure(Reconfig{Settle: 400 * time.Millisecond})
		synctest.Wait()
		r.send(t, fsnotify.Write, "log.txt")
		b, took := recv(t, r.out)
		if !slices.Equal(b.Paths, []string{"log.txt"}) || took != 400*time.Millisecond {
			t.Fatalf("batch %+v after %v, want log.txt after the new settle time 400ms", b, took)
		}
	})
}

func TestReconfigureRescanInterval(t *testing.T) {
	root := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := started(t, root, Options{RescanInterval: -1}, &fakeSources{})
		defer r.stop(t)
		expectQuiet(t, r.out, 2*time.Hour)
		r.w.Reconfigure(Reconfig{RescanInterval: time.Minute})
		b, took := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonPeriodic || took > 67*time.Second {
			t.Fatalf("batch %+v after %v, want a periodic rescan within a minute ± 10%% (and settle)", b, took)
		}
		r.w.Reconfigure(Reconfig{RescanInterval: -1})
		expectQuiet(t, r.out, 2*time.Hour)
	})
}

// After the ignore filter changed, Rewatch watches the directories it no
// longer ignores and asks for a rescan.
func TestReconfigureRewatch(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a", "cache/deep")
	synctest.Test(t, func(t *testing.T) {
		var ignoreCache atomic.Bool
		ignoreCache.Store(true)
		sources := &fakeSources{}
		r := started(t, root, Options{Ignore: func(rel string, isDir bool) bool {
			return ignoreCache.Load() && rel == "cache"
		}}, sources)
		defer r.stop(t)
		if got := sources.live(t).watchList(); slices.Contains(got, filepath.Join(root, "cache")) {
			t.Fatalf("ignored cache is watched: %q", got)
		}
		ignoreCache.Store(false)
		r.w.Reconfigure(Reconfig{Rewatch: true})
		b, _ := recv(t, r.out)
		if !b.Rescan || b.Reason != ReasonReconfigure {
			t.Fatalf("batch %+v, want a reconfigure rescan", b)
		}
		if got := sources.live(t).watchList(); !slices.Contains(got, filepath.Join(root, "cache/deep")) {
			t.Fatalf("after Rewatch watched %q, want cache/deep among them", got)
		}
	})
}
