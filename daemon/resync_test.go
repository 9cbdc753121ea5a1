package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"lockstep/config"
	"lockstep/identity"
	"lockstep/transport"
)

// fakeConn stands for a connection whose handler runs.
type fakeConn struct {
	stats transport.Stats
	mu    sync.Mutex
	err   error // what Close was given; nil while open
}

func (c *fakeConn) Stats() transport.Stats { return c.stats }

func (c *fakeConn) Close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *fakeConn) closed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// newPeeredNode prepares node1 with one folder of the given mode, shared
// with one peer, node2, that never answers; it returns the peer's ID.
func newPeeredNode(t *testing.T, mode string) (*config.Config, identity.NodeID) {
	t.Helper()
	root := t.TempDir()
	data := filepath.Join(root, "data")
	folder := filepath.Join(root, "docroot")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := identity.Create(data, "node1"); err != nil {
		t.Fatal(err)
	}
	peer, _, err := identity.Create(filepath.Join(root, "peer"), "node2")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[node]
name = "node1"
data_dir = %q
listen = %q

[[peers]]
name = "node2"
id = %q
address = %q

[[folders]]
id = "docroot"
path = %q
mode = %q
`, data, freeUDP(t), peer.ID.String(), freeUDP(t), folder, mode)), filepath.Join(root, "lockstep.toml"), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, peer.ID
}

// TestResyncClosesKeptConnection: two nodes that dialled each other at
// once keep one connection and close the other, whose handler may start
// after the kept one's and end before it. The peer must stay connected,
// and a resync must close the connection kept, or the resync waits
// forever for the peer's index on a connection from before the reset.
func TestResyncClosesKeptConnection(t *testing.T) {
	cfg, peer := newPeeredNode(t, "async")
	d, stop := start(t, cfg)
	defer stop()

	kept := &fakeConn{stats: transport.Stats{Sent: 100}}
	replaced := &fakeConn{stats: transport.Stats{Sent: 10}}
	d.connStarted(peer, kept)
	d.connStarted(peer, replaced) // the replaced one's handler started last
	replaced.Close(errors.New("duplicate connection: replaced by a newer connection"))
	d.connEnded(peer, replaced)

	st, err := d.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Traffic) != 1 || !st.Traffic[0].Connected || st.Traffic[0].BytesSent != 110 {
		t.Fatalf("traffic %+v; want node2 connected with 110 bytes sent", st.Traffic)
	}

	if _, err := d.Resync(context.Background(), "docroot"); err != nil {
		t.Fatal(err)
	}
	if err := kept.closed(); !errors.Is(err, errResync) {
		t.Fatalf("connection kept closed with %v; want %v", err, errResync)
	}
	d.connEnded(peer, kept)
	st, err = d.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Traffic[0].Connected || st.Traffic[0].BytesSent != 110 {
		t.Fatalf("traffic %+v; want node2 disconnected with 110 bytes sent", st.Traffic)
	}
}
