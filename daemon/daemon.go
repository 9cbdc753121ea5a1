// Package daemon wires lockstep's parts into the process `lockstep run`
// starts: the identity, the index, one replication engine per folder with
// its scanner and watcher, the QUIC transport and the control socket. It
// owns every goroutine of the process and stops them all when its context
// ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lockstep/config"
	"lockstep/conflict"
	"lockstep/control"
	"lockstep/identity"
	"lockstep/ignore"
	"lockstep/index"
	"lockstep/protocol"
	"lockstep/replica"
	"lockstep/scanner"
	"lockstep/transport"
	"lockstep/vfs"
	"lockstep/watcher"
)

// Daemon is one running node.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	id      identity.Identity
	ix      *index.Index
	tr      *transport.Transport
	folders map[string]*folder
	names   map[conflict.NodeID]string

	// live is the configuration in effect, which Reload changes; cfg
	// stays the one the daemon started with (its node table, folders and
	// their paths do not change without a restart).
	reloadMu sync.Mutex
	live     *config.Config

	// readLimits reads the kernel's inotify limits (a seam for tests).
	readLimits func() kernelLimits

	trafficMu sync.Mutex
	peers     []transport.Peer // guarded by trafficMu
	traffic   map[identity.NodeID]*traffic

	// commitLatency times local versions from recorded to committed.
	commitLatency *prometheus.HistogramVec
}

// traffic is the byte count of one peer: finished connections summed in
// done, plus the live connections' own counters.
type traffic struct {
	done transport.Stats
	// live are the connections whose handlers run, in the order they
	// started. Two nodes that dialled each other at once keep one
	// connection and close the other, whose handler may start after the
	// kept one's and end before it: the peer stays connected through
	// whichever is left.
	live []liveConn
}

// liveConn is what the daemon uses of a connection whose handler runs
// (*transport.Conn; a seam for tests).
type liveConn interface {
	Stats() transport.Stats
	Close(err error)
}

var _ liveConn = (*transport.Conn)(nil)

// connStarted notes c as a live connection to peer id.
func (d *Daemon) connStarted(id identity.NodeID, c liveConn) {
	d.trafficMu.Lock()
	defer d.trafficMu.Unlock()
	tr := d.traffic[id]
	tr.live = append(tr.live, c)
}

// connEnded adds the counters of c, which has ended, to peer id's total.
func (d *Daemon) connEnded(id identity.NodeID, c liveConn) {
	d.trafficMu.Lock()
	defer d.trafficMu.Unlock()
	tr := d.traffic[id]
	tr.done = addStats(tr.done, c.Stats())
	if i := slices.Index(tr.live, c); i >= 0 {
		tr.live = slices.Delete(tr.live, i, i+1)
	}
}

// folder is one synced folder's parts.
type folder struct {
	engine  *replica.Folder
	fs      *vfs.Folder
	watcher *watcher.Watcher
	scanner *scanner.Scanner
	// ignore is the folder's ignore matcher, which Reload swaps.
	ignore atomic.Pointer[ignore.Matcher]
}

// New opens everything the daemon needs and checks it fits together; it
// starts no goroutine. Close releases what New opened when Run is not
// called.
// A connection fetches small files in chunk batches when its peer offers
// them: the engine finds out through replica.BatchConn.
var _ replica.BatchConn = (*transport.Conn)(nil)

func New(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	id, err := identity.Load(cfg.Node.DataDir)
	if err != nil {
		if errors.Is(err, identity.ErrNotFound) {
			return nil, fmt.Errorf("%w (create one with: lockstep init --data-dir %s)", err, cfg.Node.DataDir)
		}
		return nil, err
	}
	d := &Daemon{cfg: cfg, live: cfg, log: log, id: id, folders: map[string]*folder{}, names: map[conflict.NodeID]string{}, traffic: map[identity.NodeID]*traffic{}, readLimits: readKernelLimits, commitLatency: newCommitLatency()}
	var peers []transport.Peer
	byName := map[string]identity.NodeID{}
	for _, p := range cfg.Peers {
		pid, err := identity.Parse(p.ID)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p.Name, err)
		}
		if pid == id.ID {
			return nil, fmt.Errorf("peer %s has this node's own ID %s", p.Name, id.ID)
		}
		byName[p.Name] = pid
		d.names[pid.Short()] = p.Name
		peers = append(peers, transport.Peer{ID: pid, Name: p.Name, Address: p.Address})
		d.traffic[pid] = &traffic{}
	}
	d.peers = peers
	index.TuneRuntime()
	ix, err := index.Open(cfg.Node.DataDir, index.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	d.ix = ix
	clock := &replica.Clock{}
	for _, fc := range cfg.Folders {
		fo, err := d.openFolder(fc, byName, clock)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("folder %s: %w", fc.ID, err)
		}
		d.folders[fc.ID] = fo
	}
	tr, err := transport.New(transport.Config{
		Identity: id,
		Listen:   cfg.Node.Listen,
		Peers:    peers,
		Logger:   log,
		Handler:  d.handleConn,
		Chunks:   d,
	})
	if err != nil {
		d.Close()
		return nil, err
	}
	d.tr = tr
	return d, nil
}

