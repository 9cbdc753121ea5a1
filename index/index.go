package index

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrCorrupt is wrapped by every error about an index that cannot be read:
// at Open, and for a record, key or metadata entry that does not decode.
// The cure is to rebuild the index from disk with `lockstep resync`.
var ErrCorrupt = errors.New("index is corrupt")

// ErrNotTombstone is returned by Forget for a path whose record is live.
var ErrNotTombstone = errors.New("record is not a tombstone")

// schemaVersion is stored under the 'V' key. Bump it when the key layout
// changes; Open refuses an index with another version.
const schemaVersion = 1

// Subdir is the directory, under the data dir, that holds the index.
const Subdir = "index"

// Tuning of the Badger database; see doc.go ("Memory") for why.
const (
	memTableSize     = 2 << 20
	numMemtables     = 2
	tableSize        = 1 << 20
	valueThreshold   = 64 << 10
	valueLogFileSize = 128 << 20
	numCompactors    = 2
)

// DefaultMaintainInterval is how often Run does maintenance when
// Options.MaintainInterval is zero.
const DefaultMaintainInterval = 10 * time.Minute

// Options tune an Index. The zero value is usable.
type Options struct {
	// Logger receives Badger's warnings and errors and the index's own
	// state changes. Nil discards.
	Logger *slog.Logger
	// MaintainInterval is the period of Run's maintenance (value-log
	// garbage collection, removal of reset folders' data). Default 10m.
	MaintainInterval time.Duration

	// idleAfter is how long after the last write Badger's compactors
	// are paused (idle.go). Default defaultIdleAfter; tests shorten it.
	idleAfter time.Duration
}

// Index is this node's index: every folder's records, sequence log, chunk
// locations and peer progress, in one Badger database. Its methods are safe
// for concurrent use. Writes are serialised by one mutex; reads run in
// parallel with them and see a consistent snapshot.
type Index struct {
	db      *badger.DB
	dir     string
	log     *slog.Logger
	opts    Options
	idle    *idler
	pages   *pager
	closing atomic.Bool // Close is under way: Badger compacts and flushes

	// mu serialises every read-modify-write of records and folder
	// metadata. Badger's conflict detection is off because of it.
	mu sync.Mutex

	fmu    sync.RWMutex // guards the folder maps
	byName map[string]fid
	byID   map[fid]string

	// chunks filters the chunk hashes LocateAll need not seek (presence.go).
	chunks presence

	// maintained is called after each maintenance round of Run (tests).
	maintained func()
}

// Open opens the index under dataDir (in dataDir/index), creating it if
// absent. An index that cannot be read is reported as one error wrapping
// ErrCorrupt that names the directory and says how to recover. Open starts
// Badger's own goroutines, which Close stops; it starts none of its own.
func Open(dataDir string, o Options) (ix *Index, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaintainInterval <= 0 {
		o.MaintainInterval = DefaultMaintainInterval
	}
	if o.idleAfter <= 0 {
		o.idleAfter = defaultIdleAfter
	}
	dir := filepath.Join(dataDir, Subdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	corrupt := func(cause any) error {
		return fmt.Errorf("open index %s: %w (run 'lockstep resync' to rebuild it from the synced folders): %v",
			dir, ErrCorrupt, cause)
	}
	var db *badger.DB
	func() {
		// Badger panics on some kinds of damage instead of returning an
		// error; at Open that is still just a corrupt index.
		defer func() {
			if p := recover(); p != nil {
				err = corrupt(p)
			}
		}()
		db, err = badger.Open(badgerOptions(dir, o.Logger))
	}()
	if err != nil {
		if strings.Contains(err.Error(), "Another process is using this Badger database") {
			return nil, fmt.Errorf("open index %s: in use by another process (is a lockstep daemon already running?)", dir)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("open index %s: %w", dir, err)
		}
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, corrupt(err)
	}
	ix = &Index{db: db, dir: dir, log: o.Logger, opts: o, byName: map[string]fid{}, byID: map[fid]string{}}
	ix.idle = newIdler(db, o.idleAfter)
	ix.pages = newPager(dir, releaseInterval, func() bool { return ix.closing.Load() || !ix.idle.isPaused() })
	ix.idle.mu.Lock()
	ix.idle.onPause = ix.pages.touch
	ix.idle.mu.Unlock()
	if err := ix.load(); err != nil {
		ix.pages.close()
		ix.idle.close()
		db.Close()
		if errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("open index %s: %w (run 'lockstep resync' to rebuild it from the synced folders)", dir, err)
		}
		return nil, corrupt(err)
	}
	return ix, nil
}

