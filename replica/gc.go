package replica

import (
	"context"
	"errors"
	"time"

	"lockstep/index"
)

// Tombstones are kept so that a peer that missed a deletion, or that comes
// back with the old file, does not resurrect it. Once every peer of the
// folder has confirmed holding a tombstone and the folder's
// tombstone_retention has passed since the deletion, it is forgotten: the
// record and its sequence entry are removed, so deleted paths do not cost
// index space and stream time forever.

// gcBatch bounds the paths forgotten per index call.
const gcBatch = 1024

var errGCDone = errors.New("past the confirmed sequence")

// gcInterval is how often a folder looks for tombstones to forget: a
// quarter of the retention, between a second and an hour.
func gcInterval(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Second), time.Hour)
}

// Forgettable is the pure rule: a tombstone may go once every peer has
// confirmed a sequence at or past it and it is older than retention.
func Forgettable(r *index.Record, confirmedByAll uint64, now time.Time, retention time.Duration) bool {
	return r.Deleted && r.Sequence <= confirmedByAll && now.Sub(r.Stamp.Time()) >= retention
}

func (f *Folder) gcLoop(ctx context.Context) {
	for {
		// The retention may change on reload: the interval follows it.
		t := time.NewTimer(gcInterval(f.conf().TombstoneRetention))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if n, err := f.collectTombstones(ctx); err != nil && ctx.Err() == nil {
			f.log.Warn("forgetting confirmed tombstones failed", "err", err)
		} else if n > 0 {
			f.log.Info("forgot confirmed tombstones", "count", n)
		}
	}
}

// collectTombstones forgets the tombstones every peer holds that are older
// than the retention, and returns how many.
func (f *Folder) collectTombstones(ctx context.Context) (int, error) {
	f.mu.Lock()
	if f.resync != nil || f.pause != "" {
		f.mu.Unlock()
		return 0, nil
	}
	least := ^uint64(0) // with no peer, only the retention counts
	for _, p := range f.peers {
		least = min(least, p.progress.Confirmed)
	}
	f.mu.Unlock()
	if least == 0 {
		return 0, nil
	}
	now, retention := f.now(), f.conf().TombstoneRetention
	var paths []string
	err := f.ix.Since(ctx, f.id, 0, func(r index.Record) error {
		if r.Sequence > least {
			return errGCDone
		}
		if Forgettable(&r, least, now, retention) {
			paths = append(paths, r.Path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errGCDone) {
		return 0, err
	}
	for i := 0; i < len(paths); i += gcBatch {
		// Under the scanner's lock: a path recorded again meanwhile is no
		// tombstone any more, and Forget refuses it.
		f.scanMu.Lock()
		err := f.ix.Forget(f.id, paths[i:min(i+gcBatch, len(paths))])
		f.scanMu.Unlock()
		if errors.Is(err, index.ErrNotTombstone) {
			continue // recreated meanwhile; the next round sees the rest
		}
		if err != nil {
			return i, err
		}
	}
	return len(paths), nil
}
