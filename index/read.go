package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

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
	p := folderPrefix(kindSeq, f)
	return ix.scan(ctx, p, seqKey(f, after+1), func(txn *badger.Txn, item *badger.Item) ([]byte, error) {
		_, rest, err := parseFolderKey(item.Key(), kindSeq)
		if err != nil || len(rest) != 8 {
			return nil, ix.corrupt(f, fmt.Sprintf("sequence key %x", item.Key()), errBadKey)
		}
		seq := binary.BigEndian.Uint64(rest)
		var path string
		if err := item.Value(func(v []byte) error { path = string(v); return nil }); err != nil {
			return nil, err
		}
		rec, found, err := ix.getRecord(txn, f, path)
		if err != nil {
			return nil, err
		}
		if !found || rec.Sequence != seq {
			return nil, ix.corrupt(f, fmt.Sprintf("sequence %d", seq), fmt.Errorf("points at %q, whose record has sequence %d", path, rec.Sequence))
		}
		return nil, fn(rec)
	})
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
