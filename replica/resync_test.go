package replica

import (
	"testing"

	"lockstep/conflict"
	"lockstep/protocol"
)

// fakeConn stands for a live connection in resyncReady's view.
type fakeConn struct{ Conn }

func TestResyncReady(t *testing.T) {
	const a, b = conflict.NodeID(1), conflict.NodeID(2)
	type peerCase struct {
		connected bool
		hello     bool // a hello since the reset, announcing target
		target    uint64
		received  uint64
		open      uint64 // an entry still being applied (0: none)
	}
	cases := []struct {
		name   string
		peers  map[conflict.NodeID]peerCase
		queued bool
		want   bool
	}{
		{"no peer connected", map[conflict.NodeID]peerCase{a: {}, b: {}}, false, false},
		{"one peer caught up, other offline", map[conflict.NodeID]peerCase{a: {connected: true, hello: true, target: 10, received: 10}, b: {}}, false, true},
		{"one caught up, one behind", map[conflict.NodeID]peerCase{a: {connected: true, hello: true, target: 10, received: 10}, b: {connected: true, hello: true, target: 20, received: 15}}, false, false},
		{"received but one entry still applying", map[conflict.NodeID]peerCase{a: {connected: true, hello: true, target: 10, received: 10, open: 7}}, false, false},
		{"connection from before the reset", map[conflict.NodeID]peerCase{a: {connected: true, hello: true, target: 10, received: 10}, b: {connected: true}}, false, false},
		{"queue not empty", map[conflict.NodeID]peerCase{a: {connected: true, hello: true, target: 10, received: 10}}, true, false},
		{"peer with an empty index", map[conflict.NodeID]peerCase{a: {connected: true, hello: true}}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &Folder{peers: map[conflict.NodeID]*peer{}, queue: newQueue(), resync: &resyncState{target: map[conflict.NodeID]uint64{}}}
			for id, pc := range tc.peers {
				p := &peer{Peer: Peer{ID: id}, wm: newWatermark(0)}
				if pc.connected {
					p.live = []Conn{fakeConn{}}
				}
				if pc.hello {
					f.resync.target[id] = pc.target
				}
				if pc.open > 0 {
					p.wm.Start(pc.open)
				}
				p.wm.Received(pc.received)
				f.peers[id] = p
			}
			if tc.queued {
				f.queue.items["x"] = &item{info: protocol.FileInfo{Path: "x"}}
			}
			if got := f.resyncReady(); got != tc.want {
				t.Errorf("resyncReady = %v, want %v", got, tc.want)
			}
		})
	}
}