func (d *Daemon) openFolder(fc config.Folder, byName map[string]identity.NodeID, clock *replica.Clock) (*folder, error) {
	match, err := ignore.New(fc.Ignore)
	if err != nil {
		return nil, err
	}
	fs, err := vfs.Open(fc.Path)
	if err != nil {
		return nil, err
	}
	var peers []replica.Peer
	for _, name := range fc.Peers {
		peers = append(peers, replica.Peer{Name: name, ID: byName[name].Short()})
	}
	log := d.log.With("folder", fc.ID)
	fo := &folder{}
	fo.ignore.Store(match)
	skip := func(rel string, isDir bool) bool { return fo.ignore.Load().Match(rel, isDir) }
	w, err := watcher.New(fc.Path, watcher.Options{
		Settle:         fc.Settle,
		RescanInterval: rescanInterval(fc.Rescan),
		Ignore:         skip,
		Unnamed:        fs.IsUnnamed,
		Own:            fs,
		Logger:         log,
	})
	if err != nil {
		fs.Close()
		return nil, err
	}
	// The engine, created after the scanner, holds the deletion guard and
	// stamps new local versions (noting when they were recorded).
	var engine *replica.Folder
	guard := func(folder string, deletions, total int) error { return engine.DeleteGuard(folder, deletions, total) }
	stamp := clockFunc(func(now time.Time) conflict.Stamp { return engine.Stamp(now) })
	// The scanner leaves alone the files the watcher sees open for writing.
	sc, err := newScanner(fc, d.ix, d.id.ID.Short(), stamp, match, guard, w.Writing, d.log)
	if err != nil {
		fs.Close()
		return nil, err
	}
	engine, err = replica.New(replica.Options{
		Folder:       fc,
		Name:         d.cfg.Node.Name,
		Self:         d.id.ID.Short(),
		Peers:        peers,
		Index:        d.ix,
		Clock:        clock,
		ConflictDir:  filepath.Join(d.cfg.Node.DataDir, "conflicts", fc.ID),
		Logger:       d.log,
		Ignore:       skip,
		ResyncMarker: ResyncMarker(d.cfg.Node.DataDir, fc.ID),
		Events:       replica.Events{Committed: observeSeconds(d.commitLatency.WithLabelValues(fc.ID))},
	}, sc, fs)
	if err != nil {
		fs.Close()
		return nil, err
	}
	fo.engine, fo.fs, fo.watcher, fo.scanner = engine, fs, w, sc.(scanAdapter).s
	return fo, nil
}

// rescanInterval maps the config's "0 disables" to the watcher's "< 0
// disables".
func rescanInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// indexCloseTimeout bounds closing the index at shutdown. Badger retries a
// memtable flush that fails (a full disk, a data dir removed underneath it)
// once a second, forever; past this the daemon stops without it, which
// costs nothing that was confirmed: applied versions are synced before they
// are confirmed, and the next start recovers the index as after a crash.
const indexCloseTimeout = 5 * time.Second

// Close releases what New opened. Run closes them itself.
func (d *Daemon) Close() {
	for _, f := range d.folders {
		f.fs.Close()
	}
	if d.ix != nil {
		ix := d.ix
		d.ix = nil
		done := make(chan error, 1)
		// Owned by the process from here: if Badger never returns, the
		// daemon exits with this goroutine still blocked in it.
		go func() { done <- ix.Close() }()
		select {
		case err := <-done:
			if err != nil {
				d.log.Error("closing the index failed", "err", err)
			}
		case <-time.After(indexCloseTimeout):
			d.log.Error(fmt.Sprintf("the index in %s did not close within %s (is the disk full, or the data dir gone?); stopping without it: the next start recovers it as after a crash", ix.Dir(), indexCloseTimeout))
		}
	}
}

