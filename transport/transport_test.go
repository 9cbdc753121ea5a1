package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/identity"
	"lockstep/protocol"
)

func hello(id identity.Identity) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, ID: id.ID, Name: id.Name,
		Folders: []protocol.HelloFolder{{ID: "docroot", Epoch: 7, MaxSequence: 3}}}
}

// pair starts node b (accepting) and node a (dialing b).
func pair(t *testing.T, aOpts, bOpts []nodeOpt) (a, b *node) {
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	b = startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}}, bOpts...)
	a = startNode(t, ida, "127.0.0.1:0", []Peer{b.peer("b")}, aOpts...)
	return a, b
}

func TestExchangeControlMessages(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, nil, nil)
	ca, cb := a.nextConn(t), b.nextConn(t)
	if !ca.Dialed() || cb.Dialed() {
		t.Fatalf("Dialed: a=%v b=%v, want true false", ca.Dialed(), cb.Dialed())
	}
	if ca.Peer().ID != b.id.ID || cb.Peer().ID != a.id.ID {
		t.Fatal("connections name the wrong peers")
	}
	ctx := context.Background()
	file := protocol.FileInfo{Path: "index.html", Type: protocol.File, Size: 5, Mode: 0o644,
		Chunks:  []chunker.Ref{{Hash: chunker.Sum([]byte("hello")), Length: 5}},
		Version: conflict.Vector{{Node: a.id.ID.Short(), Value: 1}}, Sequence: 1}
	sent := []protocol.Message{
		hello(a.id),
		&protocol.IndexUpdate{Folder: "docroot", Epoch: 7, After: 0, Through: 1, Files: []protocol.FileInfo{file}},
		&protocol.Confirm{Folder: "docroot", Epoch: 9, Through: 4},
		&protocol.Error{Code: protocol.CodeNoFolder, Message: "no such folder"},
	}
	for _, m := range sent {
		mustf(t, ca.Send(ctx, m), "send %s", m.Type())
	}
	for i, want := range sent {
		got, err := cb.Receive(ctx)
		mustf(t, err, "receive %d", i)
		if got.Type() != want.Type() {
			t.Fatalf("message %d is %s, want %s (out of order?)", i, got.Type(), want.Type())
		}
	}
	if rtt, err := cb.Ping(ctx); err != nil || rtt <= 0 {
		t.Fatalf("Ping = %v, %v", rtt, err)
	}
	if err := ca.Send(ctx, &protocol.ChunkRequest{Folder: "d", Length: 1}); err == nil {
		t.Fatal("Send accepted a chunk request, which belongs on its own stream")
	}
	if err := ca.Send(ctx, &protocol.Confirm{}); !errors.Is(err, protocol.ErrProtocol) {
		t.Fatalf("Send of an invalid message = %v, want a protocol error", err)
	}
	st := ca.Stats()
	if st.Sent == 0 || st.Sent != st.SentRaw || st.PacketBytesSent < st.Sent {
		t.Fatalf("sender stats %+v", st)
	}
	if rs := cb.Stats(); rs.Received != st.Sent-uint64(len(mustFrame(t, &protocol.Pong{Nonce: 1}))) {
		t.Logf("receiver counted %d bytes, sender %d (including the pong)", rs.Received, st.Sent)
	}
}

func mustFrame(t *testing.T, m protocol.Message) []byte {
	b, err := protocol.AppendFrame(nil, m)
	mustf(t, err, "frame")
	return b
}

func TestHelloWithWrongIDClosesConnection(t *testing.T) {
	a, b := pair(t, nil, nil)
	ca, cb := a.nextConn(t), b.nextConn(t)
	h := hello(a.id)
	h.ID = newIdentity(t, "other").ID
	mustf(t, ca.Send(context.Background(), h), "send")
	select {
	case <-cb.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a Hello naming another node did not close the connection")
	}
	if err := cb.Err(); !errors.Is(err, protocol.ErrProtocol) || !strings.Contains(err.Error(), "hello names node") {
		t.Fatalf("receiver's close reason: %v", err)
	}
	<-ca.Done()
	if err := ca.Err(); !errors.Is(err, protocol.ErrProtocol) {
		t.Fatalf("sender's close reason: %v, want the peer's protocol error", err)
	}
}

