package daemon

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"lockstep/config"
	"lockstep/identity"
	"lockstep/ignore"
	"lockstep/replica"
	"lockstep/transport"
	"lockstep/watcher"
)

// change is one configuration key a reload found changed.
type change struct {
	Key      string // e.g. "peers.web2.address", "folders.docroot.ignore"
	Old, New string // the values, as shown in the log; empty when absent
	// Live is true when the running daemon applies the change; false when
	// it takes effect only after a restart.
	Live bool
}

// reloadPlan is what a reload does.
type reloadPlan struct {
	Changes []change
	// Effective is the configuration the daemon runs after the reload:
	// the new file's live settings over the running one's restart-only
	// ones (the node table, the set of folders, their paths and modes).
	Effective *config.Config
}

// planReload compares the running configuration with a new one and
// decides, key by key, what a reload applies and what needs a restart.
// Peers (added, removed, a changed ID or address) and every per-folder
// setting but path and mode apply live; the [node] table and the set of
// folders need a restart. It is pure: the caller applies the plan.
func planReload(old, cur *config.Config) reloadPlan {
	var p reloadPlan
	add := func(live bool, key, o, n string) {
		p.Changes = append(p.Changes, change{Key: key, Old: o, New: n, Live: live})
	}
	diff := func(live bool, key, o, n string) {
		if o != n {
			add(live, key, o, n)
		}
	}

	diff(false, "node.name", old.Node.Name, cur.Node.Name)
	diff(false, "node.data_dir", old.Node.DataDir, cur.Node.DataDir)
	diff(false, "node.listen", old.Node.Listen, cur.Node.Listen)
	diff(false, "node.control", old.Node.Control, cur.Node.Control)
	diff(false, "node.metrics", old.Node.Metrics, cur.Node.Metrics)

	for _, np := range cur.Peers {
		op, ok := old.Peer(np.Name)
		if !ok {
			add(true, "peers."+np.Name, "", np.Address)
			continue
		}
		diff(true, "peers."+np.Name+".id", op.ID, np.ID)
		diff(true, "peers."+np.Name+".address", op.Address, np.Address)
	}
	for _, op := range old.Peers {
		if _, ok := cur.Peer(op.Name); !ok {
			add(true, "peers."+op.Name, op.Address, "")
		}
	}

	eff := &config.Config{Node: old.Node, Peers: cur.Peers}
	for _, of := range old.Folders {
		nf, ok := cur.Folder(of.ID)
		if !ok {
			add(false, "folders."+of.ID, of.Path, "")
			// The folder keeps running until a restart, with the peers
			// that are still configured.
			kept := of
			kept.Peers = slices.DeleteFunc(slices.Clone(of.Peers), func(name string) bool {
				_, ok := cur.Peer(name)
				return !ok
			})
			if kept.Mode == config.ModeQuorum {
				kept.Quorum = min(kept.Quorum, len(kept.Peers)+1)
			}
			if !slices.Equal(kept.Peers, of.Peers) {
				add(true, "folders."+of.ID+".peers", list(of.Peers), list(kept.Peers))
			}
			eff.Folders = append(eff.Folders, kept)
			continue
		}
		k := "folders." + of.ID + "."
		diff(false, k+"path", of.Path, nf.Path)
		diff(false, k+"mode", string(of.Mode), string(nf.Mode))
		e := nf
		e.Path, e.Mode = of.Path, of.Mode
		if nf.Mode != of.Mode {
			// The quorum belongs to the mode that keeps running.
			e.Quorum = of.Quorum
		} else {
			diff(true, k+"quorum", fmt.Sprint(of.Quorum), fmt.Sprint(nf.Quorum))
		}
		diff(true, k+"peers", list(of.Peers), list(nf.Peers))
		diff(true, k+"ignore", list(of.Ignore), list(nf.Ignore))
		diff(true, k+"owner", of.Owner, nf.Owner)
		diff(true, k+"group", of.Group, nf.Group)
		diff(true, k+"settle", dur(of.Settle), dur(nf.Settle))
		diff(true, k+"rescan", dur(of.Rescan), dur(nf.Rescan))
		diff(true, k+"tombstone_retention", dur(of.TombstoneRetention), dur(nf.TombstoneRetention))
		diff(true, k+"delete_guard", fmt.Sprint(of.DeleteGuard), fmt.Sprint(nf.DeleteGuard))
		diff(true, k+"delete_guard_min", fmt.Sprint(of.DeleteGuardMin), fmt.Sprint(nf.DeleteGuardMin))
		eff.Folders = append(eff.Folders, e)
	}
	for _, nf := range cur.Folders {
		if _, ok := old.Folder(nf.ID); !ok {
			add(false, "folders."+nf.ID, "", nf.Path)
		}
	}
	p.Effective = eff
	return p
}

func list(s []string) string { return "[" + strings.Join(s, ", ") + "]" }

func dur(d time.Duration) string { return d.String() }

