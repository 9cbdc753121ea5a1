package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"time"

	"lockstep/config"
	"lockstep/control"
	"lockstep/index"
)

// pending is what one peer has not confirmed of this node's index.
type pending struct {
	files, bytes int64
	oldest       time.Time // stamp time of the oldest pending version
}

// pendingSince counts the records after sequence after: the versions a peer
// that confirmed through after does not hold yet.
func (f *Folder) pendingSince(ctx context.Context, after uint64) (pending, error) {
	var p pending
	err := f.ix.Since(ctx, f.id, after, func(r index.Record) error {
		p.files++
		if !r.Deleted && r.Type == index.File {
			p.bytes += r.Size
		}
		if t := r.Stamp.Time(); p.oldest.IsZero() || t.Before(p.oldest) {
			p.oldest = t
		}
		return nil
	})
	return p, err
}

// Status reports the folder's state and, per peer, connection and lag, as
// SPEC's status JSON describes.
func (f *Folder) Status(ctx context.Context) (control.FolderStatus, error) {
	info, err := f.ix.Info(f.id)
	if err != nil {
		return control.FolderStatus{}, err
	}
	now := f.now()
	// Held while the confirmations are read and used: the pending tail's
	// floor does not rise past them meanwhile.
	f.tailMu.Lock()
	defer f.tailMu.Unlock()
	type peerView struct {
		Peer
		connected bool
		lastSeen  time.Time
		confirmed uint64
	}
	f.mu.Lock()
	state, errMsg := f.stateLocked()
	st := control.FolderStatus{
		ID:         f.id,
		Path:       f.opts.Folder.Path,
		Mode:       string(f.opts.Folder.Mode),
		State:      state,
		Error:      errMsg,
		Files:      info.Files,
		Bytes:      info.Bytes,
		Resync:     f.resyncStatusLocked(),
		Tombstones: info.Deleted,
	}
	views := make([]peerView, 0, len(f.opts.Peers))
	for _, pp := range f.opts.Peers {
		p := f.peers[pp.ID]
		views = append(views, peerView{Peer: p.Peer, connected: p.current() != nil, lastSeen: p.lastSeen, confirmed: p.progress.Confirmed})
	}
	f.mu.Unlock()
	// The highest sequence, read again after the confirmations: each is at
	// most the highest sequence when it arrived.
	latest, err := f.ix.Info(f.id)
	if err != nil {
		return st, err
	}
	afters := viewsConfirmed(views, func(v peerView) uint64 { return v.confirmed })
	uncommitted := false
	if f.opts.Folder.Mode == config.ModeQuorum {
		if through := f.committedThrough(afters); through < latest.Sequence {
			uncommitted = true
			afters = append(afters, through)
		}
	}
	pend, err := f.pendingAfterLocked(ctx, latest, afters)
	if err != nil {
		return st, err
	}
	for i, v := range views {
		ps := control.PeerStatus{Name: v.Name, Connected: v.connected}
		if v.connected {
			ps.LastSeen = now.UTC()
		} else if !v.lastSeen.IsZero() {
			ps.LastSeen = v.lastSeen.UTC()
		}
		p := pend[i]
		ps.PendingFiles, ps.PendingBytes = p.files, p.bytes
		if p.files > 0 {
			ps.LagSeconds = max(now.Sub(p.oldest).Seconds(), 0)
		}
		st.Peers = append(st.Peers, ps)
	}
	if uncommitted {
		st.Uncommitted = pend[len(views)].files
	}
	return st, nil
}

func viewsConfirmed[T any](views []T, get func(T) uint64) []uint64 {
	out := make([]uint64, len(views))
	for i, v := range views {
		out[i] = get(v)
	}
	return out
}

// committedThrough returns the highest sequence S such that every version
// up to S is held by enough nodes to count as committed: this node and the
// peers whose confirmations reach S. confirmed holds each peer's confirmed
// sequence.
func (f *Folder) committedThrough(confirmed []uint64) uint64 {
	return CommittedThrough(confirmed, f.quorum())
}

