package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/control"
	"lockstep/index"
	"lockstep/protocol"
	"lockstep/transport"
	"lockstep/vfs"
)

// Puller limits.
const (
	pullBatch     = 1024 // items applied and made durable together
	fileWorkers   = 16   // files assembled at once
	chunksPerFile = 8    // single chunk requests in flight per file
	// A large file's chunks go to a peer that answers chunk batches in
	// batches of at most largeBatchChunks chunks and largeBatchBytes
	// bytes, largeBatches at once over all the files being assembled: 8
	// MiB in flight, which a link of 1 MB/s still carries well within a
	// request's deadline.
	largeBatches     = 8
	largeBatchChunks = protocol.MaxBatchChunks
	largeBatchBytes  = 1 << 20
	// A file being assembled is handed to the disk every writebackEvery
	// bytes (when it has at least two such parts).
	writebackEvery = 8 << 20
	// A file of at least writebackMin bytes in a batch flushed with
	// syncfs is handed to the disk as soon as it is written, so that the
	// disk works while the rest of the batch arrives instead of taking
	// it all at the batch's one flush.
	writebackMin = 256 << 10
	// A file of at most smallFile bytes is fetched into memory, up to
	// smallFetchers at once, and written out whole by one of diskWorkers,
	// so that waiting on the network and on the disk overlap.
	smallFile     = 64 << 10
	smallFetchers = 32
	// Small files whose chunks all come from peers that answer chunk
	// batches are fetched batchFiles at a time, up to smallBatches
	// batches at once, each chunk batch carrying at most batchChunks
	// chunks and batchBytes bytes.
	batchFiles      = 64
	smallBatches    = 4
	batchChunks     = 64
	batchBytes      = 1 << 20
	diskWorkers     = 2
	errNoSourceWait = 2 * time.Second
	// locateMax is how many local places of a chunk are looked up.
	locateMax = 4
	// retryLogLines is how many failed applies of one batch are logged
	// one by one; the rest are counted in one line.
	retryLogLines = 3
	// newConnWait is how long a chunk request whose connection closed
	// waits for the peer's next one: two nodes that dialled each other at
	// once keep one connection and close the other a few ms later, and
	// the requests in flight on it are not worth a backoff.
	newConnWait = time.Second
	// resyncPoll is how often an idle resync checks whether the peers'
	// indexes have all arrived.
	resyncPoll = 200 * time.Millisecond
)

var errNoSource = errors.New("no connected peer holds this version")

