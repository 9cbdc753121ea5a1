package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/dgraph-io/badger/v4"

	"lockstep/chunker"
	"lockstep/conflict"
)

// Write is one record for Apply to store, with an optional precondition.
type Write struct {
	Record Record
	// Conditional makes the write happen only if the stored record of the
	// path still has sequence IfSequence (0: no record stored). A writer
	// that decided from a record it read earlier uses it so that it never
	// overwrites a version written meanwhile by someone else.
	Conditional bool
	IfSequence  uint64
	// KeepSequence rewrites the stored record in place, under its current
	// sequence, without announcing anything: for fields peers never see
	// (Inode, Device). The write is stale unless a record is stored with
	// the same Version.
	KeepSequence bool
	// Stale is set by Apply when the precondition failed and nothing was
	// written for this record.
	Stale bool
}

// Put stores recs in folder, in order, unconditionally, each under the
// next sequence, and sets each recs[i].Sequence. See Apply.
func (ix *Index) Put(folder string, recs []Record) error {
	ws := make([]Write, len(recs))
	for i := range recs {
		ws[i].Record = recs[i]
	}
	err := ix.Apply(folder, ws)
	for i := range recs {
		recs[i].Sequence = ws[i].Record.Sequence
	}
	return err
}

// Apply stores the records of ws in folder, in order. Every record that is
// written gets the folder's next sequence (ws[i].Record.Sequence is set),
// replaces the path's previous record, and in the same transaction moves
// the path's entry in the sequence log and its chunk locations and updates
// the folder's counts: after a crash at any point, each record is either
// wholly there or not at all. Many records share one transaction, so a
// batch is fast; a batch larger than a transaction is split, so after a
// crash a prefix of the batch may be stored. Records are validated first:
// one invalid record fails the whole batch before anything is written.
//
// Apply returns once the writes survive a crash of the process; call Sync
// to make them durable against power loss. The folder is created if new.
func (ix *Index) Apply(folder string, ws []Write) error {
	for i := range ws {
		if err := ws[i].Record.Validate(); err != nil {
			return fmt.Errorf("index: write folder %q: %w", folder, err)
		}
		if n := len(ws[i].Record.Manifest.Chunks); n > maxRecordSize/(chunker.HashSize+5) {
			return fmt.Errorf("index: write folder %q: %q: %d chunks are more than a record holds", folder, ws[i].Record.Path, n)
		}
	}
	defer ix.writing()()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	f, err := ix.ensureFolder(folder)
	if err != nil {
		return err
	}
	b := ix.newBudget()
	for i := 0; i < len(ws); {
		n, err := ix.applySome(f, ws[i:], b)
		if errors.Is(err, badger.ErrTxnTooBig) && b.count > 64 {
			// The estimate was off; Badger refused before committing
			// anything. Try again with half the room.
			b.size /= 2
			b.count /= 2
			continue
		}
		if err != nil {
			return fmt.Errorf("index: write folder %q: %w", folder, err)
		}
		i += n
	}
	return nil
}

// budget bounds what one transaction holds, a margin below Badger's limit
// (ErrTxnTooBig) so that Apply decides where to split instead of Badger.
type budget struct{ size, count int64 }

func (ix *Index) newBudget() budget {
	return budget{size: ix.db.MaxBatchSize() * 3 / 4, count: ix.db.MaxBatchCount() * 3 / 4}
}

// stager stages entries in a transaction and tracks their cost the way
// Badger does (Entry.estimateSizeAndSetThreshold plus the key version).
type stager struct {
	txn         *badger.Txn
	size, count int64
}

type op struct {
	key, val []byte
	del      bool
}

func opCost(o op) int64 {
	v := int64(len(o.val))
	if v >= valueThreshold {
		v = 12 // a value pointer
	}
	return int64(len(o.key)) + v + 2 + 10
}

func (s *stager) fits(ops []op, extra int64, b budget) bool {
	size, count := s.size+extra, s.count+1
	for _, o := range ops {
		size += opCost(o)
		count++
	}
	return size < b.size && count < b.count
}

