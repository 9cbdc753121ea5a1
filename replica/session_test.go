package replica

import (
	"context"
	"testing"
)

// TestPeerStaysConnectedThroughLeftConnection: two nodes that dialled each
// other at once keep one connection and close the other, whose session
// may be attached after the kept one's. Closing it must leave the peer
// connected through the one kept.
func TestPeerStaysConnectedThroughLeftConnection(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	connected := func(n *testNode) bool {
		st, err := n.engine.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(st.Peers) == 1 && st.Peers[0].Connected
	}
	cutKept := link(t, ctx, a, b)
	defer cutKept()
	cutClosed := link(t, ctx, a, b) // attached last, closed first
	eventually(t, "both connected", func() bool { return connected(a) && connected(b) })
	cutClosed()
	eventually(t, "the closed connection's sessions to end", func() bool {
		a.engine.mu.Lock()
		defer a.engine.mu.Unlock()
		for _, p := range a.engine.peers {
			if len(p.live) != 1 {
				return false
			}
		}
		return true
	})
	if !connected(a) || !connected(b) {
		t.Fatalf("after closing the later connection: a connected %v, b connected %v; want both, through the one left", connected(a), connected(b))
	}
	cutKept()
	eventually(t, "both disconnected", func() bool { return !connected(a) && !connected(b) })
}