// CommittedThrough is the pure rule behind committedThrough: with this node
// holding everything, a sequence is committed once quorum-1 peers confirmed
// it, so the answer is the (quorum-1)-th largest confirmation.
func CommittedThrough(confirmed []uint64, quorum int) uint64 {
	need := quorum - 1
	if need <= 0 {
		return ^uint64(0)
	}
	if need > len(confirmed) {
		return 0
	}
	c := slices.Clone(confirmed)
	sort.Slice(c, func(i, j int) bool { return c[i] > c[j] })
	return c[need-1]
}

// Wait blocks until the current local version of each path (relative to
// the folder) is committed, or ctx ends. A path whose latest change is not
// recorded yet is scanned first.
func (f *Folder) Wait(ctx context.Context, rels []string) (control.WaitResponse, error) {
	seqs := make([]uint64, len(rels))
	for i, rel := range rels {
		seq, err := f.currentSequence(ctx, rel)
		if err != nil {
			return control.WaitResponse{}, err
		}
		seqs[i] = seq
	}
	for {
		confirmedC := f.confirmed.C()
		missing := f.missing(rels, seqs)
		if len(missing) == 0 {
			return control.WaitResponse{Committed: true}, nil
		}
		select {
		case <-ctx.Done():
			return control.WaitResponse{Missing: missing}, nil
		case <-confirmedC:
		}
	}
}

// currentSequence records rel if the disk is ahead of the index and
// returns the sequence of its current version. A file still changing is
// waited for, until ctx ends.
func (f *Folder) currentSequence(ctx context.Context, rel string) (uint64, error) {
	for settled := 0; ; {
		r, have, err := f.ix.Get(f.id, rel)
		if err != nil {
			return 0, err
		}
		st, lerr := f.fs.Lstat(rel)
		if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
			return 0, lerr
		}
		if diskMatches(&r, have, st, lerr == nil) {
			if !have {
				return 0, fmt.Errorf("%w: %s does not exist in folder %s", control.ErrBadRequest, rel, f.id)
			}
			return r.Sequence, nil
		}
		if f.ignored(rel, lerr == nil && st.IsDir()) {
			return 0, fmt.Errorf("%w: %s is ignored in folder %s", control.ErrBadRequest, rel, f.id)
		}
		// The caller of Wait is done writing rel: record it as it is.
		f.scanMu.Lock()
		var retry []string
		if cs, ok := f.scan.(CompleteScanner); ok {
			retry, err = cs.ScanPathsDone(ctx, []string{rel})
		} else {
			retry, err = f.scan.ScanPaths(ctx, []string{rel})
		}
		f.scanMu.Unlock()
		if err != nil {
			return 0, err
		}
		f.local.Notify()
		// The watcher's batch may record it first (a file its writer is
		// done with is recorded at once): wake when the index grows.
		grown := f.local.C()
		if len(retry) == 0 {
			if settled++; settled > 3 {
				return 0, fmt.Errorf("%w: %s could not be recorded in folder %s", control.ErrBadRequest, rel, f.id)
			}
			continue
		}
		{
			// Still being written: look again once it had time to settle.
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("%s is still changing", rel)
			case <-grown:
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// missing lists the paths whose sequences are not committed yet, naming
// the peers that have not confirmed them.
func (f *Folder) missing(rels []string, seqs []uint64) []control.WaitMissing {
	f.mu.Lock()
	defer f.mu.Unlock()
	var confirmed []uint64
	for _, p := range f.opts.Peers {
		confirmed = append(confirmed, f.peers[p.ID].progress.Confirmed)
	}
	through := f.committedThrough(confirmed)
	var out []control.WaitMissing
	for i, rel := range rels {
		if seqs[i] <= through {
			continue
		}
		m := control.WaitMissing{Path: rel}
		for _, p := range f.opts.Peers {
			if f.peers[p.ID].progress.Confirmed < seqs[i] {
				m.Peers = append(m.Peers, p.Name)
			}
		}
		if f.opts.Folder.Mode == config.ModeQuorum {
			m.Reason = fmt.Sprintf("held by %d of the %d nodes a quorum needs", 1+len(f.opts.Peers)-len(m.Peers), f.quorum())
		} else {
			m.Reason = "not yet held by every peer"
		}
		out = append(out, m)
	}
	return out
}

// Conflicts lists the conflict losers recorded for this folder.
func (f *Folder) Conflicts() ([]control.Conflict, error) { return f.conflict.list() }
