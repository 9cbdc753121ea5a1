package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/control"
	"lockstep/index"
	"lockstep/protocol"
)

// A resync rebuilds a folder from the cluster after a node was rebuilt, its
// index was lost, or its disk restored from an old backup. The folder's
// index is reset (a new epoch: peers send it everything again), local scans
// stop recording, and each version the peers announce is applied with the
// disk judged against it instead of against the index:
//
//   - a local entry identical to the cluster's version is adopted: its
//     metadata is set and the version recorded, with no transfer;
//   - a local entry that differs, or that the cluster has deleted, loses: it
//     is copied to the conflict store and the cluster's version put in place;
//   - once every connected peer's index has been received and applied, the
//     entries the cluster does not have (strays) are moved to the conflict
//     store too.
//
// Nothing local is ever announced as a new version: what the node pushes
// after a resync is only what it adopted, which the cluster already holds.
// A marker file under the data dir keeps the folder in resync across a
// restart, so a daemon killed halfway resumes the resync instead of
// recording the half-rebuilt folder as local changes.

// resyncState is a folder's resync in progress; Folder.resync is nil when
// none is. Fields other than the counters are guarded by Folder.mu.
type resyncState struct {
	started time.Time
	phase   string
	// target is, per peer attached since the reset, the highest sequence
	// its hello announced: the resync has received that peer's index once
	// its watermark passes it.
	target map[conflict.NodeID]uint64
	// Counters at the start, to report what this resync fetched.
	fetched0, local0 int64

	announcedFiles, announcedBytes atomic.Int64 // versions queued from peers
	doneFiles, doneBytes           atomic.Int64 // of those, applied
	checkedFiles, checkedBytes     atomic.Int64 // local files hashed
	adoptedFiles, adoptedBytes     atomic.Int64 // local entries kept as the cluster's
	setAside                       atomic.Int64 // local entries moved to the conflict store
}

// Resync phases, as shown in status.
const (
	phaseWaiting   = "waiting for peers"
	phaseReceiving = "receiving"
	phaseStrays    = "moving strays"
)

// resyncWorkers bounds the local files hashed at once while deciding.
const resyncWorkers = 8

// ErrResyncRoot refuses a resync of a folder whose root is not usable.
var ErrResyncRoot = errors.New("cannot resync")

// Resync starts rebuilding the folder from the cluster. It returns once the
// index is reset; the resync goes on in the folder's goroutines, and the
// folder's status shows its progress. The caller reconnects the folder's
// peers, so that both sides exchange their indexes from the start.
func (f *Folder) Resync() error {
	if reason := f.rootProblem(false); reason != "" {
		return fmt.Errorf("%w folder %s: %s", ErrResyncRoot, f.id, reason)
	}
	if err := f.writeResyncMarker(); err != nil {
		return err
	}
	f.scanMu.Lock()
	defer f.scanMu.Unlock()
	return f.startResync()
}

// Resyncing reports whether a resync of the folder is in progress.
func (f *Folder) Resyncing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resync != nil
}

// startResync resets the index and enters the resync state. scanMu must be
// held, or the folder not yet running.
func (f *Folder) startResync() error {
	if _, err := f.ix.ResetFolder(f.id); err != nil {
		return err
	}
	if st, err := os.Stat(f.opts.Folder.Path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			if err := f.ix.SetRootDevice(f.id, uint64(sys.Dev)); err != nil {
				return err
			}
		}
	}
	f.mu.Lock()
	f.resync = &resyncState{
		started:  f.now(),
		phase:    phaseWaiting,
		target:   map[conflict.NodeID]uint64{},
		fetched0: f.Counters.BytesFetched.Load(),
		local0:   f.Counters.BytesLocal.Load(),
	}
	for _, p := range f.peers {
		p.progress = index.Progress{}
		p.wm = newWatermark(0)
		p.confirmed = 0
	}
	f.queue.clear()
	f.pause, f.pauseDeletes, f.scanErr = "", false, ""
	f.deletes, f.acceptDeletes = nil, false
	f.mu.Unlock()
	f.changed()
	f.log.Warn("resync: index of the folder reset; taking the cluster's versions, local differences go to the conflict store",
		"conflict_store", f.opts.ConflictDir)
	return nil
}

func (f *Folder) writeResyncMarker() error {
	path := f.opts.ResyncMarker
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("resync marker: %w", err)
	}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("resync marker: %w", err)
	}
	_, err = fmt.Fprintf(file, "resync of folder %s started %s\n", f.id, f.now().UTC().Format(time.RFC3339))
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("resync marker %s: %w", path, err)
	}
	return nil
}