func (f *Folder) pullLoop(ctx context.Context) {
	// pending is a batch of files fetched and written under temp names but
	// not yet committed: it is committed while the next batch is fetched,
	// so that the network and the disk flushes overlap. Its paths are not
	// taken again until it is done.
	var pending *batch
	busy := func(path string) bool { return pending != nil && pending.paths[path] }
	finishPending := func() {
		if pending != nil {
			f.finish(ctx, pending)
			pending = nil
		}
	}
	for {
		wake := f.queue.wake.C()
		f.mu.Lock()
		var items []*item
		var next time.Time
		if f.pause == "" {
			// A paused folder takes nothing from peers: its root may be
			// gone, or an operator must first decide about deletions.
			items, next = f.queue.take(f.now(), pullBatch, busy)
		}
		f.mu.Unlock()
		if len(items) == 0 && pending != nil {
			finishPending()
			continue
		}
		if len(items) > 0 {
			f.set(func() { f.pulling = true })
			// Directories first, committed and recorded on their own:
			// otherwise the files' temp names would create them, and the
			// scanner would record them as local directories meanwhile.
			var dirs, rest []*item
			for _, it := range items {
				if it.info.Type == protocol.Dir && !it.info.Deleted {
					dirs = append(dirs, it)
				} else {
					rest = append(rest, it)
				}
			}
			if len(dirs) > 0 {
				finishPending()
				f.applyBatch(ctx, dirs)
			}
			if len(rest) > 0 {
				if pending == nil {
					pending = f.prepare(ctx, rest)
					continue
				}
				done := make(chan struct{})
				go func(b *batch) {
					defer close(done)
					f.finish(ctx, b)
				}(pending)
				b := f.prepare(ctx, rest)
				<-done
				pending = b
			}
			continue
		}
		f.set(func() { f.pulling = false })
		f.mu.Lock()
		resyncing, ready := f.resync != nil, f.resyncReady()
		f.mu.Unlock()
		if ready {
			f.finishResync(ctx)
			continue
		}
		if resyncing && (next.IsZero() || next.Sub(f.now()) > resyncPoll) {
			// Peers catching up report no queue change: look again.
			next = f.now().Add(resyncPoll)
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(max(next.Sub(f.now()), time.Millisecond))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-timer:
		}
		// Not deferred: this loop runs for the folder's lifetime.
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// job is one item being applied.
type job struct {
	it     *item
	local  index.Record // the local record the decision was made from
	have   bool
	action conflict.Action
	temp   *vfs.Temp // a file assembled under a temp name, to commit
	rec    index.Record
	write  bool // rec must be written to the index
	// metaOnly is set when only the entry's mode or mtime was changed in
	// place (the content was already here).
	metaOnly bool
	// placed is the file put in place from temp, as lstat showed it
	// right after the rename; nil for other entries.
	placed fs.FileInfo
	err    error
	// dirs holds the batch's directories open: each is opened and checked
	// once instead of the path being walked for every call.
	dirs *vfs.Dirs
	// pre is the local record read with the whole batch's (index.GetMany),
	// for the first decision; preHave: there was one.
	pre              index.Record
	preHave, preRead bool
	// fresh: the file is new here and its batch is flushed with syncfs, so
	// its temp is made with vfs.CreateNew. The syncfs before the commits
	// flushes the unnamed file and the one after them its link; a batch
	// flushed file by file names its temps, so that each file's fsync and
	// its directory's are all its rename needs.
	fresh bool
}

// batch is a set of items being applied together: prepared (decided, and
// files written under temp names), then finished (made durable, committed,
// recorded and confirmed).
type batch struct {
	jobs  []*job
	paths map[string]bool
	plan  flush
	dirs  *vfs.Dirs
	r     *resyncState
}

// applyBatch applies items from start to end.
func (f *Folder) applyBatch(ctx context.Context, items []*item) {
	f.finish(ctx, f.prepare(ctx, items))
}

// prepare decides each item and writes the files to take under temp
// names. The batch's directory handles stay open until finish.
func (f *Folder) prepare(ctx context.Context, items []*item) *batch {
	dirs := f.fs.Dirs(0o755)
	jobs := make([]*job, len(items))
	paths := make(map[string]bool, len(items))
	for i, it := range items {
		jobs[i] = &job{it: it, dirs: dirs}
		paths[it.info.Path] = true
	}
	// 1. Decide each item against the local record and the disk. A resync
	// hashes local files to decide: several at once. The records are read
	// together first: a batch's paths are mostly neighbours, or new here.
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.it.info.Path
	}
	if recs, haves, err := f.ix.GetMany(f.id, names); err == nil {
		// On an error each decision reads its own record.
		for i, j := range jobs {
			j.pre, j.preHave, j.preRead = recs[i], haves[i], true
		}
	}
	f.mu.Lock()
	r := f.resync
	f.mu.Unlock()
	if r != nil {
		forEach(jobs, resyncWorkers, func(j *job) { f.decide(ctx, j) })
	} else {
		for _, j := range jobs {
			f.decide(ctx, j)
		}
	}
	// 2. Assemble files under temp names, several at once, and give them
	// their metadata; a small batch flushes each file as it is done.
	var assemble []*job
	for _, j := range jobs {
		if j.err != nil || j.action == conflict.Keep || j.it.info.Deleted || j.it.info.Type != protocol.File || j.write || j.metaOnly {
			continue
		}
		assemble = append(assemble, j)
	}
	plan := chooseFlush(len(assemble))
	for _, j := range assemble {
		j.fresh = plan == flushFS && (!j.have || j.local.Deleted)
	}
	seal := func(j *job, temp *vfs.Temp, err error) {
		if err == nil && plan == flushFS && j.it.info.Size >= writebackMin {
			// Only advice: the batch's flush is what makes it durable.
			_ = temp.StartWriteback()
		}
		if err == nil {
			if err = temp.Seal(f.meta(&j.it.info), plan == flushEach); err != nil {
				temp.Abort()
				temp = nil
			}
		}
		j.temp, j.err = temp, err
	}
	type fetched struct {
		j    *job
		data []byte
	}
	toDisk := make(chan fetched, smallFetchers)
	var disk sync.WaitGroup
	for range diskWorkers {
		disk.Go(func() {
			for x := range toDisk {
				temp, err := f.writeWhole(x.j, x.data)
				seal(x.j, temp, err)
			}
		})
	}
	sem := make(chan struct{}, fileWorkers)
	fetchSem := make(chan struct{}, smallFetchers)
	var wg sync.WaitGroup
	// fetchOne fetches a small file on its own, chunk by chunk.
	fetchOne := func(j *job) {
		fetchSem <- struct{}{}
		wg.Go(func() {
			defer func() { <-fetchSem }()
			data, err := f.fetch(ctx, j)
			if err != nil {
				j.err = err
				return
			}
			toDisk <- fetched{j, data}
		})
	}
	batchSem := make(chan struct{}, smallBatches)
	var group []*job
	flushGroup := func() {
		if len(group) == 0 {
			return
		}
		g := group
		group = nil
		batchSem <- struct{}{}
		wg.Go(func() {
			defer func() { <-batchSem }()
			f.fetchBatched(ctx, g, func(j *job, data []byte) { toDisk <- fetched{j, data} }, fetchOne)
		})
	}
	largeSem := make(chan struct{}, largeBatches)
	batching := f.peersBatch()
	for _, j := range assemble {
		if j.it.info.Size <= smallFile && batching {
			if group = append(group, j); len(group) == batchFiles {
				flushGroup()
			}
			continue
		}
		if j.it.info.Size <= smallFile {
			fetchOne(j)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			temp, err := f.assemble(ctx, j, largeSem)
			seal(j, temp, err)
		})
	}
	flushGroup()
	wg.Wait()
	close(toDisk)
	disk.Wait()
	return &batch{jobs: jobs, paths: paths, plan: plan, dirs: dirs, r: r}
}

