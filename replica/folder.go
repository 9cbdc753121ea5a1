package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"lockstep/chunker"
	"lockstep/config"
	"lockstep/conflict"
	"lockstep/control"
	"lockstep/index"
	"lockstep/protocol"
	"lockstep/vfs"
)

// Scanner records local changes of the folder in the index. The engine
// calls it from one goroutine at a time.
type Scanner interface {
	// Scan compares the whole folder with the index. It returns the paths
	// that were changing while read, to scan again shortly.
	Scan(ctx context.Context) (retry []string, err error)
	// ScanPaths compares the given relative paths (and, for directories,
	// their subtrees) with the index.
	ScanPaths(ctx context.Context, paths []string) (retry []string, err error)
}

// CompleteScanner is a Scanner that can also be told which of the paths
// their writer is known to be done with (Batch.Complete), so that it need
// not wait for a fresh modification time to age before recording them.
type CompleteScanner interface {
	Scanner
	// ScanPathsComplete is ScanPaths; complete is nil or parallel to paths.
	ScanPathsComplete(ctx context.Context, paths []string, complete []bool) (retry []string, err error)
	// ScanPathsDone records paths their writer said it is done with
	// (through Wait) at once.
	ScanPathsDone(ctx context.Context, paths []string) (retry []string, err error)
}

// Conn is the engine's view of a connection to a peer.
type Conn interface {
	// Send queues a control message; it blocks while the peer reads slowly.
	Send(ctx context.Context, m protocol.Message) error
	// RequestChunk fetches and verifies one chunk.
	RequestChunk(ctx context.Context, req protocol.ChunkRequest) ([]byte, error)
	// RequestChunkInto is RequestChunk receiving into buf when its
	// capacity suffices (see transport.ChunkBufferSize): the data returned
	// may lie in buf.
	RequestChunkInto(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error)
	// Done is closed when the connection is gone.
	Done() <-chan struct{}
}

// Peer is a node the folder is shared with.
type Peer struct {
	Name string
	ID   conflict.NodeID
}

// Options configure a Folder.
type Options struct {
	Folder config.Folder
	Name   string // this node's name, for conflict records
	Self   conflict.NodeID
	Peers  []Peer
	Index  *index.Index
	Clock  *Clock
	// ConflictDir is where losing versions of this folder are kept:
	// <data_dir>/conflicts/<folder id>.
	ConflictDir string
	Logger      *slog.Logger
	// Ignore reports the paths the folder does not sync; nil syncs all.
	Ignore func(rel string, isDir bool) bool
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// ResyncMarker is the file that marks a resync of the folder as
	// unfinished (see Resync); empty: resyncs do not survive a restart.
	ResyncMarker string
	// Events are called as the engine works, for metrics.
	Events Events
}

// Counters count what the engine did, for metrics. Every field only grows.
type Counters struct {
	FilesApplied  atomic.Int64 // peers' versions put in place
	ChunksLocal   atomic.Int64 // chunks copied from this node's files
	BytesLocal    atomic.Int64
	ChunksFetched atomic.Int64 // chunks fetched from peers
	BytesFetched  atomic.Int64
	Conflicts     atomic.Int64 // losing versions kept
	Retries       atomic.Int64 // applies that failed and were queued again
	// ChunksServedUnhashed counts chunks served to peers from a file its
	// record vouched for, without hashing them.
	ChunksServedUnhashed atomic.Int64
}

