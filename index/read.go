package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"lockstep/chunker"
	"lockstep/conflict"
)

// renewEvery is how many keys a long iteration reads from one snapshot
// before it takes a fresh one and seeks back to where it was. A snapshot
// held for long keeps Badger from discarding old versions and deleting
// compacted tables; a callback that blocks (a slow peer) must not do that
// for the whole iteration.
var renewEvery = 4096

func (ix *Index) corrupt(f fid, what string, err error) error {
	name, _ := ix.folderName(f)
	return fmt.Errorf("index: folder %q, %s: %w: %v", name, what, ErrCorrupt, err)
}

// getMeta reads a folder's metadata in txn.
func (ix *Index) getMeta(txn *badger.Txn, f fid) (FolderInfo, error) {
	item, err := txn.Get(metaKey(f))
	if err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return FolderInfo{}, ix.corrupt(f, "metadata", errors.New("missing"))
		}
		return FolderInfo{}, err
	}
	var fi FolderInfo
	err = item.Value(func(v []byte) error {
		var err error
		fi, err = decodeMeta(v)
		return err
	})
	if err != nil {
		return fi, ix.corrupt(f, "metadata", err)
	}
	return fi, nil
}

// getRecord reads path's record in txn.
func (ix *Index) getRecord(txn *badger.Txn, f fid, path string) (Record, bool, error) {
	item, err := txn.Get(recordKey(f, path))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	rec, err := ix.decodeItem(f, path, item)
	return rec, err == nil, err
}

func (ix *Index) decodeItem(f fid, path string, item *badger.Item) (Record, error) {
	var rec Record
	name, _ := ix.folderName(f)
	err := item.Value(func(v []byte) error {
		var err error
		rec, err = decodeRecordAt(name, path, v)
		return err
	})
	return rec, err
}

// Get returns the record of path in folder; ok is false when there is none.
func (ix *Index) Get(folder, path string) (rec Record, ok bool, err error) {
	f, known := ix.lookupFolder(folder)
	if !known {
		return Record{}, false, nil
	}
	err = ix.view(func(txn *badger.Txn) error {
		rec, ok, err = ix.getRecord(txn, f, path)
		return err
	})
	return rec, ok, err
}

// GetMany is Get for many paths at once, in one snapshot: recs and ok are
// parallel to paths. The paths are looked up in key order with one
// iterator, which proves a run of absent paths absent with one seek (the
// files of a directory new here) and steps from one present path to the
// next when they are neighbours, instead of a point lookup each.
func (ix *Index) GetMany(folder string, paths []string) (recs []Record, ok []bool, err error) {
	recs, ok = make([]Record, len(paths)), make([]bool, len(paths))
	f, known := ix.lookupFolder(folder)
	if !known || len(paths) == 0 {
		return recs, ok, nil
	}
	order := make([]int, len(paths))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(paths[a], paths[b]) })
	err = ix.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: folderPrefix(kindRecord, f)})
		defer it.Close()
		var key []byte
		for n, i := range order {
			key = appendRecordKey(key[:0], f, paths[i])
			if n == 0 || !stepTo(it, key, cursorSteps) {
				it.Seek(key)
			}
			if !it.Valid() || !bytes.Equal(it.Item().Key(), key) {
				continue
			}
			rec, err := ix.decodeItem(f, paths[i], it.Item())
			if err != nil {
				return err
			}
			recs[i], ok[i] = rec, true
		}
		return nil
	})
	return recs, ok, err
}

// stepTo moves it forward, at most steps keys, to the first key at or
// after key; false when that needs a seek (it is further ahead).
func stepTo(it *badger.Iterator, key []byte, steps int) bool {
	for range steps {
		if !it.Valid() || bytes.Compare(it.Item().Key(), key) >= 0 {
			return true
		}
		it.Next()
	}
	return !it.Valid() || bytes.Compare(it.Item().Key(), key) >= 0
}

// Info returns the folder's metadata, creating the folder (and its epoch)
// if it is new: a folder exists from the first time it is asked about.
func (ix *Index) Info(folder string) (FolderInfo, error) {
	f, ok := ix.lookupFolder(folder)
	if !ok {
		ix.mu.Lock()
		var err error
		f, err = ix.ensureFolder(folder)
		ix.mu.Unlock()
		if err != nil {
			return FolderInfo{}, err
		}
	}
	var fi FolderInfo
	err := ix.view(func(txn *badger.Txn) error {
		var err error
		fi, err = ix.getMeta(txn, f)
		return err
	})
	return fi, err
}