// ResyncPending reports whether a marker says a resync of the folder is
// unfinished (the daemon stopped during it).
func ResyncPending(marker string) bool {
	_, err := os.Stat(marker)
	return err == nil
}

// resyncReady reports whether the resync has received and applied the
// index of every connected peer, and at least one. Folder.mu must be held.
func (f *Folder) resyncReady() bool {
	r := f.resync
	if r == nil || f.queue.len() > 0 {
		return false
	}
	caught := 0
	for id, p := range f.peers {
		if p.current() == nil {
			continue
		}
		t, ok := r.target[id]
		if !ok {
			return false // a session from before the reset, being replaced
		}
		if p.wm.Mark() < t {
			return false
		}
		caught++
	}
	return caught > 0
}

// finishResync moves the strays to the conflict store and leaves the
// resync state; a full scan then checks the folder against the new index.
func (f *Folder) finishResync(ctx context.Context) {
	f.mu.Lock()
	r := f.resync
	f.mu.Unlock()
	f.set(func() { r.phase = phaseStrays })
	f.scanMu.Lock()
	err := f.sweepStrays(ctx, r)
	f.scanMu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("resync: moving strays failed; will retry", "err", err)
			f.set(func() { r.phase = phaseReceiving })
		}
		return
	}
	if m := f.opts.ResyncMarker; m != "" {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("resync: removing the marker", "err", err)
		}
	}
	f.mu.Lock()
	f.resync = nil
	f.mu.Unlock()
	f.log.Info("resync finished", "dur", f.now().Sub(r.started).Round(time.Millisecond),
		"files", r.doneFiles.Load(), "adopted", r.adoptedFiles.Load(), "set_aside", r.setAside.Load(),
		"bytes_fetched", f.Counters.BytesFetched.Load()-r.fetched0)
	f.changed()
	select {
	case f.rescan <- struct{}{}:
	default:
	}
	f.local.Notify()
}

// resyncStatus is the progress shown in status; nil when no resync runs.
// Folder.mu must be held.
func (f *Folder) resyncStatusLocked() *control.ResyncStatus {
	r := f.resync
	if r == nil {
		return nil
	}
	phase := r.phase
	if phase == phaseWaiting && len(r.target) > 0 {
		phase = phaseReceiving
	}
	return &control.ResyncStatus{
		Phase:        phase,
		Started:      r.started.UTC(),
		FilesTotal:   r.announcedFiles.Load(),
		BytesTotal:   r.announcedBytes.Load(),
		FilesDone:    r.doneFiles.Load(),
		BytesDone:    r.doneBytes.Load(),
		FilesChecked: r.checkedFiles.Load(),
		BytesChecked: r.checkedBytes.Load(),
		FilesAdopted: r.adoptedFiles.Load(),
		BytesAdopted: r.adoptedBytes.Load(),
		BytesFetched: f.Counters.BytesFetched.Load() - r.fetched0,
		BytesCopied:  f.Counters.BytesLocal.Load() - r.local0,
		SetAside:     r.setAside.Load(),
	}
}

// resyncDecide decides a peer's version of a path the reset index has no
// record of, against what is on disk there (st).
func (f *Folder) resyncDecide(ctx context.Context, r *resyncState, j *job, st fs.FileInfo) {
	fi := &j.it.info
	j.local, j.have = f.diskRecord(fi.Path, st), true
	if fi.Deleted {
		if st.IsDir() {
			// Its contents are judged one by one; what the cluster lacks
			// of them, and then the directory, go with the strays.
			j.action = conflict.Keep
			return
		}
		j.action = conflict.TakeConflict
		return
	}
	same, err := f.sameAsDisk(ctx, r, fi, st)
	if err != nil {
		j.err = err
		return
	}
	if !same {
		j.action = conflict.TakeConflict
		return
	}
	if err := f.applyMeta(fi); err != nil {
		j.err = err
		return
	}
	after, err := f.fs.Lstat(fi.Path)
	if err != nil {
		j.err = err
		return
	}
	j.rec, j.write, j.action = f.recordFor(fi, after), true, conflict.Take
	r.adoptedFiles.Add(1)
	r.adoptedBytes.Add(int64(fi.Size))
}

