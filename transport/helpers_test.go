package transport

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"lockstep/identity"
	"lockstep/protocol"
)

// newIdentity creates a throwaway node identity.
func newIdentity(t testing.TB, name string) identity.Identity {
	t.Helper()
	id, _, err := identity.Create(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// freeUDPAddr returns a loopback UDP address that was free a moment ago,
// for tests in which both nodes must know each other's address up front.
func freeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// node is one running Transport in a test.
type node struct {
	id     identity.Identity
	tr     *Transport
	logs   *logBuffer
	conns  chan *Conn // every connection the handler saw, in order
	cancel context.CancelFunc
	done   chan error

	mu   sync.Mutex
	live map[*Conn]bool
}

type nodeOpt func(*Config)

func startNode(t testing.TB, id identity.Identity, listen string, peers []Peer, opts ...nodeOpt) *node {
	t.Helper()
	return startNodeOn(t, id, listen, nil, peers, opts...)
}

// startNodeOn starts a node on sock, when not nil, instead of binding listen.
func startNodeOn(t testing.TB, id identity.Identity, listen string, sock *net.UDPConn, peers []Peer, opts ...nodeOpt) *node {
	t.Helper()
	n := &node{id: id, logs: &logBuffer{}, conns: make(chan *Conn, 64), done: make(chan error, 1), live: map[*Conn]bool{}}
	cfg := Config{
		Identity: id, Listen: listen, Peers: peers,
		Logger:     slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Handler: func(ctx context.Context, c *Conn) {
			n.mu.Lock()
			n.live[c] = true
			n.mu.Unlock()
			n.conns <- c
			<-ctx.Done()
			n.mu.Lock()
			delete(n.live, c)
			n.mu.Unlock()
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.socket = sock
	n.tr = tr
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- tr.Run(ctx) }()
	select {
	case <-tr.Ready():
	case err := <-n.done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		n.stop(t)
		if t.Failed() {
			t.Logf("log of %s:\n%s", id.Name, n.logs)
		}
	})
	return n
}

// stop ends Run and waits for it; idempotent.
func (n *node) stop(t testing.TB) {
	t.Helper()
	n.cancel()
	select {
	case err, ok := <-n.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(n.done)
		}
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return 10s after cancel\n%s", buf[:runtime.Stack(buf, true)])
	}
}

func (n *node) peer(name string) Peer {
	addr := ""
	if a := n.tr.Addr(); a != nil {
		addr = a.String()
	}
	return Peer{ID: n.id.ID, Name: name, Address: addr}
}

// nextConn waits for the handler to see a connection.
func (n *node) nextConn(t testing.TB) *Conn {
	t.Helper()
	select {
	case c := <-n.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no connection within 10s\n%s", n.id.Name, n.logs)
		return nil
	}
}

func (n *node) liveConns() []*Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*Conn
	for c := range n.live {
		if c.Err() == nil {
			out = append(out, c)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes. Used only to
// wait for real network events; timer-driven logic is tested with synctest.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// running at its end (after every other cleanup, which runs first).
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines before the test, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func mustf(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

type chunkFunc func(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error)

func (f chunkFunc) ReadChunk(ctx context.Context, _ identity.NodeID, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
	return f(ctx, req, buf)
}

func listenUDPAt(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
