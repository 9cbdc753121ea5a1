package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"lockstep/conflict"
	"lockstep/index"
	"lockstep/protocol"
	"lockstep/vfs"
)

// Limits of one IndexUpdate: enough files to amortise a message, small
// enough to stay far below the frame limit and keep latency low.
const (
	maxBatchFiles = 1000
	maxBatchBytes = 4 << 20
)

var errBatchFull = errors.New("batch full")

// Session is the folder's side of one connection to a peer.
type Session struct {
	f     *Folder
	p     *peer
	conn  Conn
	epoch uint64 // our index epoch when the session began
	// cursor is the last sequence of our index sent to the peer.
	cursor uint64
	// sent holds the chunk lists announced to the peer on this connection,
	// the bases of differences, and received those the peer announced, to
	// resolve its differences; both nil unless the peer offers them. Only
	// Run uses sent, only HandleIndex received.
	sent, received *protocol.DeltaWindow
}

// Attach registers a connection to peer id, whose hello for this folder is
// theirs, and returns the session to Run. It must return before the
// connection's messages are handed to HandleIndex, so that they are
// judged against the peer's current index epoch.
func (f *Folder) Attach(id conflict.NodeID, conn Conn, theirs protocol.HelloFolder) (*Session, error) {
	info, err := f.ix.Info(f.id)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.peers[id]
	if !ok {
		return nil, fmt.Errorf("folder %s is not shared with %016x", f.id, uint64(id))
	}
	if p.progress.PeerEpoch != theirs.Epoch {
		// The peer rebuilt its index: its sequences start over.
		if p.progress.PeerEpoch != 0 {
			f.log.Info("peer index epoch changed; receiving it from the start", "peer", p.Name)
		}
		p.progress.PeerEpoch = theirs.Epoch
		p.progress.Received = 0
		p.wm = newWatermark(0)
		p.confirmed = 0
	}
	p.live = append(p.live, conn)
	p.lastSeen = f.now()
	if f.resync != nil {
		f.resync.target[id] = theirs.MaxSequence
	}
	// A confirmation queued on the previous connection may never have
	// arrived: confirm again on this one.
	p.confirmed = 0
	// The peer tells how far it has our index; a different epoch means it
	// has nothing of this incarnation.
	cursor := theirs.PeerSequence
	if theirs.PeerEpoch != info.Epoch || cursor > info.Sequence {
		cursor = 0
	}
	f.log.Info("peer connected", "peer", p.Name)
	return &Session{f: f, p: p, conn: conn, epoch: info.Epoch, cursor: cursor}, nil
}

// UseChunkDeltas makes the session announce chunk lists as differences
// where that is shorter, and accept the peer's: for peers whose hello
// offers protocol.FeatureChunkDelta (this node's always does). Call it
// before Run and HandleIndex.
func (s *Session) UseChunkDeltas() {
	s.sent, s.received = protocol.NewDeltaWindow(), protocol.NewDeltaWindow()
}

// HandleIndex takes an announcement that arrived on this session's
// connection: chunk-list differences are resolved against the lists the
// peer announced before on it, then the folder decides every entry
// (Folder.HandleIndex). A difference that cannot be resolved is an error:
// the connection must close, and the next one starts from full lists.
func (s *Session) HandleIndex(ctx context.Context, u *protocol.IndexUpdate) error {
	for i := range u.Files {
		fi := &u.Files[i]
		if s.received == nil {
			if fi.Delta != nil {
				return fmt.Errorf("index update of folder %s from %s: %q: a chunk-list difference from a peer that did not offer them", s.f.id, s.p.Name, fi.Path)
			}
			continue
		}
		if err := s.received.Resolve(fi); err != nil {
			return fmt.Errorf("index update of folder %s from %s: %w", s.f.id, s.p.Name, err)
		}
		s.received.Note(fi)
	}
	return s.f.HandleIndex(ctx, s.p.ID, u)
}

// Run streams the folder's index to the peer and confirms the peer's
// announcements as they are applied, until ctx ends or the connection
// closes.
func (s *Session) Run(ctx context.Context) error {
	f, p, conn := s.f, s.p, s.conn
	defer func() {
		f.mu.Lock()
		// Two nodes that dialled each other at once keep one connection,
		// but the session of the one closed may be attached after the
		// other's: the peer stays connected through whichever is left.
		if i := slices.Index(p.live, conn); i >= 0 {
			p.live = slices.Delete(p.live, i, i+1)
		}
		if len(p.live) == 0 {
			p.lastSeen = f.now()
		}
		f.mu.Unlock()
		f.log.Info("peer disconnected", "peer", p.Name)
	}()
	cursor := s.cursor
	for {
		localC := f.local.C()
		f.mu.Lock()
		confirmC := p.confirm.C()
		mark := p.wm.Mark()
		sendConfirm := mark != p.confirmed
		epoch := p.progress.PeerEpoch
		f.mu.Unlock()

		if sendConfirm {
			if err := conn.Send(ctx, &protocol.Confirm{Folder: f.id, Epoch: epoch, Through: mark}); err != nil {
				return err
			}
			f.mu.Lock()
			p.confirmed = mark
			p.progress.Received = mark
			prog := p.progress
			f.mu.Unlock()
			if err := f.ix.SetProgress(f.id, p.ID, prog); err != nil {
				return err
			}
		}
		next, sent, err := f.sendBatch(ctx, conn, s.sent, s.epoch, cursor, peerEpoch{p.ID, epoch})
		if err != nil {
			return err
		}
		cursor = next
		if sent {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-conn.Done():
			return nil
		case <-localC:
		case <-confirmC:
		}
	}
}