// Folder is the engine of one synced folder. Create it with New, start it
// with Run, and connect peers with Serve while it runs.
type Folder struct {
	opts  Options
	id    string
	log   *slog.Logger
	ix    *index.Index
	fs    *vfs.Folder
	scan  Scanner
	skip  func(rel string, isDir bool) bool
	now   func() time.Time
	peers map[conflict.NodeID]*peer // guarded by mu
	// cfg holds the folder's settings; Reconfigure swaps the thresholds in
	// it while the folder runs. ID, Path and Mode never change.
	cfg atomic.Pointer[config.Folder]
	// npeers is len(peers), for the quorum without taking mu.
	npeers atomic.Int64

	// local is notified whenever the folder's index gains sequences, to
	// wake the peer senders; confirmed when a peer confirms, to wake Wait.
	local, confirmed *signal
	// scanMu serialises the scanner with itself (the watcher loop, the
	// puller's pre-overwrite checks and Wait all scan) and with the
	// puller's commits, so that a scan never sees a file renamed into
	// place but not yet recorded.
	scanMu sync.Mutex
	// placed holds the files the puller put in place lately, as it left
	// them, so that the watcher's report of them is not scanned again
	// (see dropPlaced); guarded by scanMu.
	placed map[string]placedStat

	mu sync.Mutex
	// The folder's state is derived from these (see stateLocked).
	scanning bool
	pulling  bool
	scanErr  string
	pause    string // why the folder is paused; empty when it is not
	// pauseDeletes is set when the pause is the deletion guard's, which
	// only a clean full scan or an accepted deletion lifts.
	pauseDeletes bool
	fullScanning bool       // a full scan runs; guarded by scanMu and mu
	deletes      []deletion // recent deletions, for the guard's window
	// acceptDeletes lets the next scan's deletions through the guard once.
	acceptDeletes bool
	lastState     string
	// rescan asks the local loop for a full scan (Resume); holdScan for one
	// once deletions held by the guard have stopped coming (deleteQuiet).
	rescan, holdScan chan struct{}
	queue            *queue
	conflict         *conflictLog
	resync           *resyncState // nil unless a resync runs
	// tail mirrors the records peers have not all confirmed, for status
	// (pendingtail.go); tailMu guards it.
	tailMu sync.Mutex
	tail   pendingTail
	// recorded holds when recent local versions were recorded.
	recorded recordTimes

	// commitMu serialises observeCommits; observed is the sequence through
	// which commits were reported.
	commitMu sync.Mutex
	observed uint64
	// observedTail is observed, for the pending tail (pendingtail.go).
	observedTail atomic.Uint64

	// served keeps the files being served to peers open (serve.go), and
	// servedDirs the directories of the small ones (servedirs.go).
	served     servedFiles
	servedDirs servedDirs
	// echoes notes the versions applied from peers, not to be announced
	// back to them (echo.go).
	echoes echoes
	// smallChunk is the length up to which a served chunk is read and
	// hashed through servedDirs; a field for tests.
	smallChunk uint32

	// Counters are updated by the engine and read by metrics.
	Counters Counters
}

// peer is the folder's state for one peer. Fields after mu are guarded by
// Folder.mu.
type peer struct {
	Peer
	live      []Conn // connections whose sessions run, in the order attached
	lastSeen  time.Time
	progress  index.Progress // Received/PeerEpoch of their stream; Confirmed of ours
	wm        *watermark     // their stream's entries in the pull queue
	confirm   *signal        // wakes the session to confirm a new mark
	confirmed uint64         // the mark last confirmed to them
}

// current returns the connection to use toward the peer: the one attached
// last of those whose sessions still run; nil when it is not connected.
// The caller holds Folder.mu.
func (p *peer) current() Conn {
	if n := len(p.live); n > 0 {
		return p.live[n-1]
	}
	return nil
}

// New returns the engine for one folder. It opens the folder but starts
// nothing.
func New(opts Options, scanner Scanner, fs *vfs.Folder) (*Folder, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Folder{
		opts:      opts,
		id:        opts.Folder.ID,
		log:       opts.Logger.With("folder", opts.Folder.ID),
		ix:        opts.Index,
		fs:        fs,
		scan:      scanner,
		skip:      opts.Ignore,
		now:       opts.Now,
		peers:     map[conflict.NodeID]*peer{},
		local:     newSignal(),
		confirmed: newSignal(),
		scanning:  true,
		rescan:    make(chan struct{}, 1),
		holdScan:  make(chan struct{}, 1),
		queue:     newQueue(),
		recorded:  recordTimes{max: maxRecordTimes},
	}
	f.smallChunk = smallChunk
	fc := opts.Folder
	f.cfg.Store(&fc)
	stored, err := opts.Index.Peers(opts.Folder.ID)
	if err != nil {
		return nil, err
	}
	var confirmed []uint64
	for _, p := range opts.Peers {
		pr := stored[p.ID]
		f.peers[p.ID] = newPeer(p, pr)
		confirmed = append(confirmed, pr.Confirmed)
	}
	f.npeers.Store(int64(len(f.peers)))
	// Versions committed before this start are not reported.
	f.observed = f.committedThrough(confirmed)
	f.observedTail.Store(f.observed)
	cl, err := openConflictLog(opts.ConflictDir)
	if err != nil {
		return nil, err
	}
	f.conflict = cl
	if opts.ResyncMarker != "" && ResyncPending(opts.ResyncMarker) {
		// The daemon stopped during a resync: the half-rebuilt folder must
		// not be recorded as local changes. Start it over.
		f.log.Warn("resync: unfinished resync of the folder found; starting it over", "marker", opts.ResyncMarker)
		if err := f.startResync(); err != nil {
			return nil, err
		}
	} else if info, err := opts.Index.Info(f.id); err == nil && info.Sequence == 0 && len(opts.Peers) > 0 && !emptyDir(opts.Folder.Path) {
		// Without an index, every file here is about to be recorded as a
		// local version (dated by its mtime): what the cluster deleted
		// would come back, and what only this node has would spread.
		f.log.Warn("the index has no record of this folder but the folder holds files; if this node was rebuilt or restored from a backup, stop lockstep and run 'lockstep resync --folder "+f.id+"' so that the cluster's versions win and deleted files do not come back",
			"path", opts.Folder.Path)
	}
	return f, nil
}

