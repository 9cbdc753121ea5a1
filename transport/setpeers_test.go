package transport

import (
	"testing"
	"time"
)

// A peer added while the transport runs is accepted and dialed; a peer
// removed is disconnected and no longer dialed.
func TestSetPeersAddsAndRemoves(t *testing.T) {
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	a := startNode(t, ida, "127.0.0.1:0", nil)
	defer a.stop(t)
	b := startNode(t, idb, "127.0.0.1:0", []Peer{a.peer("a")})
	defer b.stop(t)
	eventually(t, 5*time.Second, "a refuses b while b is not its peer", func() bool {
		return len(a.logs.lines("refused connection from unknown node")) > 0
	})

	mustf(t, a.tr.SetPeers([]Peer{b.peer("b")}), "add b")
	ca := a.nextConn(t)
	if ca.Peer().ID != idb.ID {
		t.Fatalf("a connected to %s, want b", ca.Peer().Name)
	}
	b.nextConn(t)

	mustf(t, a.tr.SetPeers(nil), "remove b")
	select {
	case <-ca.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a kept its connection to b after removing b")
	}
	eventually(t, 5*time.Second, "b's redials are refused again", func() bool {
		return len(a.logs.lines("refused connection from unknown node")) > 1
	})
	if n := len(a.liveConns()); n != 0 {
		t.Fatalf("a has %d live connections after removing its only peer", n)
	}
}

// A peer's new address is dialed from the next attempt on.
func TestSetPeersChangesAddress(t *testing.T) {
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}})
	defer b.stop(t)
	wrong := b.peer("b")
	wrong.Address = freeUDPAddr(t) // nobody listens there
	a := startNode(t, ida, "127.0.0.1:0", []Peer{wrong})
	defer a.stop(t)
	mustf(t, a.tr.SetPeers([]Peer{b.peer("b")}), "fix b's address")
	if c := a.nextConn(t); c.Peer().ID != idb.ID {
		t.Fatalf("a connected to %s, want b", c.Peer().Name)
	}
}

func TestSetPeersRejectsOwnID(t *testing.T) {
	ida := newIdentity(t, "a")
	a := startNode(t, ida, "127.0.0.1:0", nil)
	defer a.stop(t)
	if err := a.tr.SetPeers([]Peer{{ID: ida.ID, Name: "self"}}); err == nil {
		t.Fatal("SetPeers accepted this node's own ID")
	}
}