func TestRefuseUnpinnedDialer(t *testing.T) {
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	stranger := newIdentity(t, "c")
	// b pins only c; a dials b.
	b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: stranger.ID, Name: "c"}})
	a := startNode(t, ida, "127.0.0.1:0", []Peer{b.peer("b")})
	eventually(t, 10*time.Second, "refusal logged by b", func() bool { return len(b.logs.lines("refused connection")) > 0 })
	line := b.logs.lines("refused connection")[0]
	if !strings.Contains(line, ida.ID.String()) || !strings.Contains(line, a.tr.Addr().String()) {
		t.Fatalf("refusal line does not name the dialer's ID and address: %s", line)
	}
	eventually(t, 10*time.Second, "dial failure logged by a", func() bool { return len(a.logs.lines("cannot connect")) > 0 })
	if len(a.conns)+len(b.conns) != 0 {
		t.Fatal("a connection was established with an unpinned node")
	}
}

func TestRefuseListenerWithUnexpectedID(t *testing.T) {
	ida, idb, idc := newIdentity(t, "a"), newIdentity(t, "b"), newIdentity(t, "c")
	b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}})
	// a expects node c at b's address.
	a := startNode(t, ida, "127.0.0.1:0", []Peer{{ID: idc.ID, Name: "c", Address: b.tr.Addr().String()}})
	eventually(t, 10*time.Second, "refusal logged by a", func() bool { return len(a.logs.lines("refused connection")) > 0 })
	line := a.logs.lines("refused connection")[0]
	if !strings.Contains(line, "presented="+idb.ID.String()) || !strings.Contains(line, b.tr.Addr().String()) {
		t.Fatalf("refusal line does not name the listener's ID and address: %s", line)
	}
	// b cannot have completed the handshake: a never sent its Finished.
	if len(a.conns)+len(b.conns) != 0 {
		t.Fatal("a connection was established with the wrong node")
	}
}

// TestRefuseStolenCertificate: presenting a pinned node's certificate
// without its private key fails the handshake.
func TestRefuseStolenCertificate(t *testing.T) {
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}})
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	thief := ida
	thief.Certificate = tls.Certificate{Certificate: ida.Certificate.Certificate, PrivateKey: otherKey, Leaf: ida.Certificate.Leaf}
	tr, err := New(Config{Identity: thief, Handler: func(context.Context, *Conn) {}})
	mustf(t, err, "new")
	var presented identity.NodeID
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, b.tr.Addr().String(), tr.clientTLS(b.peer("b"), &presented), tr.quicConfig())
	if err == nil {
		// TLS 1.3 client auth completes after the client's handshake
		// does; the server's verdict arrives as a close.
		select {
		case <-qc.Context().Done():
			err = context.Cause(qc.Context())
		case <-time.After(5 * time.Second):
		}
	}
	if err == nil {
		t.Fatal("a stolen certificate was accepted")
	}
	if len(b.conns) != 0 {
		t.Fatal("b handed a connection with a stolen certificate to its handler")
	}
}

func TestVersionMismatch(t *testing.T) {
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}})
	tr, err := New(Config{Identity: ida, Handler: func(context.Context, *Conn) {}, Peers: []Peer{b.peer("b")}})
	mustf(t, err, "new")
	tr.alpn = "lockstep/1" // the previous version: one stream per chunk request
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qt := &quic.Transport{Conn: listenUDP(t)}
	defer qt.Close()
	err = tr.dial(ctx, qt, tr.lookup(b.id.ID))
	if !errors.Is(err, protocol.ErrVersion) || !strings.Contains(err.Error(), "does not speak lockstep/1") {
		t.Fatalf("dial with another protocol version: %v, want a version error", err)
	}
	eventually(t, 5*time.Second, "mismatch logged by b", func() bool { return len(b.logs.lines("version mismatch")) == 1 })
}