// Reload applies a new configuration to the running daemon as far as it
// can without a restart, and logs one line per changed key: applied, or
// needing a restart. When the new configuration cannot be applied (a peer
// ID that does not parse, an invalid ignore pattern), nothing changes and
// the error is returned. Reloads are serialised.
func (d *Daemon) Reload(cfg *config.Config) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	plan := planReload(d.live, cfg)
	eff := plan.Effective

	// Check everything before changing anything.
	ids := map[string]identity.NodeID{}
	var peers []transport.Peer
	for _, p := range eff.Peers {
		id, err := identity.Parse(p.ID)
		if err != nil {
			return fmt.Errorf("peer %s: %w", p.Name, err)
		}
		if id == d.id.ID {
			return fmt.Errorf("peer %s has this node's own ID %s", p.Name, id)
		}
		ids[p.Name] = id
		peers = append(peers, transport.Peer{ID: id, Name: p.Name, Address: p.Address})
	}
	matchers := map[string]*ignore.Matcher{}
	for _, fc := range eff.Folders {
		old, _ := d.live.Folder(fc.ID)
		if slices.Equal(old.Ignore, fc.Ignore) {
			continue
		}
		m, err := ignore.New(fc.Ignore)
		if err != nil {
			return fmt.Errorf("folder %s: %w", fc.ID, err)
		}
		matchers[fc.ID] = m
	}

	if len(plan.Changes) == 0 {
		d.log.Info("configuration reloaded: nothing changed")
		return nil
	}

	// Peers: the folders learn of added peers before the transport
	// accepts them, and forget removed ones after it has dropped them.
	shared := func(c *config.Config, fid string) map[identity.NodeID]bool {
		out := map[identity.NodeID]bool{}
		fc, _ := c.Folder(fid)
		for _, name := range fc.Peers {
			if p, ok := c.Peer(name); ok {
				if id, err := identity.Parse(p.ID); err == nil {
					out[id] = true
				}
			}
		}
		return out
	}
	folderPeers := func(fc config.Folder) []replica.Peer {
		var out []replica.Peer
		for _, name := range fc.Peers {
			out = append(out, replica.Peer{Name: name, ID: ids[name].Short()})
		}
		return out
	}
	var reconnect []identity.NodeID
	for _, fc := range eff.Folders {
		fo := d.folders[fc.ID]
		before, after := shared(d.live, fc.ID), shared(eff, fc.ID)
		union := folderPeers(fc)
		for _, p := range d.livePeers(fc.ID) {
			if !after[p.id] {
				union = append(union, replica.Peer{Name: p.name, ID: p.id.Short()})
			}
		}
		if err := fo.engine.SetPeers(union); err != nil {
			return fmt.Errorf("folder %s: %w", fc.ID, err)
		}
		for id := range after {
			if !before[id] {
				reconnect = append(reconnect, id)
			}
		}
		for id := range before {
			if !after[id] {
				reconnect = append(reconnect, id)
			}
		}
	}
	d.trafficMu.Lock()
	for _, p := range peers {
		if d.traffic[p.ID] == nil {
			d.traffic[p.ID] = &traffic{}
		}
	}
	d.peers = peers
	d.trafficMu.Unlock()
	if err := d.tr.SetPeers(peers); err != nil {
		return err
	}
	for _, id := range reconnect {
		// Connected before the folder was shared (or unshared): connect
		// again so that the hellos list the folders as they are now.
		d.tr.Reconnect(id)
	}
	for _, fc := range eff.Folders {
		fo := d.folders[fc.ID]
		if err := fo.engine.SetPeers(folderPeers(fc)); err != nil {
			return fmt.Errorf("folder %s: %w", fc.ID, err)
		}
		fo.engine.Reconfigure(fc)
		old, _ := d.live.Folder(fc.ID)
		rc := watcher.Reconfig{}
		if fc.Settle != old.Settle {
			rc.Settle = fc.Settle
		}
		if fc.Rescan != old.Rescan {
			rc.RescanInterval = rescanInterval(fc.Rescan)
		}
		if m := matchers[fc.ID]; m != nil {
			fo.ignore.Store(m)
			fo.scanner.SetIgnore(m)
			rc.Rewatch = true // and rescan: newly unignored paths appear
		}
		if rc != (watcher.Reconfig{}) {
			fo.watcher.Reconfigure(rc)
		}
	}
	d.live = eff
	for _, c := range plan.Changes {
		if c.Live {
			d.log.Info("configuration reloaded: applied", "key", c.Key, "old", c.Old, "new", c.New)
		} else {
			d.log.Warn("configuration reloaded: this change needs a restart", "key", c.Key, "old", c.Old, "new", c.New)
		}
	}
	return nil
}

type livePeer struct {
	name string
	id   identity.NodeID
}

// livePeers lists the peers folder fid is shared with in the running
// configuration.
func (d *Daemon) livePeers(fid string) []livePeer {
	var out []livePeer
	fc, _ := d.live.Folder(fid)
	for _, name := range fc.Peers {
		if p, ok := d.live.Peer(name); ok {
			if id, err := identity.Parse(p.ID); err == nil {
				out = append(out, livePeer{name, id})
			}
		}
	}
	return out
}