// finish makes a prepared batch durable, commits it and records it, then
// finishes or requeues each item.
func (f *Folder) finish(ctx context.Context, b *batch) {
	defer b.dirs.Close()
	jobs, plan, r := b.jobs, b.plan, b.r
	// 3. Flush the temp files of a large batch together, then commit under
	// the scanner's lock, so a scan never sees a file renamed but not
	// recorded.
	anyTemp := false
	for _, j := range jobs {
		anyTemp = anyTemp || j.temp != nil
	}
	if anyTemp && plan == flushFS {
		if err := f.fs.SyncFS(); err != nil {
			for _, j := range jobs {
				if j.temp != nil {
					j.temp.Abort()
					j.temp, j.err = nil, err
				}
			}
		}
	}
	f.scanMu.Lock()
	var writes []index.Write
	var written []*job
	for _, j := range jobs {
		if j.err == nil && j.action != conflict.Keep {
			j.err = f.commit(j)
		}
		if j.err == nil && j.write {
			writes = append(writes, index.Write{Record: j.rec, Conditional: true, IfSequence: seqOf(j)})
			written = append(written, j)
		}
	}
	if len(writes) > 0 {
		// Make the renames, removals and metadata changes durable before
		// they count as held.
		if err := f.flushApplied(flushAfter(plan, anyTemp, len(written)), written); err != nil {
			f.log.Warn("flushing renames failed", "err", err)
		}
		// Noted before the records can be streamed (echo.go).
		for _, j := range written {
			f.echoes.note(j.it.info.Path, j.rec.Version, j.it.holders)
		}
		err := f.ix.Apply(f.id, writes)
		if err == nil {
			err = f.ix.Sync()
		}
		for i, j := range written {
			switch {
			case err != nil:
				j.err = err
			case writes[i].Stale:
				// A local change was recorded meanwhile: decide again.
				j.err = fmt.Errorf("local record of %s changed meanwhile (decided from sequence %d)", j.it.info.Path, seqOf(j))
			case j.placed != nil:
				f.notePlaced(j.it.info.Path, j.placed)
			}
		}
	}
	f.scanMu.Unlock()
	// 4. Finish or retry each item.
	f.mu.Lock()
	done := 0
	touched := map[conflict.NodeID]bool{}
	warned, unlogged := 0, 0
	var lastErr error
	for _, j := range jobs {
		if j.err != nil {
			if ctx.Err() == nil {
				f.Counters.Retries.Add(1)
				if j.it.attempts >= 2 || !errors.Is(j.err, errNoSource) {
					// One cause (a peer gone, a full disk) fails a whole
					// batch: a few lines say what, a last one how many.
					if warned < retryLogLines {
						warned++
						f.log.Warn("could not apply a peer's version; will retry", "path", j.it.info.Path, "err", j.err, "attempt", j.it.attempts+1)
					} else {
						unlogged++
						lastErr = j.err
					}
				}
			}
			j.it.lastErr = j.err
			f.queue.requeue(j.it, f.now())
			continue
		}
		done++
		if j.action != conflict.Keep {
			f.Counters.FilesApplied.Add(1)
		}
		if r != nil && r == f.resync {
			r.doneFiles.Add(1)
			r.doneBytes.Add(int64(j.it.info.Size))
		}
		for _, w := range j.it.waits {
			if p := f.peers[w.peer]; p != nil {
				p.wm.Finish(w.seq)
				touched[w.peer] = true
			}
		}
	}
	var wake []*signal
	for id := range touched {
		wake = append(wake, f.peers[id].confirm)
	}
	f.mu.Unlock()
	if unlogged > 0 {
		f.log.Warn("could not apply more of a peer's versions; will retry", "files", unlogged, "last_err", lastErr)
	}
	f.queue.release(done)
	for _, s := range wake {
		s.Notify()
	}
	if len(writes) > 0 {
		f.local.Notify()
	}
}

func seqOf(j *job) uint64 {
	if j.have {
		return j.local.Sequence
	}
	return 0
}

// decide re-reads the local record and checks the disk agrees with it; a
// local change not yet recorded is scanned first, so it is decided on like
// any other version and never silently overwritten.
func (f *Folder) decide(ctx context.Context, j *job) {
	fi := &j.it.info
	for attempt := 0; ; attempt++ {
		local, have, err := j.pre, j.preHave, error(nil)
		if attempt > 0 || !j.preRead {
			local, have, err = f.ix.Get(f.id, fi.Path)
		}
		if err != nil {
			j.err = err
			return
		}
		j.local, j.have = local, have
		// Checked again at the commit (or linked without replacing).
		st, lerr := j.dirs.LstatListed(fi.Path)
		if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
			j.err = lerr
			return
		}
		if !have && lerr == nil {
			f.mu.Lock()
			r := f.resync
			f.mu.Unlock()
			if r != nil {
				// Not recorded since the reset: judge the disk itself.
				f.resyncDecide(ctx, r, j, st)
				return
			}
		}
		if diskMatches(&local, have, st, lerr == nil) {
			break
		}
		if attempt > 0 {
			j.err = fmt.Errorf("%s is changing on disk", fi.Path)
			return
		}
		f.log.Debug("disk differs from the index; scanning before deciding", "path", fi.Path)
		f.scanMu.Lock()
		_, err = f.scan.ScanPaths(ctx, []string{fi.Path})
		f.scanMu.Unlock()
		if err != nil {
			j.err = err
			return
		}
	}
	if !j.have {
		j.action = conflict.Take
		if fi.Deleted {
			// Nothing here to delete: remember the tombstone so that the
			// path is not resurrected by a peer that missed the delete.
			j.rec, j.write = f.recordFor(fi, nil), true
			j.action = conflict.Keep
		}
		return
	}
	j.action = conflict.Resolve(recordVersion(&j.local), infoVersion(fi))
	if j.action == conflict.Keep {
		return
	}
	// Same content already here (a metadata change, or identical
	// concurrent writes): no transfer.
	if !fi.Deleted && !j.local.Deleted && j.local.Type == index.Type(fi.Type) &&
		content(j.local.Type, j.local.Manifest.Chunks, j.local.Target) == content(index.Type(fi.Type), fi.Chunks, fi.Target) {
		// The metadata is applied at commit, under the scanner's lock: a
		// chmod seen by the scanner before it is recorded would come back
		// as a local version (an echo).
		j.metaOnly = true
		j.action = conflict.Take
	}
}