func TestSimultaneousDialKeepsOneConnection(t *testing.T) {
	for round := range 4 {
		ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
		addrA, addrB := freeUDPAddr(t), freeUDPAddr(t)
		nodes := make(chan *node, 2)
		go func() { nodes <- startNode(t, ida, addrA, []Peer{{ID: idb.ID, Name: "b", Address: addrB}}) }()
		go func() { nodes <- startNode(t, idb, addrB, []Peer{{ID: ida.ID, Name: "a", Address: addrA}}) }()
		n1, n2 := <-nodes, <-nodes
		a, b := n1, n2
		if a.id.ID != ida.ID {
			a, b = n2, n1
		}
		aSmaller := ida.ID.Compare(idb.ID) < 0
		eventually(t, 10*time.Second, "one connection each, dialed by the smaller ID", func() bool {
			la, lb := a.liveConns(), b.liveConns()
			return len(la) == 1 && len(lb) == 1 && la[0].Dialed() == aSmaller && lb[0].Dialed() == !aSmaller
		})
		// Settled: the kept connections are the two ends of one QUIC
		// connection, so a message sent on one arrives on the other.
		ca, cb := a.liveConns()[0], b.liveConns()[0]
		mustf(t, ca.Send(context.Background(), hello(ida)), "send")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := cb.Receive(ctx)
		cancel()
		if err != nil || m.Type() != protocol.TypeHello {
			t.Fatalf("round %d: kept connections are not the same: %v %v", round, m, err)
		}
		if la, lb := a.liveConns(), b.liveConns(); len(la) != 1 || len(lb) != 1 {
			t.Fatalf("round %d: %d and %d live connections after settling", round, len(la), len(lb))
		}
		a.stop(t)
		b.stop(t)
	}
}

