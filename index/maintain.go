package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ResetFolder gives folder a fresh, empty index with a new epoch, for a
// resync: peers that see the new epoch start over from sequence 0, and the
// folder's sequences continue above the old ones, so no sequence is ever
// reused. The switch is one transaction; the old records, sequence log,
// chunk locations and peer progress are removed afterwards by Maintain
// (until then they are invisible).
func (ix *Index) ResetFolder(folder string) (FolderInfo, error) {
	defer ix.writing()()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old, err := ix.ensureFolder(folder)
	if err != nil {
		return FolderInfo{}, err
	}
	var nf fid
	var info FolderInfo
	err = ix.update(func(txn *badger.Txn) error {
		meta, err := ix.getMeta(txn, old)
		if err != nil {
			return err
		}
		if nf, err = ix.allocFolder(txn, folder, meta.Sequence); err != nil {
			return err
		}
		if err := txn.Set(garbageKey(old), nil); err != nil {
			return err
		}
		info, err = ix.getMeta(txn, nf)
		return err
	})
	if err != nil {
		return FolderInfo{}, fmt.Errorf("index: reset folder %q: %w", folder, err)
	}
	ix.fmu.Lock()
	delete(ix.byID, old)
	ix.byName[folder] = nf
	ix.byID[nf] = folder
	ix.fmu.Unlock()
	ix.log.Info("index folder reset", "folder", folder)
	return info, nil
}

// Run first loads the filter of stored chunk hashes (presence.go), then
// does maintenance every Options.MaintainInterval until ctx is done, and
// returns nil. It starts no goroutine. A round is skipped when
// nothing was written since the last one that succeeded: there is then
// nothing to collect, and an idle index stays idle. A failed round is
// logged and retried at the next interval.
func (ix *Index) Run(ctx context.Context) error {
	if err := ix.loadPresence(ctx); err != nil && ctx.Err() == nil {
		// LocateAll seeks every hash, as without the filter.
		ix.log.Warn("reading the chunk hashes for the lookup filter failed", "err", err)
	}
	t := time.NewTicker(ix.opts.MaintainInterval)
	defer t.Stop()
	var done uint64
	first := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n := ix.idle.written()
		if !first && n == done {
			continue
		}
		if err := ix.Maintain(ctx); err != nil {
			if ctx.Err() == nil {
				ix.log.Warn("index maintenance failed", "err", err)
			}
		} else {
			first, done = false, n
		}
		if ix.maintained != nil {
			ix.maintained()
		}
	}
}

// gcDiscardRatio is the share of a value-log file that must be garbage
// before Maintain rewrites it.
const gcDiscardRatio = 0.5

// Maintain does one round of maintenance: it removes what ResetFolder left
// behind, then runs Badger's value-log garbage collection until no file is
// worth rewriting.
func (ix *Index) Maintain(ctx context.Context) error {
	defer ix.maintaining()()
	if err := ix.collectGarbage(ctx); err != nil {
		return err
	}
	for ctx.Err() == nil {
		err := ix.db.RunValueLogGC(gcDiscardRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("index: value-log GC: %w", err)
		}
	}
	return ctx.Err()
}

// collectGarbage removes the data of reset folders, a batch at a time. Each
// batch removes whole records with their sequence entry and chunk
// locations, so the index stays consistent if it stops anywhere.
func (ix *Index) collectGarbage(ctx context.Context) error {
	var dead []fid
	err := ix.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindGarbage}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			f, rest, err := parseFolderKey(it.Item().Key(), kindGarbage)
			if err != nil || len(rest) != 0 {
				return fmt.Errorf("index: garbage key %x: %w", it.Item().Key(), ErrCorrupt)
			}
			dead = append(dead, f)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range dead {
		if err := ix.dropFolder(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// dropFolder needs no lock: nothing reads or writes a reset folder's id.
func (ix *Index) dropFolder(ctx context.Context, f fid) error {
	b := ix.newBudget()
	// Records first, each after its chunk locations, so that a record
	// whose removal was interrupted is found again next time.
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var ops []op
		var size int64
		prefix := folderPrefix(kindRecord, f)
		err := ix.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				path := string(it.Item().Key()[len(prefix):])
				rec, err := ix.decodeItem(f, path, it.Item())
				if err != nil {
					return err
				}
				more := ix.appendLocOps(nil, f, path, rec.Manifest.Chunks, nil)
				more = append(more, op{key: seqKey(f, rec.Sequence), del: true}, op{key: recordKey(f, path), del: true})
				var c int64
				for _, o := range more {
					c += opCost(o)
				}
				if len(ops) > 0 && (size+c >= b.size/2 || int64(len(ops)+len(more)) >= b.count/2) {
					break
				}
				ops = append(ops, more...)
				size += c
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(ops) == 0 {
			break
		}
		if err := ix.runOps(ops); err != nil {
			return fmt.Errorf("index: remove reset folder data: %w", err)
		}
	}
	// Then everything else keyed by the folder, and the marker last.
	for _, kind := range []byte{kindSeq, kindProgress, kindPending} {
		var ops []op
		prefix := folderPrefix(kind, f)
		err := ix.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				ops = append(ops, op{key: it.Item().KeyCopy(nil), del: true})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := ix.runOps(ops); err != nil {
			return err
		}
	}
	return ix.runOps([]op{{key: metaKey(f), del: true}, {key: garbageKey(f), del: true}})
}