// emptyDir reports whether dir has no entries (or cannot be read).
func emptyDir(dir string) bool {
	d, err := os.Open(dir)
	if err != nil {
		return true
	}
	defer d.Close()
	names, _ := d.Readdirnames(1)
	return len(names) == 0
}

func newPeer(p Peer, pr index.Progress) *peer {
	return &peer{Peer: p, progress: pr, wm: newWatermark(pr.Received), confirm: newSignal(), confirmed: pr.Received}
}

// ID returns the folder ID.
func (f *Folder) ID() string { return f.id }

// conf returns the folder's current settings.
func (f *Folder) conf() *config.Folder { return f.cfg.Load() }

// Reconfigure applies new settings to the running folder: the quorum,
// owner and group, the deletion guard and the tombstone retention. The
// folder's ID, path and mode are kept as they are (changing them needs a
// restart).
func (f *Folder) Reconfigure(fc config.Folder) {
	old := f.conf()
	fc.ID, fc.Path, fc.Mode = old.ID, old.Path, old.Mode
	f.cfg.Store(&fc)
	f.confirmed.Notify() // a lower quorum may commit what Wait waits for
}

// SetPeers replaces the peers the folder is shared with while it runs. An
// added peer starts from the progress the index remembers of it (none for
// a new one); a removed peer's state is dropped, and its session, which
// the caller ends by closing the connection, is refused from now on.
func (f *Folder) SetPeers(peers []Peer) error {
	stored, err := f.ix.Peers(f.id)
	if err != nil {
		return err
	}
	f.mu.Lock()
	keep := make(map[conflict.NodeID]*peer, len(peers))
	for _, p := range peers {
		if old := f.peers[p.ID]; old != nil {
			old.Peer = p
			keep[p.ID] = old
			continue
		}
		keep[p.ID] = newPeer(p, stored[p.ID])
	}
	f.peers = keep
	f.opts.Peers = append([]Peer(nil), peers...)
	f.npeers.Store(int64(len(keep)))
	f.mu.Unlock()
	f.confirmed.Notify()
	return nil
}

// Path returns the folder's path.
func (f *Folder) Path() string { return f.opts.Folder.Path }

// Shares reports whether the folder is shared with the peer.
func (f *Folder) Shares(id conflict.NodeID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.peers[id]
	return ok
}

// stateLocked derives the folder's state and error; f.mu must be held.
func (f *Folder) stateLocked() (state, errMsg string) {
	switch {
	case f.pause != "":
		return control.StatePaused, f.pause
	case f.scanErr != "":
		return control.StateError, f.scanErr
	case f.resync != nil:
		return control.StateSyncing, ""
	case f.scanning:
		return control.StateScanning, ""
	case f.pulling || f.queue.len() > 0:
		return control.StateSyncing, ""
	}
	return control.StateIdle, ""
}

// changed logs a change of state; call it after changing what the state
// derives from.
func (f *Folder) changed() {
	f.mu.Lock()
	state, errMsg := f.stateLocked()
	key := state + "\x00" + errMsg
	same := key == f.lastState
	f.lastState = key
	f.mu.Unlock()
	if same {
		return
	}
	f.queue.wake.Notify() // a paused puller may go on
	if errMsg != "" {
		f.log.Warn("folder state", "state", state, "err", errMsg)
	} else {
		f.log.Info("folder state", "state", state)
	}
}

func (f *Folder) set(fn func()) {
	f.mu.Lock()
	fn()
	f.mu.Unlock()
	f.changed()
}