func badgerOptions(dir string, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithNumLevelZeroTables(numMemtables).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(numCompactors).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithNumGoroutines(2).
		WithBaseTableSize(tableSize)
	// Tables of one size at every level: a compaction builds up to 13
	// tables at once, each in a buffer of twice the table size, and
	// tables that double per level made that hundreds of MiB at a
	// million files.
	o.TableSizeMultiplier = 1
	return o
}

// load checks the schema version, loads the folder names, and finishes any
// chunk-location rewrite a crash interrupted.
func (ix *Index) load() error {
	err := ix.update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{kindSchema})
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			it.Rewind()
			empty := !it.Valid()
			it.Close()
			if !empty {
				return fmt.Errorf("%w: no schema version", ErrCorrupt)
			}
			return txn.Set([]byte{kindSchema}, binary.AppendUvarint(nil, schemaVersion))
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			ver, n := binary.Uvarint(v)
			if n <= 0 || n != len(v) {
				return fmt.Errorf("%w: malformed schema version", ErrCorrupt)
			}
			if ver != schemaVersion {
				return fmt.Errorf("%w: schema version %d, this lockstep reads %d", ErrCorrupt, ver, schemaVersion)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	err = ix.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindFolderID}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[1:])
			err := item.Value(func(v []byte) error {
				if len(v) != fidLen {
					return fmt.Errorf("%w: folder %q: malformed id", ErrCorrupt, name)
				}
				f := fid(binary.BigEndian.Uint32(v))
				ix.byName[name] = f
				ix.byID[f] = name
				return nil
			})
			if err != nil {
				return err
			}
			if _, err := ix.getMeta(txn, ix.byName[name]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return ix.repairPending()
}

// Close closes the database. Pending writes reach the disk's page cache
// before it returns.
func (ix *Index) Close() error {
	// Badger flushes the memtables and compacts level 0 as it closes,
	// which maps in as many pages as a busy moment: the pager keeps
	// releasing them until it is done.
	ix.closing.Store(true)
	ix.pages.touch()
	ix.idle.close()
	err := ix.db.Close()
	ix.pages.close()
	if err != nil {
		return fmt.Errorf("close index %s: %w", ix.dir, err)
	}
	return nil
}

// view, update and newTxn are Badger's; a write also arms the pager
// (pages.go). Reads do not: a rescan reads the whole index, and reclaiming
// its pages as it goes would make it read them from the disk; what reads
// map in is reclaimed with the next write's round. writing and maintaining
// bracket a write for the idler (idle.go).
func (ix *Index) view(fn func(*badger.Txn) error) error {
	return ix.db.View(fn)
}

func (ix *Index) update(fn func(*badger.Txn) error) error {
	ix.pages.touch()
	return ix.db.Update(fn)
}

func (ix *Index) newTxn(update bool) *badger.Txn {
	if update {
		ix.pages.touch()
	}
	return ix.db.NewTransaction(update)
}

func (ix *Index) writing() func() {
	ix.pages.touch()
	return ix.idle.writing()
}

func (ix *Index) maintaining() func() {
	ix.pages.touch()
	return ix.idle.maintaining()
}