func (s *stager) stage(ops []op) error {
	for _, o := range ops {
		s.size += opCost(o)
		s.count++
		var err error
		if o.del {
			err = s.txn.Delete(o.key)
		} else {
			err = s.txn.Set(o.key, o.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// metaCost is the most a folder's metadata entry costs.
const metaCost = 1 + fidLen + 80 + 2 + 10

// bigWrite is a record whose chunk locations did not fit in its
// transaction: they are moved afterwards, behind a pending entry.
type bigWrite struct {
	path     string
	old, new []chunker.Ref
}

// applySome stores as many of ws as fit in one transaction, and at least
// one, and returns how many it consumed.
func (ix *Index) applySome(f fid, ws []Write, b budget) (int, error) {
	txn := ix.newTxn(true)
	defer txn.Discard()
	st := stager{txn: txn}
	meta, err := ix.getMeta(txn, f)
	if err != nil {
		return 0, err
	}
	var (
		n   int
		big *bigWrite
		ops []op
	)
	for n < len(ws) && big == nil {
		w := &ws[n]
		w.Stale = false
		path := w.Record.Path
		old, found, err := ix.getRecord(txn, f, path)
		if err != nil {
			return 0, err
		}
		var oldSeq uint64
		if found {
			oldSeq = old.Sequence
		}
		if w.Conditional && oldSeq != w.IfSequence ||
			w.KeepSequence && (!found || old.Version.Compare(w.Record.Version) != conflict.Equal) {
			w.Stale = true
			n++
			continue
		}
		rec := w.Record
		next := meta
		ops = ops[:0]
		if w.KeepSequence {
			rec.Sequence = old.Sequence
		} else {
			next.Sequence++
			rec.Sequence = next.Sequence
			if found {
				ops = append(ops, op{key: seqKey(f, old.Sequence), del: true})
			}
			ops = append(ops, op{key: seqKey(f, rec.Sequence), val: []byte(path)})
		}
		ops = append(ops, op{key: recordKey(f, path), val: appendRecord(nil, &rec)})
		var oldRefs []chunker.Ref
		if found {
			next.count(&old, -1)
			oldRefs = old.Manifest.Chunks
		}
		next.count(&rec, +1)
		core := len(ops)
		ops = ix.appendLocOps(ops, f, path, oldRefs, rec.Manifest.Chunks)
		switch {
		case st.fits(ops, metaCost, b):
		case n > 0:
			// This record starts the next transaction.
			return ix.commitSome(txn, f, &meta, n, nil)
		default:
			// Alone it does not fit: store the record now, move its
			// chunk locations afterwards.
			pend := op{key: pendingKey(f, path), val: encodePending(oldRefs)}
			ops = append(ops[:core], pend)
			if !st.fits(ops, metaCost, b) {
				return 0, fmt.Errorf("%q: record too large for a transaction", path)
			}
			big = &bigWrite{path: path, old: oldRefs, new: rec.Manifest.Chunks}
		}
		if err := st.stage(ops); err != nil {
			return 0, err
		}
		meta = next
		w.Record.Sequence = rec.Sequence
		n++
	}
	return ix.commitSome(txn, f, &meta, n, big)
}

func (ix *Index) commitSome(txn *badger.Txn, f fid, meta *FolderInfo, n int, big *bigWrite) (int, error) {
	if err := txn.Set(metaKey(f), encodeMeta(meta)); err != nil {
		return 0, err
	}
	if err := txn.Commit(); err != nil {
		return 0, err
	}
	if big != nil {
		if err := ix.moveLocations(f, big.path, big.old, big.new); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// appendLocOps appends the operations that turn path's chunk locations for
// the chunk list old into those for new. Both lists are walked by offset,
// so chunks that stay where they were (a metadata-only change, an append)
// cost nothing.
//
// The hashes of new are added to the presence filter here, before the
// operations are applied.
func (ix *Index) appendLocOps(ops []op, f fid, path string, old, new []chunker.Ref) []op {
	for _, r := range new {
		ix.chunks.add(r.Hash)
	}
	var i, j int
	var oi, oj int64
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || i < len(old) && oi < oj:
			ops = append(ops, op{key: locKey(old[i].Hash, f, oi, path), del: true})
			oi += int64(old[i].Length)
			i++
		case i == len(old) || oj < oi:
			ops = append(ops, op{key: locKey(new[j].Hash, f, oj, path), val: locValue(new[j].Length)})
			oj += int64(new[j].Length)
			j++
		default: // same offset
			if old[i] != new[j] {
				if old[i].Hash != new[j].Hash {
					ops = append(ops, op{key: locKey(old[i].Hash, f, oi, path), del: true})
				}
				ops = append(ops, op{key: locKey(new[j].Hash, f, oj, path), val: locValue(new[j].Length)})
			}
			oi += int64(old[i].Length)
			oj += int64(new[j].Length)
			i++
			j++
		}
	}
	return ops
}

func locValue(n uint32) []byte { return binary.AppendUvarint(nil, uint64(n)) }

// moveLocations applies the chunk-location change of one path from old to
// new, then removes the path's pending entry. See runOps.
func (ix *Index) moveLocations(f fid, path string, old, new []chunker.Ref) error {
	ops := ix.appendLocOps(nil, f, path, old, new)
	ops = append(ops, op{key: pendingKey(f, path), del: true})
	if err := ix.runOps(ops); err != nil {
		return fmt.Errorf("%q: move chunk locations: %w", path, err)
	}
	return nil
}

// runOps applies ops in order, in as many transactions as it takes. Every
// operation is idempotent and the last one removes the pending entry that
// records the work, so after a crash repairPending can redo it all.
func (ix *Index) runOps(ops []op) error {
	b := ix.newBudget()
	for len(ops) > 0 {
		txn := ix.newTxn(true)
		st := stager{txn: txn}
		n := 0
		for n < len(ops) && (n == 0 || st.fits(ops[n:n+1], 0, b)) {
			if err := st.stage(ops[n : n+1]); err != nil {
				txn.Discard()
				return err
			}
			n++
		}
		err := txn.Commit()
		txn.Discard()
		if err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// repairPending finishes the chunk-location moves that a crash interrupted.
// It runs in Open, before anything else can write.
func (ix *Index) repairPending() error {
	type pending struct {
		f    fid
		path string
		old  []chunker.Ref
	}
	var todo []pending
	err := ix.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindPending}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			f, rest, err := parseFolderKey(it.Item().Key(), kindPending)
			if err != nil {
				return fmt.Errorf("%w: pending key %x: %v", ErrCorrupt, it.Item().Key(), err)
			}
			p := pending{f: f, path: string(rest)}
			err = it.Item().Value(func(v []byte) error {
				var err error
				p.old, err = decodePending(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("%w: pending entry of %q: %v", ErrCorrupt, p.path, err)
			}
			todo = append(todo, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range todo {
		var cur []chunker.Ref
		err := ix.view(func(txn *badger.Txn) error {
			rec, found, err := ix.getRecord(txn, p.f, p.path)
			if found {
				cur = rec.Manifest.Chunks
			}
			return err
		})
		if err != nil {
			return err
		}
		// Remove every old location, then put every current one back:
		// the old list and the current one may overlap in any way, and a
		// set after a delete of the same key wins.
		ops := ix.appendLocOps(nil, p.f, p.path, p.old, nil)
		ops = ix.appendLocOps(ops, p.f, p.path, nil, cur)
		ops = append(ops, op{key: pendingKey(p.f, p.path), del: true})
		if err := ix.runOps(ops); err != nil {
			return fmt.Errorf("%q: repair chunk locations: %w", p.path, err)
		}
		ix.log.Info("index: finished an interrupted chunk-location update", "path", p.path)
	}
	return nil
}

// Forget removes the records of paths, which must be tombstones, with their
// sequence-log entries: for deletions every peer has confirmed and that
// have been kept long enough. Paths without a record are skipped.
func (ix *Index) Forget(folder string, paths []string) error {
	defer ix.writing()()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	f, ok := ix.lookupFolder(folder)
	if !ok {
		return nil
	}
	b := ix.newBudget()
	for len(paths) > 0 {
		txn := ix.newTxn(true)
		st := stager{txn: txn}
		meta, err := ix.getMeta(txn, f)
		if err != nil {
			txn.Discard()
			return err
		}
		n := 0
		for ; n < len(paths); n++ {
			rec, found, err := ix.getRecord(txn, f, paths[n])
			if err != nil {
				txn.Discard()
				return err
			}
			if !found {
				continue
			}
			if !rec.Deleted {
				txn.Discard()
				return fmt.Errorf("index: forget %q in folder %q: %w", paths[n], folder, ErrNotTombstone)
			}
			ops := []op{{key: recordKey(f, rec.Path), del: true}, {key: seqKey(f, rec.Sequence), del: true}}
			if !st.fits(ops, metaCost, b) {
				break
			}
			if err := st.stage(ops); err != nil {
				txn.Discard()
				return err
			}
			meta.count(&rec, -1)
		}
		if err := txn.Set(metaKey(f), encodeMeta(&meta)); err != nil {
			txn.Discard()
			return err
		}
		err = txn.Commit()
		txn.Discard()
		if err != nil {
			return fmt.Errorf("index: forget in folder %q: %w", folder, err)
		}
		paths = paths[n:]
	}
	return nil
}

// SetProgress stores where replication with peer stands for folder.
func (ix *Index) SetProgress(folder string, peer conflict.NodeID, p Progress) error {
	defer ix.writing()()
	f, ok := ix.lookupFolder(folder)
	if !ok {
		ix.mu.Lock()
		var err error
		f, err = ix.ensureFolder(folder)
		ix.mu.Unlock()
		if err != nil {
			return err
		}
	}
	err := ix.update(func(txn *badger.Txn) error {
		return txn.Set(progressKey(f, uint64(peer)), encodeProgress(p))
	})
	if err != nil {
		return fmt.Errorf("index: set progress of folder %q with %016x: %w", folder, uint64(peer), err)
	}
	return nil
}

// SetRootDevice records the device of the folder's root directory.
func (ix *Index) SetRootDevice(folder string, dev uint64) error {
	defer ix.writing()()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	f, err := ix.ensureFolder(folder)
	if err != nil {
		return err
	}
	err = ix.update(func(txn *badger.Txn) error {
		meta, err := ix.getMeta(txn, f)
		if err != nil {
			return err
		}
		meta.RootDevice = dev
		return txn.Set(metaKey(f), encodeMeta(&meta))
	})
	if err != nil {
		return fmt.Errorf("index: set root device of folder %q: %w", folder, err)
	}
	return nil
}

func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