// Run scans the folder, then keeps it in sync until ctx ends: local
// changes from the watcher's batches, remote ones from the pull queue.
// batches is the watcher's output; Run returns when it is closed or ctx
// ends, after every goroutine it started has returned.
func (f *Folder) Run(ctx context.Context, batches <-chan Batch) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		f.pullLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		f.gcLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		f.serveLoop(ctx)
	}()
	err := f.localLoop(ctx, batches)
	cancel()
	wg.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Batch is what the watcher reports: paths that may have changed, or that
// the whole folder must be rescanned.
type Batch struct {
	Paths []string
	// Complete is nil or parallel to Paths: true for a file its writer is
	// known to be done with.
	Complete []bool
	Rescan   bool
}

func (f *Folder) localLoop(ctx context.Context, batches <-chan Batch) error {
	// Paths that were changing while scanned are scanned again once they
	// had time to settle.
	var retry []string
	var retryC <-chan time.Time
	schedule := func(paths []string) {
		if len(paths) == 0 {
			return
		}
		retry = append(retry, paths...)
		if retryC == nil {
			// The scanner refuses files whose mtime is under 25 ms old
			// (a second write in the same clock tick would be invisible
			// to its quick check), or records them when their writer is
			// known to be done but wants to read them again once that
			// age is past: look again just after that.
			retryC = time.After(30 * time.Millisecond)
		}
	}
	schedule(f.fullScan(ctx))
	// A full scan judging held deletions waits until they stop coming, so
	// that it sees the whole extent of an `rm -rf` rather than a part.
	held := time.NewTimer(time.Hour)
	held.Stop()
	defer held.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.rescan:
			schedule(f.fullScan(ctx))
		case <-f.holdScan:
			held.Reset(deleteQuiet)
		case <-held.C:
			schedule(f.fullScan(ctx))
		case <-retryC:
			paths := retry
			retry, retryC = nil, nil
			schedule(f.scanPaths(ctx, paths, nil))
		case b, ok := <-batches:
			if !ok {
				return nil
			}
			if b.Rescan {
				schedule(f.fullScan(ctx))
				continue
			}
			schedule(f.scanPaths(ctx, b.Paths, b.Complete))
		}
	}
}

func (f *Folder) fullScan(ctx context.Context) []string {
	// A resync records nothing local until it is done; its end rescans.
	if f.Resyncing() || !f.rootOK() {
		return nil
	}
	f.set(func() { f.scanning = true })
	start := f.now()
	f.scanMu.Lock()
	f.set(func() { f.fullScanning = true })
	f.forgetPlaced()
	retry, err := f.scan.Scan(ctx)
	f.set(func() { f.fullScanning = false })
	f.scanMu.Unlock()
	f.afterScan(ctx, err, true)
	f.log.Debug("scan done", "dur", f.now().Sub(start))
	f.local.Notify()
	return retry
}

func (f *Folder) scanPaths(ctx context.Context, paths []string, complete []bool) []string {
	if len(paths) == 0 || f.Resyncing() || !f.rootOK() {
		return nil
	}
	f.scanMu.Lock()
	if paths, complete = f.dropPlaced(paths, complete); len(paths) == 0 {
		f.scanMu.Unlock()
		return nil
	}
	var (
		retry []string
		err   error
	)
	if cs, ok := f.scan.(CompleteScanner); ok && complete != nil {
		retry, err = cs.ScanPathsComplete(ctx, paths, complete)
	} else {
		retry, err = f.scan.ScanPaths(ctx, paths)
	}
	f.scanMu.Unlock()
	f.afterScan(ctx, err, false)
	f.local.Notify()
	return retry
}

// afterScan updates the state from a scan's outcome: the deletion guard
// pauses the folder, another error shows as the folder's error, and a
// clean full scan clears both.
func (f *Folder) afterScan(ctx context.Context, err error, full bool) {
	if ctx.Err() != nil {
		return
	}
	switch {
	case errors.Is(err, errHoldForFullScan):
		select {
		case f.holdScan <- struct{}{}:
		default:
		}
	case errors.Is(err, ErrMassDeletion):
		f.set(func() { f.scanning, f.pause, f.pauseDeletes = false, err.Error(), true })
	case err != nil:
		f.log.Warn("scan failed", "err", err, "full", full)
		f.set(func() { f.scanning, f.scanErr = false, err.Error() })
	case full:
		f.set(func() {
			f.scanning, f.scanErr = false, ""
			if f.pauseDeletes {
				// The files are back, or the deletions were accepted.
				f.pause, f.pauseDeletes = "", false
			}
		})
	}
}

