package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"

	"lockstep/control"
)

// errResync closes the connections of a folder being resynced, so that
// both sides exchange their indexes again from the start.
var errResync = errors.New("folder resync started: reconnecting")

// ResyncMarker is the file whose presence makes the daemon resync the
// folder when it starts: `lockstep resync` writes it when no daemon runs
// (or the index had to be discarded), and a running resync keeps it until
// it is done, so that it survives a restart.
func ResyncMarker(dataDir, folderID string) string {
	return filepath.Join(dataDir, "resync", url.PathEscape(folderID))
}

// Resync answers the control API (control.Backend): it resets the folders'
// index and reconnects their peers; the engines do the rest.
func (d *Daemon) Resync(_ context.Context, folderID string) ([]string, error) {
	var started []string
	peers := map[string]bool{}
	for _, fc := range d.cfg.Folders {
		if folderID != "" && fc.ID != folderID {
			continue
		}
		if err := d.folders[fc.ID].engine.Resync(); err != nil {
			return started, err
		}
		started = append(started, fc.ID)
		for _, p := range fc.Peers {
			peers[p] = true
		}
	}
	if folderID != "" && len(started) == 0 {
		return nil, fmt.Errorf("%w: no folder %q in this node's configuration", control.ErrBadRequest, folderID)
	}
	// Every connection whose handler runs is closed, not only the last
	// one noted: after a simultaneous dial the one kept may have started
	// first. A connection whose handler starts after this sends a hello
	// of the reset index.
	var conns []liveConn
	d.trafficMu.Lock()
	for _, p := range d.peers {
		if tr := d.traffic[p.ID]; peers[p.Name] && tr != nil {
			conns = append(conns, tr.live...)
		}
	}
	d.trafficMu.Unlock()
	for _, c := range conns {
		c.Close(errResync)
	}
	slices.Sort(started)
	d.log.Info("resync started", "folders", started)
	return started, nil
}