// sendBatch sends the index entries after cursor, up to one batch, and
// returns the new cursor and whether there was anything to send. With a
// window, chunk lists go as differences from the ones it holds where that
// is shorter. The versions the peer holds already, applied from its own
// announcements, are left out (echo.go).
func (f *Folder) sendBatch(ctx context.Context, conn Conn, w *protocol.DeltaWindow, epoch, cursor uint64, to peerEpoch) (uint64, bool, error) {
	// The highest sequence, read before the entries: if every entry up to
	// it was superseded (or the index was reset), an empty update still
	// tells the peer it has received everything so far.
	info, err := f.ix.Info(f.id)
	if err != nil {
		return cursor, false, err
	}
	u := &protocol.IndexUpdate{Folder: f.id, Epoch: epoch, After: cursor, Through: cursor}
	size := 0
	var read []tailEntry
	err = f.ix.Since(ctx, f.id, cursor, func(r index.Record) error {
		u.Through = r.Sequence
		read = append(read, tailEntryOf(&r, f.opts.Self))
		if f.echoes.skip(r.Path, r.Version, to.id, to.epoch) {
			return nil
		}
		u.Files = append(u.Files, toInfo(&r))
		size += 64 + len(r.Path) + len(r.Target) + 36*len(r.Manifest.Chunks) + 12*len(r.Version)
		if len(u.Files) >= maxBatchFiles || size >= maxBatchBytes {
			return errBatchFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return cursor, false, err
	}
	f.feedTail(info.Epoch, cursor, read)
	if len(u.Files) == 0 && u.Through == cursor {
		if info.Epoch != epoch || info.Sequence <= cursor {
			return cursor, false, nil
		}
		u.Through = info.Sequence
	}
	if w != nil {
		// Noted before sending: the message may be handed over as is, and
		// a failed send ends the connection and its window with it.
		for i := range u.Files {
			w.Compress(&u.Files[i])
			w.Note(&u.Files[i])
		}
	}
	if err := conn.Send(ctx, u); err != nil {
		return cursor, false, err
	}
	return u.Through, true, nil
}

// HandleIndex takes a peer's announcement: every entry is decided against
// the local record, and what must change joins the pull queue. It blocks
// while the queue is full, which slows the peer's stream down instead of
// buffering without bound.
func (f *Folder) HandleIndex(ctx context.Context, id conflict.NodeID, u *protocol.IndexUpdate) error {
	f.mu.Lock()
	p, ok := f.peers[id]
	if ok {
		p.lastSeen = f.now()
	}
	stale := ok && u.Epoch != p.progress.PeerEpoch
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("index update for folder %s from a peer it is not shared with", f.id)
	}
	if stale {
		return nil // sent before the epoch change the hello told us of
	}
	// The local records, looked up together: an update's paths are
	// mostly neighbours, or all new here.
	paths := make([]string, len(u.Files))
	for i := range u.Files {
		paths[i] = u.Files[i].Path
	}
	locals, haves, err := f.ix.GetMany(f.id, paths)
	if err != nil {
		return err
	}
	for i := range u.Files {
		fi := &u.Files[i]
		f.opts.Clock.Observe(fi.Stamp)
		if err := f.admit(ctx, p, u.Epoch, fi, &locals[i], haves[i]); err != nil {
			return err
		}
	}
	f.mu.Lock()
	p.wm.Received(u.Through)
	f.mu.Unlock()
	p.confirm.Notify()
	return nil
}

// admit decides one announced entry and queues it when it needs work.
// local is fi's local record as read for the whole update (have: there is
// one). An entry it says to take may be taken: the puller decides each
// entry again against the record of the moment. One it says to drop is
// looked at again with the record of the moment: the local record may
// have changed since the update began (the loop blocks while the queue is
// full).
func (f *Folder) admit(ctx context.Context, p *peer, epoch uint64, fi *protocol.FileInfo, local *index.Record, have bool) error {
	if err := vfs.CheckPath(fi.Path); err != nil {
		f.log.Warn("refused an unsafe path from a peer", "peer", p.Name, "path", fi.Path, "err", err)
		return nil
	}
	if f.ignored(fi.Path, fi.Type == protocol.Dir) {
		return nil
	}
	if have && conflict.Resolve(recordVersion(local), infoVersion(fi)) == conflict.Keep {
		now, have, err := f.ix.Get(f.id, fi.Path)
		if err != nil {
			return err
		}
		if have && conflict.Resolve(recordVersion(&now), infoVersion(fi)) == conflict.Keep {
			return nil
		}
	}
	f.mu.Lock()
	if r := f.resync; r != nil {
		r.announcedFiles.Add(1)
		if !fi.Deleted {
			r.announcedBytes.Add(int64(fi.Size))
		}
	}
	f.mu.Unlock()
	return f.queue.add(ctx, f, p.ID, epoch, fi)
}

// HandleConfirm takes a peer's confirmation that it holds our index up to a
// sequence.
func (f *Folder) HandleConfirm(id conflict.NodeID, c *protocol.Confirm) error {
	at := f.now()
	info, err := f.ix.Info(f.id)
	if err != nil {
		return err
	}
	f.mu.Lock()
	p, ok := f.peers[id]
	if !ok || c.Epoch != info.Epoch || c.Through > info.Sequence {
		f.mu.Unlock()
		return nil
	}
	p.lastSeen = f.now()
	if c.Through <= p.progress.Confirmed {
		f.mu.Unlock()
		return nil
	}
	p.progress.Confirmed = c.Through
	prog := p.progress
	f.mu.Unlock()
	f.confirmed.Notify()
	if err := f.ix.SetProgress(f.id, id, prog); err != nil {
		return err
	}
	if err := f.observeCommits(at); err != nil {
		f.log.Warn("reading the committed versions for the commit latency metric failed", "err", err)
	}
	return nil
}