// scan iterates over the keys with prefix, in order, from start. visit
// returns the key to continue from, or nil for the next one. The snapshot
// is renewed every renewEvery keys (see there), so a key written during the
// scan may or may not be seen; one that exists throughout is seen once.
func (ix *Index) scan(ctx context.Context, prefix, start []byte, visit func(txn *badger.Txn, item *badger.Item) ([]byte, error)) error {
	if start == nil {
		start = prefix
	}
	for {
		resume, err := ix.scanSome(ctx, prefix, start, visit)
		if err != nil || resume == nil {
			return err
		}
		start = resume
	}
}

func (ix *Index) scanSome(ctx context.Context, prefix, start []byte, visit func(*badger.Txn, *badger.Item) ([]byte, error)) ([]byte, error) {
	txn := ix.newTxn(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Seek(start)
	for n := 0; it.Valid(); n++ {
		if n == renewEvery {
			return it.Item().KeyCopy(nil), nil
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		next, err := visit(txn, it.Item())
		if err != nil {
			return nil, err
		}
		if next != nil {
			it.Seek(next)
		} else {
			it.Next()
		}
	}
	return nil, nil
}

// Walk calls fn with the record of prefix and of every path below it, in
// path order (bytewise); prefix "" walks the whole folder. Memory stays
// bounded whatever the folder's size. fn's error stops the walk and is
// returned.
func (ix *Index) Walk(ctx context.Context, folder, prefix string, fn func(Record) error) error {
	f, ok := ix.lookupFolder(folder)
	if !ok {
		return nil
	}
	if prefix != "" {
		rec, ok, err := ix.Get(folder, prefix)
		if err != nil {
			return err
		}
		if ok {
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
	p := subtreePrefix(f, prefix)
	head := 1 + fidLen
	return ix.scan(ctx, p, nil, func(_ *badger.Txn, item *badger.Item) ([]byte, error) {
		rec, err := ix.decodeItem(f, string(item.Key()[head:]), item)
		if err != nil {
			return nil, err
		}
		return nil, fn(rec)
	})
}

// Children calls fn with the records of dir's direct children ("" is the
// folder root), in name order (bytewise), without reading the records
// below them: each subdirectory's contents are skipped with one seek.
func (ix *Index) Children(ctx context.Context, folder, dir string, fn func(Record) error) error {
	f, ok := ix.lookupFolder(folder)
	if !ok {
		return nil
	}
	p := subtreePrefix(f, dir)
	head := 1 + fidLen
	return ix.scan(ctx, p, nil, func(_ *badger.Txn, item *badger.Item) ([]byte, error) {
		key := item.Key()
		if i := bytes.IndexByte(key[len(p):], '/'); i >= 0 {
			// Below a child: continue after everything under it,
			// at child + ('/'+1).
			next := append([]byte(nil), key[:len(p)+i]...)
			return append(next, '/'+1), nil
		}
		rec, err := ix.decodeItem(f, string(key[head:]), item)
		if err != nil {
			return nil, err
		}
		return nil, fn(rec)
	})
}

// Since calls fn with every record of folder whose sequence is above
// after, in sequence order: what a peer that has seen everything up to
// after still needs. Each path appears once, with its latest version, since
// a path's older sequence entries are removed when it changes.
func (ix *Index) Since(ctx context.Context, folder string, after uint64, fn func(Record) error) error {
	f, ok := ix.lookupFolder(folder)
	if !ok {
		return nil
	}
	if after == ^uint64(0) {
		return nil
	}
	start := seqKey(f, after+1)
	for {
		resume, err := ix.sinceSome(ctx, f, start, fn)
		if err != nil || resume == nil {
			return err
		}
		start = resume
	}
}

// sinceSome is one snapshot's part of Since, from the sequence key start;
// it returns where the next snapshot resumes, nil at the end.
func (ix *Index) sinceSome(ctx context.Context, f fid, start []byte, fn func(Record) error) ([]byte, error) {
	txn := ix.newTxn(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: folderPrefix(kindSeq, f)})
	defer it.Close()
	recs := newRecordCursor(txn, f)
	defer recs.close()
	it.Seek(start)
	for n := 0; it.Valid(); n++ {
		item := it.Item()
		if n == renewEvery {
			return item.KeyCopy(nil), nil
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		_, rest, err := parseFolderKey(item.Key(), kindSeq)
		if err != nil || len(rest) != 8 {
			return nil, ix.corrupt(f, fmt.Sprintf("sequence key %x", item.Key()), errBadKey)
		}
		seq := binary.BigEndian.Uint64(rest)
		var path string
		if err := item.Value(func(v []byte) error { path = string(v); return nil }); err != nil {
			return nil, err
		}
		rec, found, err := recs.get(ix, path)
		if err != nil {
			return nil, err
		}
		if !found || rec.Sequence != seq {
			return nil, ix.corrupt(f, fmt.Sprintf("sequence %d", seq), fmt.Errorf("points at %q, whose record has sequence %d", path, rec.Sequence))
		}
		if err := fn(rec); err != nil {
			return nil, err
		}
		it.Next()
	}
	return nil, nil
}

// recordCursor reads the records a sequence log points at. A first scan
// records a tree in walk order: each directory's files in name order, so
// the records of consecutive sequences are mostly neighbours in key order,
// with a few directories walked at once interleaving their runs. A cursor
// that steps to the next key costs a fraction of a point lookup (Get
// searches every level for each), so a few cursors follow those runs.
// When the paths stop coming in key order, point lookups take over for a
// while.
type recordCursor struct {
	txn  *badger.Txn
	f    fid
	its  [cursors]*badger.Iterator // nil until first used
	used [cursors]uint64           // when each last served; the oldest seeks next
	n    uint64
	key  []byte
	// misses counts lookups in a row no cursor could serve by stepping;
	// skip is how many lookups still go straight to Get.
	misses, skip int
}

// cursors is how many runs of neighbouring keys are followed at once;
// cursorSteps is how many keys a cursor steps over to find the next
// record before it gives up; after cursorMisses misses in a row, the next
// cursorSkip lookups go straight to Get, and the one after seeks again.
const (
	cursors      = 4
	cursorSteps  = 4
	cursorMisses = 4
	cursorSkip   = 64
)

func newRecordCursor(txn *badger.Txn, f fid) *recordCursor {
	return &recordCursor{txn: txn, f: f}
}

func (c *recordCursor) close() {
	for _, it := range c.its {
		if it != nil {
			it.Close()
		}
	}
}

// get returns the record of path, as getRecord does.
func (c *recordCursor) get(ix *Index, path string) (Record, bool, error) {
	if c.skip > 0 {
		c.skip--
		return ix.getRecord(c.txn, c.f, path)
	}
	c.n++
	c.key = appendRecordKey(c.key[:0], c.f, path)
	i := c.step()
	if i >= 0 {
		c.misses = 0
	} else {
		if c.misses++; c.misses >= cursorMisses {
			// Out of key order: point lookups cost less than seeks.
			c.misses, c.skip = 0, cursorSkip
			return ix.getRecord(c.txn, c.f, path)
		}
		i = c.oldest()
		if c.its[i] == nil {
			c.its[i] = c.txn.NewIterator(badger.IteratorOptions{Prefix: folderPrefix(kindRecord, c.f)})
		}
		c.its[i].Seek(c.key)
	}
	c.used[i] = c.n
	it := c.its[i]
	if !it.Valid() || !bytes.Equal(it.Item().Key(), c.key) {
		return Record{}, false, nil
	}
	rec, err := ix.decodeItem(c.f, path, it.Item())
	if err != nil {
		return Record{}, false, err
	}
	it.Next()
	return rec, true, nil
}

// step moves the cursor closest below c.key forward to it, if it is at
// most cursorSteps keys ahead, and returns that cursor; -1 when none gets
// there.
func (c *recordCursor) step() int {
	best := -1
	for i, it := range c.its {
		if it == nil || !it.Valid() || bytes.Compare(it.Item().Key(), c.key) > 0 {
			continue
		}
		if best < 0 || bytes.Compare(it.Item().Key(), c.its[best].Item().Key()) > 0 {
			best = i
		}
	}
	if best < 0 {
		return -1
	}
	it := c.its[best]
	for range cursorSteps {
		if !it.Valid() {
			return -1
		}
		switch bytes.Compare(it.Item().Key(), c.key) {
		case 0:
			return best
		case 1:
			return -1
		}
		it.Next()
	}
	if it.Valid() && bytes.Equal(it.Item().Key(), c.key) {
		return best
	}
	return -1
}

// oldest returns the cursor that served last longest ago (or was never
// made).
func (c *recordCursor) oldest() int {
	o := 0
	for i := range c.its {
		if c.its[i] == nil {
			return i
		}
		if c.used[i] < c.used[o] {
			o = i
		}
	}
	return o
}

// Location is a place where a chunk's bytes were when the file was
// indexed. The file may have changed since: verify the bytes read against
// the hash before using them.
type Location struct {
	Folder string
	Path   string
	Offset int64
	Length uint32
}

// Locate returns up to limit places holding the chunk with hash h, in any
// folder (limit ≤ 0: no limit).
func (ix *Index) Locate(h chunker.Hash, limit int) ([]Location, error) {
	if !ix.chunks.mayHave(h) {
		return nil, nil
	}
	var out []Location
	errEnough := errors.New("enough")
	err := ix.scan(context.Background(), locPrefix(h), nil, func(_ *badger.Txn, item *badger.Item) ([]byte, error) {
		loc, live, err := ix.location(h, item)
		if err != nil || !live {
			return nil, err // !live: a reset folder's data, about to be removed
		}
		out = append(out, loc)
		if limit > 0 && len(out) >= limit {
			return nil, errEnough
		}
		return nil, nil
	})
	if err != nil && err != errEnough {
		return nil, err
	}
	return out, nil
}

// LocateAll is Locate for each of hashes, read from one snapshot with one
// iterator: for a batch of chunks, much cheaper than a Locate each. It
// returns only the hashes found, each with up to limit places.
func (ix *Index) LocateAll(hashes []chunker.Hash, limit int) (map[chunker.Hash][]Location, error) {
	sorted := slices.Clone(hashes)
	slices.SortFunc(sorted, func(a, b chunker.Hash) int { return bytes.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	out := map[chunker.Hash][]Location{}
	txn := ix.newTxn(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindLoc}})
	defer it.Close()
	for _, h := range sorted {
		if !ix.chunks.mayHave(h) {
			continue
		}
		p := locPrefix(h)
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			loc, live, err := ix.location(h, it.Item())
			if err != nil {
				return nil, err
			}
			if !live {
				continue
			}
			out[h] = append(out[h], loc)
			if limit > 0 && len(out[h]) >= limit {
				break
			}
		}
	}
	return out, nil
}

// location decodes the chunk location item of h; live is false for a
// reset folder's data, about to be removed.
func (ix *Index) location(h chunker.Hash, item *badger.Item) (loc Location, live bool, err error) {
	_, f, off, path, err := parseLocKey(item.Key())
	if err != nil {
		return loc, false, fmt.Errorf("index: chunk location key %x: %w: %v", item.Key(), ErrCorrupt, err)
	}
	name, live := ix.folderName(f)
	if !live {
		return loc, false, nil
	}
	loc = Location{Folder: name, Path: path, Offset: off}
	err = item.Value(func(v []byte) error {
		n, k := binary.Uvarint(v)
		if k <= 0 || k != len(v) || n == 0 || n > 1<<32-1 {
			return fmt.Errorf("index: chunk location of %s in %q: %w: bad length", h.Short(), path, ErrCorrupt)
		}
		loc.Length = uint32(n)
		return nil
	})
	return loc, err == nil, err
}

// Progress returns where replication with peer stands for folder (zero if
// nothing was stored).
func (ix *Index) Progress(folder string, peer conflict.NodeID) (Progress, error) {
	f, ok := ix.lookupFolder(folder)
	if !ok {
		return Progress{}, nil
	}
	var p Progress
	err := ix.view(func(txn *badger.Txn) error {
		item, err := txn.Get(progressKey(f, uint64(peer)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var err error
			p, err = decodeProgress(v)
			if err != nil {
				return ix.corrupt(f, fmt.Sprintf("progress of peer %016x", uint64(peer)), err)
			}
			return nil
		})
	})
	return p, err
}

// Peers returns the stored progress of every peer of folder.
func (ix *Index) Peers(folder string) (map[conflict.NodeID]Progress, error) {
	out := map[conflict.NodeID]Progress{}
	f, ok := ix.lookupFolder(folder)
	if !ok {
		return out, nil
	}
	err := ix.scan(context.Background(), folderPrefix(kindProgress, f), nil, func(_ *badger.Txn, item *badger.Item) ([]byte, error) {
		_, rest, err := parseFolderKey(item.Key(), kindProgress)
		if err != nil || len(rest) != 8 {
			return nil, ix.corrupt(f, fmt.Sprintf("progress key %x", item.Key()), errBadKey)
		}
		peer := conflict.NodeID(binary.BigEndian.Uint64(rest))
		return nil, item.Value(func(v []byte) error {
			p, err := decodeProgress(v)
			if err != nil {
				return ix.corrupt(f, fmt.Sprintf("progress of peer %016x", uint64(peer)), err)
			}
			out[peer] = p
			return nil
		})
	})
	return out, err
}