// Run runs the node until ctx ends, then stops every part and returns.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	fail := func(err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			cancel(err)
		}
	}
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	start("index", d.ix.Run)
	// watching is closed once every watcher has set up its watches (its
	// first batch is the start rescan), for the kernel limits check.
	watching := make(chan struct{})
	var unstarted atomic.Int64
	unstarted.Store(int64(len(d.folders)))
	if len(d.folders) == 0 {
		close(watching)
	}
	for id, f := range d.folders {
		batches := make(chan watcher.Batch, 16)
		engineIn := make(chan replica.Batch, 16)
		start("watcher "+id, func(ctx context.Context) error { return f.watcher.Run(ctx, batches) })
		start("relay "+id, func(ctx context.Context) error {
			defer close(engineIn)
			first := true
			for b := range batches {
				if first && unstarted.Add(-1) == 0 {
					close(watching)
				}
				first = false
				select {
				case engineIn <- replica.Batch{Paths: b.Paths, Complete: b.Complete, Rescan: b.Rescan}:
				case <-ctx.Done():
					return nil
				}
			}
			return nil
		})
		start("folder "+id, func(ctx context.Context) error { return f.engine.Run(ctx, engineIn) })
	}
	start("limits", func(ctx context.Context) error { return d.checkKernelLimits(ctx, watching) })
	start("transport", d.tr.Run)
	start("control", control.NewServer(d.cfg.Node.Control, d, d.log).Run)
	if addr := d.cfg.Node.Metrics; addr != "" {
		start("metrics", func(ctx context.Context) error { return d.serveMetrics(ctx, addr) })
	}
	d.log.Info("lockstep running", "node", d.cfg.Node.Name, "id", d.id.ID.String(), "listen", d.cfg.Node.Listen, "folders", len(d.folders))
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	d.log.Info("lockstep stopped")
	return nil
}

// handleConn runs one peer connection: hellos, then per shared folder a
// session streaming our index, and the dispatch of the peer's messages.
func (d *Daemon) handleConn(ctx context.Context, c *transport.Conn) {
	peerID := c.Peer().ID
	d.connStarted(peerID, c)
	defer d.connEnded(peerID, c)
	short := peerID.Short()
	log := d.log.With("peer", c.Peer().Name)
	hello := &protocol.Hello{Version: protocol.Version, ID: d.id.ID, Name: d.cfg.Node.Name, Features: protocol.FeatureChunkDelta | transport.Features}
	var shared []*replica.Folder
	for _, f := range d.folders {
		if !f.engine.Shares(short) {
			continue
		}
		hf, err := f.engine.Hello(short)
		if err != nil {
			log.Error("hello", "err", err)
			return
		}
		hello.Folders = append(hello.Folders, hf)
		shared = append(shared, f.engine)
	}
	if err := c.Send(ctx, hello); err != nil {
		return
	}
	m, err := c.Receive(ctx)
	if err != nil {
		return
	}
	theirs, ok := m.(*protocol.Hello)
	if !ok {
		c.Close(fmt.Errorf("%w: expected Hello, got %s", protocol.ErrProtocol, m.Type()))
		return
	}
	if theirs.ID != peerID {
		c.Close(fmt.Errorf("%w: hello names another node ID", protocol.ErrProtocol))
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	byID := map[string]*replica.Folder{}
	sessions := map[string]*replica.Session{}
	for _, f := range shared {
		for _, hf := range theirs.Folders {
			if hf.ID != f.ID() {
				continue
			}
			sess, err := f.Attach(short, c, hf)
			if err != nil {
				log.Error("attach folder session", "folder", f.ID(), "err", err)
				return
			}
			if theirs.Features&protocol.FeatureChunkDelta != 0 {
				sess.UseChunkDeltas()
			}
			byID[f.ID()] = f
			sessions[f.ID()] = sess
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sess.Run(ctx); err != nil && ctx.Err() == nil {
					log.Warn("folder session ended", "folder", f.ID(), "err", err)
					cancel()
				}
			}()
		}
	}
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *protocol.IndexUpdate:
			if sess := sessions[m.Folder]; sess != nil {
				err = sess.HandleIndex(ctx, m)
			}
		case *protocol.Confirm:
			if f := byID[m.Folder]; f != nil {
				err = f.HandleConfirm(short, m)
			}
		case *protocol.Error:
			log.Warn("peer reported an error", "err", m)
			return
		default:
			err = fmt.Errorf("%w: unexpected %s", protocol.ErrProtocol, m.Type())
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("closing connection", "err", err)
				c.Close(err)
			}
			return
		}
	}
}

// ReadChunk serves a peer's chunk request (transport.ChunkServer).
func (d *Daemon) ReadChunk(ctx context.Context, peer identity.NodeID, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
	f, ok := d.folders[req.Folder]
	if !ok || !f.engine.Shares(peer.Short()) {
		return nil, fmt.Errorf("folder %q: %w", req.Folder, protocol.ErrNoFolder)
	}
	return f.engine.ReadChunk(ctx, req, buf)
}