// Hello returns what this node tells the peer about the folder.
func (f *Folder) Hello(id conflict.NodeID) (protocol.HelloFolder, error) {
	info, err := f.ix.Info(f.id)
	if err != nil {
		return protocol.HelloFolder{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.peers[id]
	if p == nil { // removed by SetPeers since the caller checked Shares
		return protocol.HelloFolder{}, fmt.Errorf("folder %s is not shared with %016x", f.id, uint64(id))
	}
	return protocol.HelloFolder{
		ID:           f.id,
		Epoch:        info.Epoch,
		MaxSequence:  info.Sequence,
		PeerEpoch:    p.progress.PeerEpoch,
		PeerSequence: p.progress.Received,
	}, nil
}

// conflictPath returns where the losing content of rel is kept.
func (f *Folder) conflictPath(rel, loser string, at time.Time) string {
	name := fmt.Sprintf("%s~%s~%s", filepath.Base(rel), at.UTC().Format("20060102-150405.000"), loser)
	return filepath.Join(f.opts.ConflictDir, filepath.Dir(filepath.FromSlash(rel)), name)
}

func (f *Folder) peerName(id conflict.NodeID) string {
	if id == f.opts.Self {
		return f.opts.Name
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.peers[id]; ok {
		return p.Name
	}
	return fmt.Sprintf("%016x", uint64(id))
}

// quorum is the number of nodes, this one included, that must hold a
// version for it to be committed.
func (f *Folder) quorum() int {
	if c := f.conf(); c.Mode == config.ModeQuorum {
		return c.Quorum
	}
	return int(f.npeers.Load()) + 1
}

// readLocalChunk reads a chunk from a local file and verifies it. The data
// is read into buf when its capacity suffices, else into a new slice.
func (f *Folder) readLocalChunk(path string, offset int64, ref chunker.Ref, buf []byte) ([]byte, error) {
	file, err := f.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return readVerified(file, path, offset, ref, buf)
}

// readVerified reads the chunk ref at offset of file (path names it in
// errors) into buf when its capacity suffices, else into a new slice, and
// checks its hash.
func readVerified(file io.ReaderAt, path string, offset int64, ref chunker.Ref, buf []byte) ([]byte, error) {
	if cap(buf) < int(ref.Length) {
		buf = make([]byte, ref.Length)
	}
	buf = buf[:ref.Length]
	if _, err := file.ReadAt(buf, offset); err != nil {
		return nil, err
	}
	if chunker.Sum(buf) != ref.Hash {
		return nil, fmt.Errorf("%s at %d of %s: %w", ref.Hash.Short(), offset, path, errChanged)
	}
	return buf, nil
}

var errChanged = errors.New("content changed since it was indexed")

// ReadChunk serves a peer's chunk request from this folder's files, reading
// into buf when its capacity suffices (see transport.ChunkServer).
func (f *Folder) ReadChunk(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
	ref := chunker.Ref{Hash: req.Hash, Length: req.Length}
	switch {
	case req.Path != "" && req.Length <= f.smallChunk:
		if data, err := f.readSmallChunk(req.Path, int64(req.Offset), ref, buf); err == nil {
			return data, nil
		}
	case req.Path != "":
		if data, ok := f.readServed(req.Path, int64(req.Offset), ref, buf); ok {
			return data, nil
		}
		if data, err := f.readLocalChunk(req.Path, int64(req.Offset), ref, buf); err == nil {
			return data, nil
		}
	}
	locs, err := f.ix.Locate(req.Hash, 8)
	if err != nil {
		return nil, err
	}
	for _, l := range locs {
		if l.Folder != f.id || l.Length != req.Length {
			continue
		}
		if data, err := f.readLocalChunk(l.Path, l.Offset, ref, buf); err == nil {
			return data, nil
		}
	}
	return nil, fmt.Errorf("chunk %s in folder %s: %w", req.Hash.Short(), f.id, protocol.ErrNotFound)
}

// mkdirFor makes sure the conflict store's directory for a copy at path
// exists.
func mkdirFor(path string) error { return os.MkdirAll(filepath.Dir(path), 0o700) }

// ignored reports whether rel is not synced by this folder.
func (f *Folder) ignored(rel string, isDir bool) bool {
	return vfs.IsTemp(rel) || (f.skip != nil && f.skip(rel, isDir))
}