// sameAsDisk reports whether the entry on disk holds the version's content,
// hashing a regular file of the right size.
func (f *Folder) sameAsDisk(ctx context.Context, r *resyncState, fi *protocol.FileInfo, st fs.FileInfo) (bool, error) {
	switch fi.Type {
	case protocol.Dir:
		return st.IsDir(), nil
	case protocol.Symlink:
		if st.Mode()&fs.ModeSymlink == 0 {
			return false, nil
		}
		target, err := f.fs.Readlink(fi.Path)
		return err == nil && target == fi.Target, nil
	}
	if !st.Mode().IsRegular() || st.Size() != int64(fi.Size) {
		return false, nil
	}
	file, err := f.fs.Open(fi.Path)
	if err != nil {
		return false, err
	}
	defer file.Close()
	m, err := chunker.Split(&ctxReader{ctx: ctx, r: file}, chunker.DefaultParams)
	if err != nil {
		return false, fmt.Errorf("hash %s: %w", fi.Path, err)
	}
	r.checkedFiles.Add(1)
	r.checkedBytes.Add(st.Size())
	again, err := file.Stat()
	if err != nil {
		return false, err
	}
	if again.Size() != st.Size() || !again.ModTime().Equal(st.ModTime()) {
		return false, fmt.Errorf("%s is changing on disk", fi.Path)
	}
	return m.Equal(chunker.Manifest{Chunks: fi.Chunks}), nil
}

// diskRecord describes an entry found on disk as if this node had recorded
// it, so that the commit's checks and the conflict store treat it like any
// local version.
func (f *Folder) diskRecord(rel string, st fs.FileInfo) index.Record {
	r := index.Record{Path: rel, Origin: f.opts.Self, MTime: st.ModTime().UnixNano(), Mode: uint32(st.Mode().Perm())}
	switch {
	case st.IsDir():
		r.Type = index.Dir
	case st.Mode()&fs.ModeSymlink != 0:
		r.Type = index.Symlink
		r.Target, _ = f.fs.Readlink(rel)
	default:
		r.Type, r.Size = index.File, st.Size()
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		r.Inode, r.Device = sys.Ino, uint64(sys.Dev)
	}
	return r
}

// sweepStrays moves every entry the index has no live record of to the
// conflict store: after a resync, the cluster does not have them.
// scanMu must be held.
func (f *Folder) sweepStrays(ctx context.Context, r *resyncState) error {
	root := f.opts.Folder.Path
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if p == root {
				return err
			}
			f.log.Warn("resync: cannot read; left in place", "path", p, "err", err)
			return nil
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if f.ignored(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rec, have, err := f.ix.Get(f.id, rel)
		if err != nil {
			return err
		}
		if have && !rec.Deleted {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, rel) // emptied first, removed after
			return nil
		}
		return f.setAside(r, rel, p, d)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := f.fs.Remove(dirs[i]); err != nil {
			f.log.Warn("resync: a directory the cluster does not have is not empty; left in place", "path", dirs[i], "err", err)
			continue
		}
		f.log.Info("resync: removed a directory the cluster does not have", "path", dirs[i])
	}
	return nil
}

// setAside moves one stray entry to the conflict store and lists it there.
func (f *Folder) setAside(r *resyncState, rel, abs string, d fs.DirEntry) error {
	now := f.now()
	entry := control.Conflict{Folder: f.id, Path: rel, Winner: "(deleted or absent in the cluster)", Loser: f.opts.Name, Time: now.UTC()}
	dst := f.conflictPath(rel, f.opts.Name, now)
	if err := mkdirFor(dst); err != nil {
		return err
	}
	switch {
	case d.Type()&fs.ModeSymlink != 0:
		target, err := f.fs.Readlink(rel)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		entry.Copy = dst
	case d.Type().IsRegular():
		if err := os.Rename(abs, dst); err != nil {
			// Another filesystem: copy, then remove.
			if err := f.fs.CopyOut(rel, dst); err != nil {
				return fmt.Errorf("keep %s: %w", rel, err)
			}
		}
		entry.Copy = dst
	default:
		f.log.Warn("resync: skipping a special file the cluster does not have", "path", rel)
		return nil
	}
	if err := f.fs.Remove(rel); err != nil {
		return err
	}
	r.setAside.Add(1)
	f.Counters.Conflicts.Add(1)
	f.log.Warn("resync: moved a local entry the cluster does not have to the conflict store", "path", rel, "copy", entry.Copy)
	return f.conflict.add(entry)
}

// ctxReader stops a long hash when the folder stops.
type ctxReader struct {
	ctx context.Context
	r   interface{ Read([]byte) (int, error) }
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// forEach runs fn on every job, at most workers at once.
func forEach(jobs []*job, workers int, fn func(*job)) {
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(j)
		}()
	}
	wg.Wait()
}