// Dir returns the directory holding the database.
func (ix *Index) Dir() string { return ix.dir }

// Sync makes every write that has returned durable against power loss: it
// flushes Badger's write-ahead log and value log to disk. Writes survive a
// crash of the process (kill -9) without it; see doc.go ("Durability").
func (ix *Index) Sync() error {
	if err := ix.db.Sync(); err != nil {
		return fmt.Errorf("sync index %s: %w", ix.dir, err)
	}
	return nil
}

// DiskSize returns the bytes the index occupies on disk.
func (ix *Index) DiskSize() (int64, error) { return dirSize(ix.dir) }

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			// Allocated blocks, not the apparent size: Badger
			// preallocates its log files sparsely.
			n += allocated(fi)
		}
		return nil
	})
	return n, err
}

// Remove deletes the index under dataDir. It must not be open. This is how
// a corrupt index is thrown away before it is rebuilt from the folders.
func Remove(dataDir string) error {
	dir := filepath.Join(dataDir, Subdir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove index %s: %w", dir, err)
	}
	return nil
}

// Folders returns the names of the folders the index holds.
func (ix *Index) Folders() []string {
	ix.fmu.RLock()
	defer ix.fmu.RUnlock()
	out := make([]string, 0, len(ix.byName))
	for n := range ix.byName {
		out = append(out, n)
	}
	return out
}

// lookupFolder returns a folder's id, if it exists.
func (ix *Index) lookupFolder(name string) (fid, bool) {
	ix.fmu.RLock()
	defer ix.fmu.RUnlock()
	f, ok := ix.byName[name]
	return f, ok
}

func (ix *Index) folderName(f fid) (string, bool) {
	ix.fmu.RLock()
	defer ix.fmu.RUnlock()
	n, ok := ix.byID[f]
	return n, ok
}

// ensureFolder returns a folder's id, creating the folder (with a fresh
// epoch) if needed. The caller holds ix.mu.
func (ix *Index) ensureFolder(name string) (fid, error) {
	if f, ok := ix.lookupFolder(name); ok {
		return f, nil
	}
	if name == "" {
		return 0, errors.New("empty folder name")
	}
	var f fid
	err := ix.update(func(txn *badger.Txn) error {
		var err error
		f, err = ix.allocFolder(txn, name, 0)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("index: create folder %q: %w", name, err)
	}
	ix.fmu.Lock()
	ix.byName[name] = f
	ix.byID[f] = name
	ix.fmu.Unlock()
	ix.log.Info("index folder created", "folder", name)
	return f, nil
}

// allocFolder allocates a new id for name in txn, points name at it and
// gives it fresh metadata whose sequences continue after seq.
func (ix *Index) allocFolder(txn *badger.Txn, name string, seq uint64) (fid, error) {
	var last fid
	item, err := txn.Get([]byte{kindLastFID})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return 0, err
	default:
		err := item.Value(func(v []byte) error {
			if len(v) != fidLen {
				return fmt.Errorf("%w: malformed last folder id", ErrCorrupt)
			}
			last = fid(binary.BigEndian.Uint32(v))
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if last == ^fid(0) {
		return 0, errors.New("folder ids exhausted")
	}
	f := last + 1
	meta := FolderInfo{Epoch: newEpoch(), Sequence: seq}
	if err := txn.Set([]byte{kindLastFID}, appendFID(nil, f)); err != nil {
		return 0, err
	}
	if err := txn.Set(folderIDKey(name), appendFID(nil, f)); err != nil {
		return 0, err
	}
	if err := txn.Set(metaKey(f), encodeMeta(&meta)); err != nil {
		return 0, err
	}
	return f, nil
}

func newEpoch() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1 // never 0, which means "none"
}

// badgerLogger routes Badger's log to slog. Badger's informational lines
// (compactions, flushes, replays) are dropped: they are routine, and a
// daemon's log should show state changes only.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "op", "badger")
}

func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "op", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
