package scanner

import (
	"context"
	"fmt"
	"time"

	"lockstep/conflict"
	"lockstep/index"
)

// writeBatch is how many records the writer stores per index.Apply: large
// enough that a first scan costs few commits, small enough that a watcher's
// change reaches the index without waiting for others.
const writeBatch = 1000

// writer stores the changes the readers and hashers decided, in batches.
// It is the only goroutine of a scan that issues stamps, so the Clock is
// called serially.
func (r *run) writer() {
	batch := make([]change, 0, writeBatch)
	for c := range r.writeCh {
		batch = append(batch, c)
		if len(batch) == writeBatch {
			r.store(batch)
			batch = batch[:0]
		}
	}
	r.store(batch)
}

// store writes a batch of changes, each conditional on the record it was
// decided from still being the stored one: a version written meanwhile by
// someone else (the replication engine) is never overwritten; the path is
// retried instead.
func (r *run) store(batch []change) {
	if len(batch) == 0 {
		return
	}
	r.mu.Lock()
	failed := r.err != nil
	r.mu.Unlock()
	if failed {
		return
	}
	cfg := &r.s.cfg
	now := cfg.Now()
	ws := make([]index.Write, len(batch))
	for i, c := range batch {
		w := &ws[i]
		w.Record = c.rec
		w.Conditional = true
		var oldVersion conflict.Vector
		if c.old != nil {
			w.IfSequence = c.old.Sequence
			oldVersion = c.old.Version
		}
		if c.act == refresh {
			w.KeepSequence = true
			w.Record.Version = c.old.Version
			w.Record.Stamp = c.old.Stamp
			w.Record.Origin = c.old.Origin
			continue
		}
		w.Record.Version = oldVersion.Update(cfg.Local)
		w.Record.Stamp = r.stamp(c, now)
		w.Record.Origin = cfg.Local
	}
	if err := r.s.ix.Apply(cfg.Folder, ws); err != nil {
		r.fail(err)
		return
	}
	for i, c := range batch {
		switch {
		case ws[i].Stale:
			r.retryLater(c.rec.Path)
		case c.act == refresh:
			r.c.refreshed.Add(1)
		case c.rec.Deleted:
			r.c.deleted.Add(1)
		default:
			r.c.changed.Add(1)
		}
	}
}

// stamp dates a new local version. Normally that is now, from the Clock.
// A full scan of a folder the index knew nothing of (a new node, or one
// whose index was lost) dates what it finds by the files' mtimes instead: those
// versions are not new changes but whatever the disk held, and a stale
// file restored from a backup must not beat the cluster's later version of
// it by being recorded today. Identical content merges either way.
func (r *run) stamp(c change, now time.Time) conflict.Stamp {
	if r.full && r.before.Sequence == 0 && c.old == nil && c.rec.MTime > 0 {
		ms := min(c.rec.MTime/int64(time.Millisecond), now.UnixMilli())
		return conflict.MakeStamp(uint64(ms), 0)
	}
	return r.s.cfg.Clock.Now(now)
}

// delete records the deletions found by the walk, once the DeleteGuard
// agrees: each deleted path and every live record below it becomes a
// tombstone.
func (r *run) delete(ctx context.Context) error {
	cfg := &r.s.cfg
	if cfg.DeleteGuard != nil {
		if err := cfg.DeleteGuard(cfg.Folder, r.ndel, int(r.before.Entries())); err != nil {
			r.s.log.Warn("deletions held back", "op", "scan", "deletions", r.ndel,
				"entries", r.before.Entries(), "err", err)
			return fmt.Errorf("%d deletions held back: %w", r.ndel, err)
		}
	}
	batch := make([]change, 0, writeBatch)
	for _, d := range r.deletions {
		err := r.s.ix.Walk(ctx, cfg.Folder, d.rel, func(rec index.Record) error {
			if rec.Deleted || d.childrenOnly && rec.Path == d.rel ||
				rec.Path != d.rel && cfg.Ignore.Match(rec.Path, rec.Type == index.Dir) {
				return nil
			}
			old := rec
			batch = append(batch, change{rec: tombstone(&old), old: &old, act: version})
			if len(batch) == writeBatch {
				r.store(batch)
				batch = batch[:0]
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	r.store(batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