// Status answers the control API (control.Backend).
func (d *Daemon) Status(ctx context.Context, folderID string) (control.Status, error) {
	st := control.Status{Node: d.cfg.Node.Name, ID: d.id.ID.String(), Folders: []control.FolderStatus{}}
	for _, fc := range d.cfg.Folders {
		if folderID != "" && fc.ID != folderID {
			continue
		}
		fo := d.folders[fc.ID]
		fs, err := fo.engine.Status(ctx)
		if err != nil {
			return st, err
		}
		if m := fo.watcher.Mode(); m.State == watcher.Polling {
			fs.Warning = fmt.Sprintf("not watching, rescanning periodically since %s: %s", m.Since.UTC().Format(time.RFC3339), m.Reason)
		}
		st.Folders = append(st.Folders, fs)
	}
	if folderID != "" && len(st.Folders) == 0 {
		return st, fmt.Errorf("%w: no folder %q in this node's configuration", control.ErrBadRequest, folderID)
	}
	d.trafficMu.Lock()
	for _, p := range d.peers {
		tr := d.traffic[p.ID]
		total := tr.done
		for _, c := range tr.live {
			total = addStats(total, c.Stats())
		}
		st.Traffic = append(st.Traffic, control.PeerTraffic{
			Name: p.Name, Connected: len(tr.live) > 0,
			BytesSent: total.Sent, BytesReceived: total.Received,
			ChunkBytesSent: total.ChunkBytesSent, ChunkBytesReceived: total.ChunkBytesReceived,
		})
	}
	d.trafficMu.Unlock()
	return st, nil
}

func addStats(a, b transport.Stats) transport.Stats {
	a.Sent += b.Sent
	a.Received += b.Received
	a.SentRaw += b.SentRaw
	a.ReceivedRaw += b.ReceivedRaw
	a.ChunksSent += b.ChunksSent
	a.ChunksReceived += b.ChunksReceived
	a.ChunkBytesSent += b.ChunkBytesSent
	a.ChunkBytesReceived += b.ChunkBytesReceived
	a.PacketBytesSent += b.PacketBytesSent
	a.PacketBytesReceived += b.PacketBytesReceived
	return a
}

// Conflicts answers the control API (control.Backend).
func (d *Daemon) Conflicts(ctx context.Context, folderID string) ([]control.Conflict, error) {
	var out []control.Conflict
	found := false
	for _, fc := range d.cfg.Folders {
		if folderID != "" && fc.ID != folderID {
			continue
		}
		found = true
		list, err := d.folders[fc.ID].engine.Conflicts()
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	if folderID != "" && !found {
		return nil, fmt.Errorf("%w: no folder %q in this node's configuration", control.ErrBadRequest, folderID)
	}
	return out, nil
}

// Wait answers the control API (control.Backend): paths are absolute and
// grouped by folder.
func (d *Daemon) Wait(ctx context.Context, paths []string) (control.WaitResponse, error) {
	byFolder := map[*replica.Folder][]string{}
	var order []*replica.Folder
	for _, p := range paths {
		f, rel, err := d.locate(p)
		if err != nil {
			return control.WaitResponse{}, err
		}
		if _, ok := byFolder[f]; !ok {
			order = append(order, f)
		}
		byFolder[f] = append(byFolder[f], rel)
	}
	resp := control.WaitResponse{Committed: true}
	for _, f := range order {
		r, err := f.Wait(ctx, byFolder[f])
		if err != nil {
			return r, err
		}
		if !r.Committed {
			resp.Committed = false
			for _, m := range r.Missing {
				m.Path = filepath.Join(f.Path(), filepath.FromSlash(m.Path))
				resp.Missing = append(resp.Missing, m)
			}
		}
	}
	return resp, nil
}

// Resume answers the control API (control.Backend).
func (d *Daemon) Resume(_ context.Context, folderID string, acceptDeletes bool) error {
	found := false
	for _, fc := range d.cfg.Folders {
		if folderID != "" && fc.ID != folderID {
			continue
		}
		found = true
		d.folders[fc.ID].engine.Resume(acceptDeletes)
	}
	if !found {
		return fmt.Errorf("%w: no folder %q in this node's configuration", control.ErrBadRequest, folderID)
	}
	return nil
}

// locate maps an absolute path to its folder and folder-relative path.
func (d *Daemon) locate(p string) (*replica.Folder, string, error) {
	clean := filepath.Clean(p)
	for _, fc := range d.cfg.Folders {
		rel, err := filepath.Rel(fc.Path, clean)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		rel = filepath.ToSlash(rel)
		if err := vfs.CheckPath(rel); err != nil {
			return nil, "", fmt.Errorf("%w: %v", control.ErrBadRequest, err)
		}
		return d.folders[fc.ID].engine, rel, nil
	}
	return nil, "", fmt.Errorf("%w: %s is not inside a synced folder", control.ErrBadRequest, p)
}