func TestKeepNewIsConsistent(t *testing.T) {
	tests := []struct {
		oldByUs, newByUs, selfSmaller, want bool
	}{
		{true, true, true, true},    // we redialed: the old one is stale
		{false, false, true, true},  // the peer redialed
		{true, false, true, false},  // we are smaller and dialed the old one: keep it
		{false, true, true, true},   // we are smaller and dialed the new one
		{true, false, false, true},  // the peer is smaller and dialed the new one
		{false, true, false, false}, // the peer is smaller and dialed the old one
		{true, true, false, true},   // same dialer, either way
		{false, false, false, true}, //
	}
	for _, tt := range tests {
		if got := keepNew(tt.oldByUs, tt.newByUs, tt.selfSmaller); got != tt.want {
			t.Errorf("keepNew(%v, %v, %v) = %v", tt.oldByUs, tt.newByUs, tt.selfSmaller, got)
		}
	}
	// Two connections X (dialed by node 0) and Y (dialed by node 1), in
	// either order on either node: both nodes keep the same one.
	for _, aSmaller := range []bool{true, false} {
		for _, orderA := range []bool{true, false} {
			for _, orderB := range []bool{true, false} {
				keptBy := func(self int, xFirst bool) string {
					selfSmaller := (self == 0) == aSmaller
					xByUs, yByUs := self == 0, self == 1
					if xFirst {
						if keepNew(xByUs, yByUs, selfSmaller) {
							return "Y"
						}
						return "X"
					}
					if keepNew(yByUs, xByUs, selfSmaller) {
						return "X"
					}
					return "Y"
				}
				if ka, kb := keptBy(0, orderA), keptBy(1, orderB); ka != kb {
					t.Errorf("aSmaller=%v orders %v/%v: node 0 keeps %s, node 1 keeps %s", aSmaller, orderA, orderB, ka, kb)
				}
			}
		}
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	checkGoroutines(t)
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	addrB := freeUDPAddr(t)
	b := startNode(t, idb, addrB, []Peer{{ID: ida.ID, Name: "a"}})
	a := startNode(t, ida, "127.0.0.1:0", []Peer{{ID: idb.ID, Name: "b", Address: addrB}})
	first := a.nextConn(t)
	b.nextConn(t)
	b.stop(t)
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a did not notice b shutting down")
	}
	if err := first.Err(); !errors.Is(err, protocol.ErrShutdown) {
		t.Fatalf("close reason %v, want the peer's shutdown", err)
	}
	b2 := startNode(t, idb, addrB, []Peer{{ID: ida.ID, Name: "a"}})
	second := a.nextConn(t)
	b2.nextConn(t)
	if second == first || second.Err() != nil {
		t.Fatal("no new connection after the peer restarted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := second.Ping(ctx); err != nil {
		t.Fatalf("ping over the new connection: %v", err)
	}
}

// TestReconnectAfterPeerCrash: the peer vanishes without closing its
// connection and comes back on the same address with the same identity.
// The surviving node must not wait for its idle timeout: the restarted
// node's stateless reset (its key is derived from the identity) or its own
// dial ends the stale connection.
func TestReconnectAfterPeerCrash(t *testing.T) {
	checkGoroutines(t)
	var ida, idb identity.Identity
	for {
		ida, idb = newIdentity(t, "a"), newIdentity(t, "b")
		if ida.ID.Compare(idb.ID) < 0 { // a keeps the connection it dialed
			break
		}
	}
	addrA, addrB := freeUDPAddr(t), freeUDPAddr(t)
	sock := listenUDPAt(t, addrB)
	b := startNodeOn(t, idb, addrB, sock, []Peer{{ID: ida.ID, Name: "a", Address: addrA}})
	a := startNode(t, ida, addrA, []Peer{{ID: idb.ID, Name: "b", Address: addrB}})
	eventually(t, 10*time.Second, "one connection, dialed by a", func() bool {
		la, lb := a.liveConns(), b.liveConns()
		return len(la) == 1 && len(lb) == 1 && la[0].Dialed() && !lb[0].Dialed()
	})
	stale := a.liveConns()[0]
	// The crash: b's socket goes away, so nothing b does reaches a.
	sock.Close()
	b.stop(t)
	if stale.Err() != nil {
		t.Fatalf("a heard of the crash: %v", stale.Err())
	}
	start := time.Now()
	b2 := startNode(t, idb, addrB, []Peer{{ID: ida.ID, Name: "a", Address: addrA}})
	eventually(t, 8*time.Second, "a reconnected to the restarted b", func() bool {
		la, lb := a.liveConns(), b2.liveConns()
		return stale.Err() != nil && len(la) == 1 && len(lb) == 1 && la[0] != stale
	})
	if d := time.Since(start); d > defaultIdleTimeout/2 {
		t.Fatalf("reconnecting took %v, as long as waiting for the idle timeout", d)
	}
	t.Logf("reconnected %v after the restart; the stale connection ended with: %v", time.Since(start).Round(time.Millisecond), stale.Err())
	// Both nodes may have dialled at once: the connection kept can still
	// change once, so the ping goes over whichever is live.
	eventually(t, 5*time.Second, "a ping over the new connection", func() bool {
		live := a.liveConns()
		if len(live) != 1 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := live[0].Ping(ctx)
		return err == nil
	})
}

// TestRunLeavesNoGoroutines: connections in every state, then shutdown.
func TestRunLeavesNoGoroutines(t *testing.T) {
	checkGoroutines(t)
	block := make(chan struct{})
	a, b := pair(t, nil, []nodeOpt{func(c *Config) {
		c.Chunks = chunkFunc(func(ctx context.Context, req protocol.ChunkRequest, _ []byte) ([]byte, error) {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return nil, protocol.ErrNotFound
		})
	}})
	ca := a.nextConn(t)
	b.nextConn(t)
	// Requests stuck in the server, a ping, queued control messages.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := ca.RequestChunk(context.Background(), protocol.ChunkRequest{Folder: "d", Hash: chunker.Hash{1}, Length: 10})
			errs <- err
		}()
	}
	mustf(t, ca.Send(context.Background(), hello(a.id)), "send")
	b.stop(t)
	a.stop(t)
	close(block)
	for range 4 {
		if err := <-errs; err == nil {
			t.Fatal("a request succeeded across a shutdown")
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	id := newIdentity(t, "a")
	h := func(context.Context, *Conn) {}
	other := newIdentity(t, "b").ID
	for name, cfg := range map[string]Config{
		"no identity":    {Handler: h},
		"no handler":     {Identity: id},
		"self as peer":   {Identity: id, Handler: h, Peers: []Peer{{ID: id.ID}}},
		"duplicate peer": {Identity: id, Handler: h, Peers: []Peer{{ID: other, Name: "x"}, {ID: other, Name: "y"}}},
		"zero peer":      {Identity: id, Handler: h, Peers: []Peer{{Name: "z"}}},
		"keepalive":      {Identity: id, Handler: h, KeepAlive: time.Minute, IdleTimeout: time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestWorthCompressing(t *testing.T) {
	const MB = 1e6
	tests := []struct {
		ratio, speed, link float64
		cores              int
		want               bool
	}{
		{0.35, 80 * MB, 200 * MB, 1, false},   // slow CPU, loopback: raw
		{0.35, 80 * MB, 12.5 * MB, 1, true},   // slow CPU, 100 Mbit/s: compress
		{0.35, 400 * MB, 117 * MB, 4, true},   // server CPU, 1 Gbit/s: compress
		{0.35, 400 * MB, 1250 * MB, 1, false}, // one core against 10 Gbit/s: raw
		{0.99, 400 * MB, 12.5 * MB, 1, false}, // incompressible: raw
		{0.35, 0, 200 * MB, 1, true},          // speed unknown: measure it
		{0.35, 80 * MB, 0, 1, true},           // link unknown
	}
	for _, tt := range tests {
		if got := worthCompressing(tt.ratio, tt.speed, tt.link, tt.cores); got != tt.want {
			t.Errorf("worthCompressing(ratio %v, %v MB/s, link %v MB/s, %d cores) = %v", tt.ratio, tt.speed/MB, tt.link/MB, tt.cores, got)
		}
	}
}

// TestCompressorAdapts: on a link faster than compression, chunks go raw
// except for the periodic probe; on a slow link they go compressed.
func TestCompressorAdapts(t *testing.T) {
	text := textChunk(64<<10, 5)
	var c compressor
	c.observe(1<<20, time.Second/80, 0.35) // 80 MB/s, ratio 0.35
	compressed := 0
	for range 3 * probeEvery {
		if z := c.compress(text, 10e9); z != nil {
			compressed++
			putCompressed(z)
		}
	}
	if compressed > 3 {
		t.Fatalf("on a 10 GB/s link %d of %d chunks went compressed, want only probes", compressed, 3*probeEvery)
	}
	c = compressor{}
	c.observe(1<<20, time.Second/80, 0.35)
	for i := range 20 {
		z := c.compress(text, 1e5)
		if z == nil {
			t.Fatalf("chunk %d went raw on a 100 kB/s link", i)
		}
		putCompressed(z)
	}
}

func TestDecompressRejectsBomb(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 1<<20)
	var cm compressor
	z := cm.compress(big, 0)
	if z == nil {
		t.Fatal("1 MiB of one letter did not compress")
	}
	if _, err := decompress(*z, 64<<10, nil); err == nil {
		t.Fatal("decompressed 1 MiB into a 64 KiB chunk")
	}
	if _, err := decompress(*z, 64<<10, make([]byte, 2<<20)); err == nil {
		t.Fatal("decompressed 1 MiB into a 64 KiB chunk given a larger buffer")
	}
	out, err := decompress(*z, len(big), nil)
	if err != nil || !bytes.Equal(out, big) {
		t.Fatalf("round trip: %v", err)
	}
	// Into a caller's buffer, including one that holds the input.
	buf := make([]byte, len(big)+100)
	if out, err := decompress(*z, len(big), buf); err != nil || !bytes.Equal(out, big) || &out[0] != &buf[0] {
		t.Fatalf("into a buffer: %v", err)
	}
	copy(buf[10:], *z)
	if out, err := decompress(buf[10:10+len(*z)], len(big), buf); err != nil || !bytes.Equal(out, big) || &out[0] != &buf[0] {
		t.Fatalf("into the buffer holding the input: %v", err)
	}
	if _, err := decompress([]byte("not zstd at all"), 10, nil); err == nil {
		t.Fatal("garbage decompressed")
	}
	random := make([]byte, 64<<10)
	rand.Read(random)
	if cm.compress(random, 0) != nil {
		t.Fatal("random data was sent compressed")
	}
	text := textChunk(64<<10, 9)
	if z := (&compressor{}).compress(text, 0); z == nil || len(*z) > len(text)/2 {
		t.Fatal("text was not compressed")
	}
	if cm.compress([]byte("short"), 0) != nil {
		t.Fatal("a tiny chunk was compressed")
	}
}