// flushApplied makes the entries a batch put in place durable, the way
// plan says: for flushEach the temp files were flushed before their
// renames, so what is left is the files whose metadata alone changed and
// the directories holding the entries.
func (f *Folder) flushApplied(plan flush, written []*job) error {
	switch plan {
	case flushFS:
		return f.fs.SyncFS()
	case flushEach:
		var paths []string
		for _, j := range written {
			fi := &j.it.info
			if j.metaOnly && fi.Type != protocol.Symlink {
				if err := f.fs.Fsync(fi.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			paths = append(paths, fi.Path)
		}
		for _, dir := range dirsToFlush(paths) {
			// A tombstone's directory may not exist: nothing to flush.
			if err := f.fs.Fsync(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// diskMatches reports whether what is on disk is what the record says, as
// far as the quick check goes (type, and for files size, mtime and inode).
func diskMatches(r *index.Record, have bool, st fs.FileInfo, exists bool) bool {
	if !have || r.Deleted {
		return !exists
	}
	if !exists {
		return false
	}
	switch r.Type {
	case index.Dir:
		return st.IsDir()
	case index.Symlink:
		return st.Mode()&fs.ModeSymlink != 0
	}
	if !st.Mode().IsRegular() || st.Size() != r.Size || st.ModTime().UnixNano() != r.MTime {
		return false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && r.Inode != 0 && sys.Ino != r.Inode {
		return false
	}
	return true
}

// steps plans how the remote file of j is put together from local and
// remote chunks.
func (f *Folder) steps(j *job) []Step { return f.stepsFrom(j, nil) }

// stepsFrom is steps with the local copies of the chunks looked up
// already (index.LocateAll, each chunk with its places or absent); nil:
// looked up one by one.
func (f *Folder) stepsFrom(j *job, located map[chunker.Hash][]index.Location) []Step {
	fi := &j.it.info
	// Chunks that the local version lacks may still hold its bytes, cut
	// differently next to an edit: try where they would lie in it.
	var guesses map[chunker.Hash][]int64
	if j.have && !j.local.Deleted && j.local.Type == index.File && fi.Type == protocol.File {
		guesses = GuessOffsets(j.local.Manifest.Chunks, fi.Chunks)
	}
	locate := func(h chunker.Hash) []Location {
		locs, ok := located[h]
		if located == nil {
			var err error
			if locs, err = f.ix.Locate(h, locateMax); err != nil {
				return nil
			}
		} else if !ok {
			locs = nil
		}
		var out []Location
		for _, l := range locs {
			if l.Folder == f.id {
				out = append(out, Location{Path: l.Path, Offset: l.Offset})
			}
		}
		if len(out) == 0 {
			for _, off := range guesses[h] {
				out = append(out, Location{Path: fi.Path, Offset: off})
			}
		}
		return out
	}
	return Plan(chunker.Manifest{Chunks: fi.Chunks}, locate, j.it.sources)
}

// fetch gets the whole content of j's remote file into memory, from local
// and remote chunks, one chunk after another: small files are fetched many
// at once instead.
func (f *Folder) fetch(ctx context.Context, j *job) ([]byte, error) {
	fi := &j.it.info
	steps := f.steps(j)
	buf := make([]byte, fi.Size)
	for i := range steps {
		s := &steps[i]
		data, err := f.obtain(ctx, fi.Path, s, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: chunk %s: %w", fi.Path, s.Ref.Hash.Short(), err)
		}
		if err := place(buf, fi, s, data); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// place copies a chunk's data to every offset of the file buffer buf that
// holds it.
func place(buf []byte, fi *protocol.FileInfo, s *Step, data []byte) error {
	for _, off := range s.Offsets {
		if off < 0 || off+int64(len(data)) > int64(len(buf)) {
			return fmt.Errorf("%s: chunk %s at %d lies beyond the size %d", fi.Path, s.Ref.Hash.Short(), off, fi.Size)
		}
		copy(buf[off:], data)
	}
	return nil
}

// BatchConn is a Conn that can also fetch many chunks in one request
// (transport.Conn, toward a peer that offers it).
type BatchConn interface {
	Conn
	// ChunkBatches reports whether the peer answers RequestChunks.
	ChunkBatches() bool
	// RequestChunks fetches chunks of folder in one request: one result
	// per chunk, each verified; the error is for the batch as a whole.
	RequestChunks(ctx context.Context, folder string, chunks []protocol.BatchChunk) ([]transport.ChunkResult, error)
	// RequestChunksInto is RequestChunks handing each chunk to each as it
	// arrives, received into buf (see transport.Conn.RequestChunksInto).
	RequestChunksInto(ctx context.Context, folder string, chunks []protocol.BatchChunk, buf []byte, each func(i int, data []byte, err error) error) error
}

// batchConn returns the peer's connection if it answers chunk batches.
func (f *Folder) batchConn(id conflict.NodeID) BatchConn {
	if bc, ok := f.peerConn(id).(BatchConn); ok && bc.ChunkBatches() {
		return bc
	}
	return nil
}

// peersBatch reports whether some connected peer answers chunk batches.
func (f *Folder) peersBatch() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.peers {
		if bc, ok := p.current().(BatchConn); ok && bc.ChunkBatches() {
			return true
		}
	}
	return false
}

// fetchBatched fetches the small files of jobs with chunk batches: the
// chunks of the files whose every chunk comes from a peer (none on this
// node's disk) go to that peer in batches, and each file all of whose
// chunks arrived is handed to done. The other files — a chunk with a local
// copy, a peer that does not answer batches, a chunk that failed — go to
// one, which fetches them on their own as before.
func (f *Folder) fetchBatched(ctx context.Context, jobs []*job, done func(*job, []byte), one func(*job)) {
	type pending struct {
		j     *job
		steps []Step
		buf   []byte
		left  int // steps not yet received
		err   bool
	}
	type want struct {
		p *pending
		s *Step
	}
	byPeer := map[conflict.NodeID][]want{}
	var peers []conflict.NodeID
	var files []*pending
	// The local copies of every chunk of the group, looked up at once.
	var hashes []chunker.Hash
	for _, j := range jobs {
		for _, c := range j.it.info.Chunks {
			hashes = append(hashes, c.Hash)
		}
	}
	located, err := f.ix.LocateAll(hashes, locateMax)
	if err != nil {
		located = nil // looked up one by one, as errors allow
	}
	for _, j := range jobs {
		steps := f.stepsFrom(j, located)
		ok := len(steps) > 0
		for i := range steps {
			s := &steps[i]
			if len(s.Local) > 0 || len(s.Peers) == 0 || f.batchConn(s.Peers[0]) == nil {
				ok = false
				break
			}
		}
		if !ok {
			one(j)
			continue
		}
		p := &pending{j: j, steps: steps, buf: make([]byte, j.it.info.Size), left: len(steps)}
		files = append(files, p)
		for i := range steps {
			id := steps[i].Peers[0]
			if _, seen := byPeer[id]; !seen {
				peers = append(peers, id)
			}
			byPeer[id] = append(byPeer[id], want{p, &steps[i]})
		}
	}
	for _, id := range peers {
		wants := byPeer[id]
		for len(wants) > 0 && ctx.Err() == nil {
			n, size := 0, 0
			for n < len(wants) && n < batchChunks && (n == 0 || size+int(wants[n].s.Ref.Length) <= batchBytes) {
				size += int(wants[n].s.Ref.Length)
				n++
			}
			part := wants[:n]
			wants = wants[n:]
			req := make([]protocol.BatchChunk, len(part))
			for i, w := range part {
				req[i] = protocol.BatchChunk{Hash: w.s.Ref.Hash, Length: w.s.Ref.Length, Path: w.p.j.it.info.Path, Offset: uint64(w.s.Offsets[0])}
			}
			var res []transport.ChunkResult
			var err error
			if conn := f.batchConn(id); conn == nil {
				err = errNoSource
			} else {
				res, err = conn.RequestChunks(ctx, f.id, req)
			}
			for i, w := range part {
				if err == nil && res[i].Err == nil {
					if perr := place(w.p.buf, &w.p.j.it.info, w.s, res[i].Data); perr == nil {
						f.Counters.ChunksFetched.Add(1)
						f.Counters.BytesFetched.Add(int64(len(res[i].Data)))
						w.p.left--
						continue
					}
				}
				w.p.err = true
			}
		}
	}
	for _, p := range files {
		switch {
		case p.left == 0 && !p.err:
			done(p.j, p.buf)
		case ctx.Err() != nil:
			p.j.err = ctx.Err()
		default:
			// What failed in the batch is asked for again on its own,
			// from every peer in turn, which says why it fails if it does.
			one(p.j)
		}
	}
}

// createTemp starts writing j's file: a new file unnamed when the batch
// is flushed with syncfs (j.fresh), otherwise under a temp name.
func (f *Folder) createTemp(j *job) (*vfs.Temp, error) {
	if j.fresh {
		return j.dirs.CreateNew(j.it.info.Path, f.meta(&j.it.info).Mode)
	}
	return j.dirs.Create(j.it.info.Path)
}

// writeWhole writes the content of j's file under a temp name.
func (f *Folder) writeWhole(j *job, data []byte) (*vfs.Temp, error) {
	temp, err := f.createTemp(j)
	if err != nil {
		return nil, err
	}
	if _, err := temp.File().Write(data); err != nil {
		temp.Abort()
		return nil, fmt.Errorf("write %s: %w", j.it.info.Path, err)
	}
	return temp, nil
}

// assemble writes the remote file under a temp name from local and remote
// chunks, several requests at once: chunks that come from a peer answering
// chunk batches are asked for in batches (cutBatches), each holding a slot
// of batchSlots, shared with the other files being assembled; the others
// one by one (obtain), chunksPerFile at once.
func (f *Folder) assemble(ctx context.Context, j *job, batchSlots chan struct{}) (*vfs.Temp, error) {
	fi := &j.it.info
	steps := f.steps(j)
	temp, err := f.createTemp(j)
	if err != nil {
		return nil, err
	}
	file := temp.File()
	if err := file.Truncate(int64(fi.Size)); err != nil {
		temp.Abort()
		return nil, err
	}
	// A large file's data goes to the disk with direct I/O where it can
	// (vfs.DirectWriter).
	var out io.WriterAt = file
	direct := temp.Direct(int64(fi.Size))
	if direct != nil {
		out = direct
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A large file is handed to the disk as it arrives, so that the flush
	// at its end does not have it all to write then.
	var written atomic.Int64
	var writeback sync.WaitGroup
	kick := make(chan struct{}, 1)
	if fi.Size >= 2*writebackEvery {
		writeback.Go(func() {
			for range kick {
				// Only advice: the flush at Seal is what makes it durable.
				_ = temp.StartWriteback()
			}
		})
	}
	// put writes a chunk's data at every offset of the file that holds it.
	put := func(s *Step, data []byte) error {
		for _, off := range s.Offsets {
			if _, err := out.WriteAt(data, off); err != nil {
				return err
			}
		}
		n := int64(len(data) * len(s.Offsets))
		if w := written.Add(n); w/writebackEvery != (w-n)/writebackEvery {
			select {
			case kick <- struct{}{}:
			default: // one already waiting covers this
			}
		}
		return nil
	}
	errc := make(chan error, 1)
	failed := func(s *Step, err error) {
		select {
		case errc <- fmt.Errorf("%s: chunk %s: %w", fi.Path, s.Ref.Hash.Short(), err):
		default:
		}
		cancel()
	}
	// one obtains a step on its own and writes it out.
	one := func(s *Step, buf []byte) bool {
		data, err := f.obtain(ctx, fi.Path, s, buf)
		if err == nil {
			err = put(s, data)
		}
		if err != nil {
			failed(s, err)
			return false
		}
		return true
	}
	singles := make(chan struct{}, chunksPerFile)
	var wg sync.WaitGroup
	for _, u := range cutBatches(steps, func(id conflict.NodeID) bool { return f.batchConn(id) != nil }) {
		sem := singles
		if u.batch {
			sem = batchSlots
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			buf := getChunkBuf(int(u.maxLen))
			defer putChunkBuf(buf)
			if !u.batch {
				one(&steps[u.steps[0]], *buf)
				return
			}
			part := make([]*Step, len(u.steps))
			for i, k := range u.steps {
				part[i] = &steps[k]
			}
			for _, i := range f.fetchRun(ctx, fi.Path, part, *buf, put) {
				if !one(part[i], *buf) {
					return
				}
			}
		})
	}
	wg.Wait()
	close(kick)
	writeback.Wait()
	var closeErr error
	if direct != nil {
		closeErr = direct.Close()
	}
	select {
	case err := <-errc:
		temp.Abort()
		return nil, err
	default:
	}
	if ctx.Err() != nil {
		temp.Abort()
		return nil, ctx.Err()
	}
	if closeErr != nil {
		temp.Abort()
		return nil, fmt.Errorf("%s: %w", fi.Path, closeErr)
	}
	return temp, nil
}

// fetchRun asks the peer that comes first for every step of part (the
// same peer for all) for them in one chunk batch, and writes each chunk
// out with put as it arrives, received into buf. It returns the indexes in
// part of the steps still to be obtained on their own: a chunk that failed
// in the batch (put failing included), or every one not received when the
// batch as a whole failed.
func (f *Folder) fetchRun(ctx context.Context, path string, part []*Step, buf []byte, put func(*Step, []byte) error) (left []int) {
	conn := f.batchConn(part[0].Peers[0])
	if conn == nil {
		left = make([]int, len(part))
		for i := range left {
			left[i] = i
		}
		return left
	}
	req := make([]protocol.BatchChunk, len(part))
	for i, s := range part {
		req[i] = protocol.BatchChunk{Hash: s.Ref.Hash, Length: s.Ref.Length, Path: path, Offset: uint64(s.Offsets[0])}
	}
	next := 0 // the responses before next were handled
	err := conn.RequestChunksInto(ctx, f.id, req, buf, func(i int, data []byte, err error) error {
		next = i + 1
		if err == nil {
			if err = put(part[i], data); err == nil {
				f.Counters.ChunksFetched.Add(1)
				f.Counters.BytesFetched.Add(int64(len(data)))
				return nil
			}
		}
		left = append(left, i)
		return nil
	})
	if err != nil {
		for i := next; i < len(part); i++ {
			left = append(left, i)
		}
	}
	return left
}

// A fetchUnit is what assemble asks for in one request: the steps at
// these indexes, fetched as one chunk batch when batch is set.
type fetchUnit struct {
	steps  []int
	batch  bool
	maxLen uint32 // the largest chunk
	size   int    // the chunks' lengths added up
}

// cutBatches cuts a file's steps into fetch units. A step with no local
// copy whose first peer answers chunk batches joins that peer's open
// batch, which is handed out when it reaches largeBatchChunks chunks or
// would pass largeBatchBytes bytes; every other step is a unit of its own.
// Units come in the order their last step has in the file, so the file is
// written roughly front to back whatever the peers' rotation.
func cutBatches(steps []Step, batches func(conflict.NodeID) bool) []fetchUnit {
	var units []fetchUnit
	open := map[conflict.NodeID]*fetchUnit{}
	var order []conflict.NodeID // peers with an open batch, for a stable end
	for i := range steps {
		s := &steps[i]
		if len(s.Local) > 0 || len(s.Peers) == 0 || !batches(s.Peers[0]) {
			units = append(units, fetchUnit{steps: []int{i}, maxLen: s.Ref.Length, size: int(s.Ref.Length)})
			continue
		}
		id := s.Peers[0]
		u := open[id]
		if u != nil && u.size+int(s.Ref.Length) > largeBatchBytes {
			units = append(units, *u)
			u = nil
		}
		if u == nil {
			if _, seen := open[id]; !seen {
				order = append(order, id)
			}
			u = &fetchUnit{batch: true}
			open[id] = u
		}
		u.steps = append(u.steps, i)
		u.maxLen = max(u.maxLen, s.Ref.Length)
		u.size += int(s.Ref.Length)
		if len(u.steps) == largeBatchChunks {
			units = append(units, *u)
			open[id] = nil
		}
	}
	for _, id := range order {
		if u := open[id]; u != nil {
			units = append(units, *u)
		}
	}
	return units
}

// chunkBufs holds buffers that chunks are received into while a file is
// assembled: each chunk is written out before its buffer is reused, so
// nothing is allocated and cleared per chunk.
var chunkBufs sync.Pool

func getChunkBuf(length int) *[]byte {
	if b, ok := chunkBufs.Get().(*[]byte); ok && cap(*b) >= transport.ChunkBufferSize(length) {
		return b
	}
	// Sized for the largest chunk of the default parameters, so that one
	// buffer fits any chunk of a file cut with them.
	b := make([]byte, transport.ChunkBufferSize(max(length, chunker.DefaultParams.Max)))
	return &b
}

func putChunkBuf(b *[]byte) { chunkBufs.Put(b) }

// obtain gets one chunk's bytes of the file at path: from this node's disk
// if a copy is still intact, else from the peers that hold it, in the
// planned order. A peer is told where the chunk lies in its version of the
// file, so that it reads it from there instead of looking it up; it falls
// back to the lookup when its file changed meanwhile. The data may be
// received into buf (nil: a new slice).
func (f *Folder) obtain(ctx context.Context, path string, s *Step, buf []byte) ([]byte, error) {
	for _, l := range s.Local {
		if data, err := f.readLocalChunk(l.Path, l.Offset, s.Ref, buf); err == nil {
			f.Counters.ChunksLocal.Add(1)
			f.Counters.BytesLocal.Add(int64(len(data)))
			return data, nil
		}
	}
	var last error = errNoSource
	for _, id := range s.Peers {
		conn := f.peerConn(id)
		if conn == nil {
			// Just disconnected: its next connection may be coming.
			if conn = f.nextConn(ctx, id, nil); conn == nil {
				continue
			}
		}
		req := protocol.ChunkRequest{Folder: f.id, Hash: s.Ref.Hash, Length: s.Ref.Length, Path: path, Offset: uint64(s.Offsets[0])}
		for retried := false; ; retried = true {
			data, err := conn.RequestChunkInto(ctx, req, buf)
			if err == nil {
				f.Counters.ChunksFetched.Add(1)
				f.Counters.BytesFetched.Add(int64(len(data)))
				return data, nil
			}
			last = err
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// A connection closed here fails its streams a moment
			// before its Done channel closes: its error says so first.
			if retried || !closed(conn.Done()) && !errors.Is(err, transport.ErrClosed) {
				break
			}
			// The connection went away under the request: ask again on
			// the peer's next connection if it comes at once.
			if conn = f.nextConn(ctx, id, conn); conn == nil {
				break
			}
		}
	}
	return nil, last
}

func (f *Folder) peerConn(id conflict.NodeID) Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.peers[id]; p != nil {
		return p.current()
	}
	return nil
}

// nextConn waits for the peer to be connected on another connection than
// old, and returns it; nil once the peer has been disconnected for
// newConnWait, or after newConnWait in all.
func (f *Folder) nextConn(ctx context.Context, id conflict.NodeID, old Conn) Conn {
	// The wait itself is bounded in real time; the disconnection's age is
	// judged on the folder's clock, which stamped it.
	limit := time.NewTimer(newConnWait)
	defer limit.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		var c Conn
		var gone time.Time
		if p := f.peers[id]; p != nil {
			c, gone = p.current(), p.lastSeen
		}
		f.mu.Unlock()
		switch {
		case c != nil && c != old:
			return c
		case c == nil && f.now().Sub(gone) > newConnWait:
			// Gone for a while (or never connected): not coming back at once.
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-limit.C:
			return nil
		case <-tick.C:
		}
	}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// commit puts a decided item in place on disk and prepares its record.
func (f *Folder) commit(j *job) error {
	fi := &j.it.info
	if j.write { // a tombstone of an entry never here: nothing on disk
		return nil
	}
	// Re-check right before replacing: the window for a local write to be
	// overwritten is from here to the rename. A new file's temp refuses to
	// replace anything by itself (vfs.CreateNew), at the very moment.
	if !(j.fresh && j.temp != nil && fi.Type == protocol.File && !fi.Deleted && !j.metaOnly) {
		st, lerr := j.dirs.Lstat(fi.Path)
		if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
			j.abort()
			return lerr
		}
		// A directory that appeared meanwhile is fine for a directory: the
		// batch's own files create their parents.
		sameDir := fi.Type == protocol.Dir && !fi.Deleted && lerr == nil && st.IsDir()
		if !sameDir && !diskMatches(&j.local, j.have, st, lerr == nil) {
			j.abort()
			return fmt.Errorf("%s changed on disk", fi.Path)
		}
	}
	if j.metaOnly {
		if err := f.applyMeta(fi); err != nil {
			return err
		}
		after, err := f.fs.Lstat(fi.Path)
		if err != nil {
			return err
		}
		j.rec, j.write = f.recordFor(fi, after), true
		return nil
	}
	if j.action == conflict.TakeConflict {
		if err := f.keepLoser(j); err != nil {
			j.abort()
			return err
		}
	}
	var err error
	var placed fs.FileInfo // the file as its commit left it, if known
	claimed := false       // the watcher will not report it (vfs.Temp.OwnLink)
	switch {
	case fi.Deleted:
		err = f.fs.Remove(fi.Path)
	case fi.Type == protocol.Dir:
		if j.have && !j.local.Deleted && j.local.Type != index.Dir {
			if err = f.fs.Remove(fi.Path); err != nil {
				break
			}
		}
		if err = f.fs.MkdirAll(fi.Path, fs.FileMode(fi.Mode)&fs.ModePerm); err == nil {
			err = f.applyMeta(fi)
		}
	case fi.Type == protocol.Symlink:
		if j.have && !j.local.Deleted && j.local.Type == index.Dir {
			if err = f.fs.Remove(fi.Path); err != nil {
				break
			}
		}
		err = f.fs.Symlink(fi.Path, fi.Target, 0o755)
	default:
		if j.have && !j.local.Deleted && j.local.Type == index.Dir {
			if err = f.fs.Remove(fi.Path); err != nil {
				j.abort()
				break
			}
		}
		if j.fresh && f.now().Sub(time.Unix(0, fi.ModTime)) >= placedMinAge {
			// Its creation need not come back from the watcher: it is
			// recorded below. (A fresh mtime is left to the scanner, as
			// for notePlaced.)
			j.temp.OwnLink()
		}
		if err = j.temp.Commit(); errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%s changed on disk: %w", fi.Path, err)
		}
		placed, claimed = j.temp.Placed(), j.temp.Claimed()
		j.temp = nil
	}
	if err != nil {
		return err
	}
	after := placed
	if !fi.Deleted && after == nil {
		if after, err = j.dirs.Lstat(fi.Path); err != nil {
			return err
		}
	}
	if fi.Type == protocol.File && !fi.Deleted && !claimed {
		j.placed = after
	}
	j.rec, j.write = f.recordFor(fi, after), true
	return nil
}

func (j *job) abort() {
	if j.temp != nil {
		j.temp.Abort()
		j.temp = nil
	}
}

// recordFor makes the index record of an applied version; st is the entry
// on disk after applying (nil for a tombstone).
func (f *Folder) recordFor(fi *protocol.FileInfo, st fs.FileInfo) index.Record {
	r := fromInfo(fi)
	if st != nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			r.Inode, r.Device = sys.Ino, uint64(sys.Dev)
			r.UID, r.GID = sys.Uid, sys.Gid
		}
		if fi.Type == protocol.File {
			r.MTime = st.ModTime().UnixNano()
		}
	}
	return r
}

// meta returns the metadata a file is given: the sender's mode and mtime,
// and ownership per the folder's configuration when running as root.
func (f *Folder) meta(fi *protocol.FileInfo) vfs.Meta {
	m := vfs.Meta{Mode: fs.FileMode(fi.Mode) & (fs.ModePerm), MTime: time.Unix(0, fi.ModTime)}
	if fi.Mode&0o4000 != 0 {
		m.Mode |= fs.ModeSetuid
	}
	if fi.Mode&0o2000 != 0 {
		m.Mode |= fs.ModeSetgid
	}
	if fi.Mode&0o1000 != 0 {
		m.Mode |= fs.ModeSticky
	}
	if euid() == 0 {
		m.Chown = true
		m.UID, m.GID = int(fi.UID), int(fi.GID)
		if uid, gid, ok := f.owner(); ok {
			if uid >= 0 {
				m.UID = uid
			}
			if gid >= 0 {
				m.GID = gid
			}
		}
	}
	return m
}

// euid is the daemon's effective user ID, asked once: meta runs for every
// file.
var euid = sync.OnceValue(os.Geteuid)

// owner resolves the folder's configured owner and group (-1 when unset).
func (f *Folder) owner() (uid, gid int, ok bool) {
	uid, gid = -1, -1
	fc := f.conf()
	if name := fc.Owner; name != "" {
		if u, err := user.Lookup(name); err == nil {
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if name := fc.Group; name != "" {
		if g, err := user.LookupGroup(name); err == nil {
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, uid >= 0 || gid >= 0
}

// applyMeta gives an existing entry the version's mode and mtime.
func (f *Folder) applyMeta(fi *protocol.FileInfo) error {
	if fi.Type == protocol.Symlink {
		return nil
	}
	m := f.meta(fi)
	if err := f.fs.Chmod(fi.Path, m.Mode); err != nil {
		return err
	}
	if m.Chown {
		if err := f.fs.Lchown(fi.Path, m.UID, m.GID); err != nil {
			return err
		}
	}
	if fi.Type == protocol.File {
		return f.fs.Chtimes(fi.Path, m.MTime)
	}
	return nil
}

// keepLoser copies the local content that lost a conflict to the conflict
// store and records it.
func (f *Folder) keepLoser(j *job) error {
	fi := &j.it.info
	now := f.now()
	entry := control.Conflict{
		Folder: f.id,
		Path:   fi.Path,
		Winner: f.peerName(fi.Origin),
		Loser:  f.peerName(j.local.Origin),
		Time:   now.UTC(),
	}
	if j.local.Type == index.File && !j.local.Deleted {
		dst := f.conflictPath(fi.Path, entry.Loser, now)
		if err := mkdirFor(dst); err != nil {
			return err
		}
		if err := f.fs.CopyOut(fi.Path, dst); err != nil {
			return fmt.Errorf("keep losing version of %s: %w", fi.Path, err)
		}
		entry.Copy = dst
	}
	f.Counters.Conflicts.Add(1)
	f.log.Warn("conflict: keeping the losing version", "path", fi.Path, "winner", entry.Winner, "loser", entry.Loser, "copy", entry.Copy)
	return f.conflict.add(entry)
}
