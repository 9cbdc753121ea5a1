package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"
	"github.com/quic-go/quic-go"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/identity"
	"lockstep/protocol"
)

// chunkStore is a ChunkServer over a map.
type chunkStore struct {
	mu     sync.Mutex
	chunks map[chunker.Hash][]byte
}

func newChunkStore(chunks ...[]byte) *chunkStore {
	s := &chunkStore{chunks: map[chunker.Hash][]byte{}}
	for _, c := range chunks {
		s.chunks[chunker.Sum(c)] = c
	}
	return s
}

func (s *chunkStore) ReadChunk(_ context.Context, _ identity.NodeID, req protocol.ChunkRequest, _ []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.chunks[req.Hash]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", req.Hash.Short(), protocol.ErrNotFound)
	}
	return c, nil
}

func randomChunk(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// textChunk is compressible like the HTML, CSS and PHP of a document root:
// markup around words drawn from a small vocabulary, about 3:1 with zstd.
func textChunk(n int, seed int) []byte {
	words := strings.Fields(`the of and to in is that for it as was with be by on not he this are or his
		from at which but have an they you were her she there would their we him been has when who will
		more no if out so said what up its about into than them can only other new some could time these
		two may then do first any my now such like our over man me even most made after also did many
		before must through back years where much your way well down should because each just those people
		how too little state good very make world still own see men work long get here between both life
		being under never day same another know while last might us great old year off come since against
		go came right used take three`)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 1))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "<p class=\"c%d\">", rng.IntN(50))
		for range 5 + rng.IntN(20) {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d</p>\n", rng.IntN(100000))
	}
	return b.Bytes()[:n]
}

func req(data []byte) protocol.ChunkRequest {
	return protocol.ChunkRequest{Folder: "docroot", Hash: chunker.Sum(data), Length: uint32(len(data))}
}

func withChunks(s ChunkServer) nodeOpt { return func(c *Config) { c.Chunks = s } }

func TestRequestChunk(t *testing.T) {
	checkGoroutines(t)
	random, text := randomChunk(64<<10), textChunk(64<<10, 1)
	small := []byte("tiny")
	a, b := pair(t, nil, []nodeOpt{withChunks(newChunkStore(random, text, small)),
		func(c *Config) { c.Compression = CompressAlways }})
	ca, cb := a.nextConn(t), b.nextConn(t)
	ctx := context.Background()
	for _, want := range [][]byte{random, text, small} {
		got, err := ca.RequestChunk(ctx, req(want))
		mustf(t, err, "request %d bytes", len(want))
		if !bytes.Equal(got, want) {
			t.Fatalf("received data differs (%d bytes)", len(want))
		}
	}
	// Into a recycled buffer: the data lands in it, compressed or not.
	buf := make([]byte, ChunkBufferSize(64<<10))
	for _, want := range [][]byte{random, text} {
		got, err := ca.RequestChunkInto(ctx, req(want), buf)
		mustf(t, err, "request into a buffer")
		if !bytes.Equal(got, want) || &got[:cap(got)][cap(got)-1] != &buf[len(buf)-1] {
			t.Fatal("RequestChunkInto did not receive into the buffer")
		}
	}
	missing := textChunk(1000, 2)
	_, err := ca.RequestChunk(ctx, req(missing))
	if !errors.Is(err, protocol.ErrNotFound) || !strings.Contains(err.Error(), "from b") {
		t.Fatalf("request for a missing chunk: %v, want not found, naming the peer", err)
	}
	if _, err := ca.RequestChunk(ctx, protocol.ChunkRequest{Folder: "d", Length: protocol.MaxChunkSize + 1}); err == nil {
		t.Fatal("request for an oversized chunk was sent")
	}

	sa, sb := ca.Stats(), cb.Stats()
	total := uint64(2*len(random) + 2*len(text) + len(small))
	if sa.ChunksReceived != 5 || sa.ChunkBytesReceived != total {
		t.Fatalf("requester counted %d chunks, %d bytes; want 5, %d", sa.ChunksReceived, sa.ChunkBytesReceived, total)
	}
	if sb.ChunksSent != 5 || sb.ChunkBytesSent != total {
		t.Fatalf("server counted %d chunks, %d bytes; want 5, %d", sb.ChunksSent, sb.ChunkBytesSent, total)
	}
	// The text went compressed: on the wire well below its raw size.
	saved := sa.ReceivedRaw - sa.Received
	if saved < uint64(len(text)) || sb.SentRaw-sb.Sent != saved {
		t.Fatalf("compression saved %d bytes received, %d sent; want the same, over %d", saved, sb.SentRaw-sb.Sent, len(text))
	}
	if sa.Received < total-saved || sa.PacketBytesReceived < sa.Received {
		t.Fatalf("requester stats inconsistent: %+v", sa)
	}
}

// TestServeIntoBuffer: a chunk server that reads into the buffer it is
// given (as the engine does), so that each response goes out in one write
// with its header in the room before the data; chunks of several sizes,
// one after another on the same request streams (the buffer is reused),
// arrive intact and are counted as before.
func TestServeIntoBuffer(t *testing.T) {
	checkGoroutines(t)
	var chunks [][]byte
	for i, n := range []int{1, 100, 64 << 10, 3000, 256 << 10, 64<<10 - 1} {
		c := randomChunk(n)
		c[0] = byte(i)
		chunks = append(chunks, c)
	}
	store := newChunkStore(chunks...)
	var into, elsewhere atomic.Int64
	a, b := pair(t, nil, []nodeOpt{withChunks(chunkFunc(func(ctx context.Context, r protocol.ChunkRequest, buf []byte) ([]byte, error) {
		c, err := store.ReadChunk(ctx, identity.NodeID{}, r, nil)
		if err != nil || cap(buf) < len(c) {
			elsewhere.Add(1)
			return c, err
		}
		into.Add(1)
		return append(buf[:0], c...), nil
	})), func(c *Config) { c.Compression = CompressNever }})
	ca, cb := a.nextConn(t), b.nextConn(t)
	ctx := context.Background()
	var total uint64
	for round := range 3 {
		var wg sync.WaitGroup
		for i, want := range chunks {
			total += uint64(len(want))
			wg.Go(func() {
				got, err := ca.RequestChunk(ctx, req(want))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("round %d, chunk %d (%d bytes): %v", round, i, len(want), err)
				}
			})
		}
		wg.Wait()
	}
	if into.Load() == 0 {
		t.Fatal("no chunk was read into the stream's buffer")
	}
	if sa := ca.Stats(); sa.ChunkBytesReceived != total {
		t.Fatalf("counted %d chunk bytes received, want %d", sa.ChunkBytesReceived, total)
	}
	// The server counts a response once its write returns, which may be
	// after the requester has read it.
	eventually(t, 5*time.Second, "the server's counts", func() bool {
		sa, sb := ca.Stats(), cb.Stats()
		return sb.ChunkBytesSent == total && sb.SentRaw == sb.Sent && sa.Received == sb.Sent
	})
}

// TestCompressionPolicy: never means raw on the wire; always compresses
// what shrinks.
func TestCompressionPolicy(t *testing.T) {
	text := textChunk(64<<10, 7)
	for _, tt := range []struct {
		mode       Compression
		compressed bool
	}{{CompressNever, false}, {CompressAlways, true}} {
		a, _ := pair(t, nil, []nodeOpt{withChunks(newChunkStore(text)), func(c *Config) { c.Compression = tt.mode }})
		ca := a.nextConn(t)
		for range 3 {
			got, err := ca.RequestChunk(context.Background(), req(text))
			mustf(t, err, "request")
			if !bytes.Equal(got, text) {
				t.Fatal("data differs")
			}
		}
		st := ca.Stats()
		if saved := st.ReceivedRaw - st.Received; (saved > 0) != tt.compressed {
			t.Fatalf("mode %d: %d bytes saved by compression, want compressed=%v", tt.mode, saved, tt.compressed)
		}
	}
}

func TestHashMismatchRejected(t *testing.T) {
	good := randomChunk(10000)
	bad := bytes.Clone(good)
	bad[5000] ^= 1
	a, _ := pair(t, nil, []nodeOpt{withChunks(chunkFunc(func(context.Context, protocol.ChunkRequest, []byte) ([]byte, error) {
		return bad, nil
	}))})
	ca := a.nextConn(t)
	_, err := ca.RequestChunk(context.Background(), req(good))
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("corrupted chunk: %v, want ErrHashMismatch", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "from b") || !strings.Contains(msg, chunker.Sum(good).Short()) {
		t.Fatalf("error %q does not name the peer and the hash", msg)
	}
	if ca.Err() != nil || ca.Stats().ChunksReceived != 0 {
		t.Fatal("a rejected chunk was counted, or closed the connection")
	}
	// Compressed corrupt data is rejected the same way.
	badText, goodText := textChunk(20000, 3), textChunk(20000, 4)
	a2, _ := pair(t, nil, []nodeOpt{withChunks(chunkFunc(func(context.Context, protocol.ChunkRequest, []byte) ([]byte, error) {
		return badText, nil
	})), func(c *Config) { c.Compression = CompressAlways }})
	if _, err := a2.nextConn(t).RequestChunk(context.Background(), req(goodText)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("corrupted compressed chunk: %v, want ErrHashMismatch", err)
	}
}

func TestServerWrongLengthIsInternalError(t *testing.T) {
	a, b := pair(t, nil, []nodeOpt{withChunks(chunkFunc(func(context.Context, protocol.ChunkRequest, []byte) ([]byte, error) {
		return []byte("short"), nil
	}))})
	_, err := a.nextConn(t).RequestChunk(context.Background(), req(make([]byte, 100)))
	if !errors.Is(err, protocol.ErrInternal) {
		t.Fatalf("chunk server returning the wrong length: %v, want internal error", err)
	}
	if len(b.logs.lines("wrong length")) != 1 {
		t.Fatal("serving node did not log the wrong length")
	}
}

// rawPeer is a misbehaving node: a bare QUIC endpoint with a pinned identity
// whose chunk answers the test writes by hand.
type rawPeer struct {
	id   identity.Identity
	qt   *quic.Transport
	ln   *quic.Listener
	addr string
}

func startRawPeer(t *testing.T, pins ...identity.NodeID) *rawPeer {
	id := newIdentity(t, "raw")
	var peers []Peer
	for _, p := range pins {
		peers = append(peers, Peer{ID: p, Name: "pinned"})
	}
	tr, err := New(Config{Identity: id, Peers: peers, Handler: func(context.Context, *Conn) {}, IdleTimeout: time.Second, KeepAlive: 200 * time.Millisecond})
	mustf(t, err, "new")
	udp := listenUDP(t)
	rp := &rawPeer{id: id, qt: &quic.Transport{Conn: udp}, addr: udp.LocalAddr().String()}
	rp.ln, err = rp.qt.Listen(tr.serverTLS(), tr.quicConfig())
	mustf(t, err, "listen")
	t.Cleanup(func() { rp.qt.Close() })
	return rp
}

// accept takes one connection and opens its control stream, as a real
// node does once it accepts the dialer.
func (rp *rawPeer) accept(t *testing.T) *quic.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := rp.ln.Accept(ctx)
	mustf(t, err, "accept")
	s, err := qc.OpenUniStream()
	mustf(t, err, "open control stream")
	_, err = s.Write(appendPingPong(nil, 0))
	mustf(t, err, "write preface")
	return qc
}

// acceptRequest takes the next chunk request stream and its first request.
func (rp *rawPeer) acceptRequest(t *testing.T, qc *quic.Conn) (*quic.Stream, protocol.ChunkRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := qc.AcceptStream(ctx)
	mustf(t, err, "accept stream")
	return s, nextRequest(t, s)
}

// nextRequest reads the next request on a request stream.
func nextRequest(t *testing.T, s *quic.Stream) protocol.ChunkRequest {
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := protocol.NewReader(s, 0).ReadMessage()
	mustf(t, err, "read request")
	return *m.(*protocol.ChunkRequest)
}

func TestDecompressionBombRejected(t *testing.T) {
	checkGoroutines(t)
	ida := newIdentity(t, "a")
	rp := startRawPeer(t, ida.ID)
	a := startNode(t, ida, "127.0.0.1:0", []Peer{{ID: rp.id.ID, Name: "raw", Address: rp.addr}})
	qc := rp.accept(t)
	ca := a.nextConn(t)

	want := make([]byte, 64<<10)
	enc, _ := zstd.NewWriter(nil)
	bomb := enc.EncodeAll(make([]byte, 8<<20), nil) // 8 MiB of zeros, a few hundred bytes
	enc.Close()
	if len(bomb) > 4096 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ca.RequestChunk(context.Background(), req(want))
		errc <- err
	}()
	s, r := rp.acceptRequest(t, qc)
	w := protocol.NewWriter(s)
	mustf(t, w.WriteMessage(&protocol.ChunkResponse{ID: r.ID, Hash: r.Hash, Compressed: true, Data: bomb}), "write bomb")
	if err := <-errc; !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decompression bomb: %v, want ErrCorrupt", err)
	}
	// The response was whole, so the stream carries the next request. A
	// response longer than the chunk can be is a protocol violation.
	go func() {
		_, err := ca.RequestChunk(context.Background(), req(want))
		errc <- err
	}()
	r = nextRequest(t, s)
	protocol.NewWriter(s).WriteMessage(&protocol.ChunkResponse{ID: r.ID, Hash: r.Hash, Data: make([]byte, len(want)+100)})
	if err := <-errc; !errors.Is(err, protocol.ErrTooLarge) {
		t.Fatalf("oversized response: %v, want ErrTooLarge", err)
	}
	select {
	case <-ca.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("an oversized response did not close the connection")
	}
}

// TestRequestStreamReuse: a request stream whose response was read whole
// carries the next request, also after an error code; a request given up
// cancels its stream (the server sees a reset, not a stream left open) and
// the next request opens a new one.
func TestRequestStreamReuse(t *testing.T) {
	checkGoroutines(t)
	ida := newIdentity(t, "a")
	rp := startRawPeer(t, ida.ID)
	a := startNode(t, ida, "127.0.0.1:0", []Peer{{ID: rp.id.ID, Name: "raw", Address: rp.addr}})
	qc := rp.accept(t)
	ca := a.nextConn(t)
	data := randomChunk(1000)
	errc := make(chan error, 1)
	fetch := func(ctx context.Context) {
		go func() {
			got, err := ca.RequestChunk(ctx, req(data))
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("received data differs")
			}
			errc <- err
		}()
	}
	answer := func(s *quic.Stream, r protocol.ChunkRequest, code protocol.Code) {
		resp := &protocol.ChunkResponse{ID: r.ID, Hash: r.Hash, Code: code}
		if code == protocol.CodeOK {
			resp.Data = data
		}
		mustf(t, protocol.NewWriter(s).WriteMessage(resp), "write response")
	}

	fetch(context.Background())
	s, r := rp.acceptRequest(t, qc)
	answer(s, r, protocol.CodeOK)
	mustf(t, <-errc, "first request")
	fetch(context.Background())
	r = nextRequest(t, s)
	answer(s, r, protocol.CodeNotFound)
	if err := <-errc; !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("second request: %v, want not found", err)
	}
	fetch(context.Background())
	r = nextRequest(t, s)
	answer(s, r, protocol.CodeOK)
	mustf(t, <-errc, "third request, on the same stream")

	// Given up while waiting for its response: the stream is reset.
	ctx, cancel := context.WithCancel(context.Background())
	fetch(ctx)
	nextRequest(t, s)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	var se *quic.StreamError
	if _, err := s.Read(make([]byte, 1)); !errors.As(err, &se) || protocol.Code(se.ErrorCode) != protocol.CodeCanceled {
		t.Fatalf("read on the abandoned stream: %v, want a reset with CodeCanceled", err)
	}
	fetch(context.Background())
	s2, r := rp.acceptRequest(t, qc)
	if s2.StreamID() == s.StreamID() {
		t.Fatal("the abandoned stream was used again")
	}
	answer(s2, r, protocol.CodeOK)
	mustf(t, <-errc, "request after the cancellation")
	if ca.Err() != nil {
		t.Fatalf("connection closed: %v", ca.Err())
	}
}

// TestServeRequestStream: a server answers the requests on one stream in
// order, and ends its side once the requester has ended its own.
func TestServeRequestStream(t *testing.T) {
	checkGoroutines(t)
	one, two := randomChunk(3000), textChunk(5000, 4)
	ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
	b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}}, withChunks(newChunkStore(one, two)))
	tr, err := New(Config{Identity: ida, Handler: func(context.Context, *Conn) {}})
	mustf(t, err, "new")
	var presented identity.NodeID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, b.tr.Addr().String(), tr.clientTLS(b.peer("b"), &presented), tr.quicConfig())
	mustf(t, err, "dial")
	defer qc.CloseWithError(0, "")
	b.nextConn(t)
	s, err := qc.OpenStreamSync(ctx)
	mustf(t, err, "open")
	s.SetDeadline(time.Now().Add(10 * time.Second))
	r := protocol.NewReader(s, 0)
	for i, want := range [][]byte{one, two, textChunk(100, 9)} {
		rq := req(want)
		rq.ID = uint64(10 + i)
		mustf(t, protocol.NewWriter(s).WriteMessage(&rq), "write request %d", i)
		m, err := r.ReadMessage()
		mustf(t, err, "read response %d", i)
		resp, ok := m.(*protocol.ChunkResponse)
		if !ok || resp.ID != rq.ID || resp.Hash != rq.Hash {
			t.Fatalf("response %d: %+v, want an answer to request %d", i, m, rq.ID)
		}
		if i < 2 && (resp.Code != protocol.CodeOK || !bytes.Equal(resp.Data, want)) {
			t.Fatalf("response %d: code %v, %d bytes; want the chunk", i, resp.Code, len(resp.Data))
		}
		if i == 2 && resp.Code != protocol.CodeNotFound {
			t.Fatalf("response for a missing chunk: code %v, want not found", resp.Code)
		}
	}
	mustf(t, s.Close(), "close")
	if _, err := r.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the requester ended the stream: %v, want the server's end of stream", err)
	}
}

func TestPeerVanishesMidTransfer(t *testing.T) {
	checkGoroutines(t)
	ida := newIdentity(t, "a")
	rp := startRawPeer(t, ida.ID)
	a := startNode(t, ida, "127.0.0.1:0", []Peer{{ID: rp.id.ID, Name: "raw", Address: rp.addr}},
		func(c *Config) { c.IdleTimeout, c.KeepAlive = time.Second, 200*time.Millisecond })
	qc := rp.accept(t)
	ca := a.nextConn(t)
	errc := make(chan error, 1)
	go func() {
		_, err := ca.RequestChunk(context.Background(), req(make([]byte, 64<<10)))
		errc <- err
	}()
	s, r := rp.acceptRequest(t, qc)
	// Half a response, then the node disappears without a word.
	var hdr []byte
	hdr = append(hdr, byte(protocol.TypeChunkResponse))
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(64<<10+40))
	hdr = binary.AppendUvarint(hdr, r.ID)
	s.Write(hdr)
	s.Write(make([]byte, 20000))
	start := time.Now()
	rp.qt.Close() // no CONNECTION_CLOSE is sent
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("request succeeded")
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("request failed only after %v", d)
		}
		t.Logf("request failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("request still pending 10s after the peer vanished")
	}
}

func TestRequestTimeoutAndCancel(t *testing.T) {
	checkGoroutines(t)
	var cancelled atomic.Int32
	a, _ := pair(t, []nodeOpt{func(c *Config) { c.RequestTimeout = 300 * time.Millisecond }},
		[]nodeOpt{withChunks(chunkFunc(func(ctx context.Context, _ protocol.ChunkRequest, _ []byte) ([]byte, error) {
			<-ctx.Done()
			cancelled.Add(1)
			return nil, ctx.Err()
		}))})
	ca := a.nextConn(t)
	start := time.Now()
	_, err := ca.RequestChunk(context.Background(), req([]byte("slow")))
	if !errors.Is(err, protocol.ErrTimeout) || time.Since(start) > 3*time.Second {
		t.Fatalf("request to a stalled server: %v after %v, want a timeout after ~300ms", err, time.Since(start))
	}
	eventually(t, 5*time.Second, "server saw the cancellation", func() bool { return cancelled.Load() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = ca.RequestChunk(ctx, req([]byte("slow")))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	eventually(t, 5*time.Second, "server saw the second cancellation", func() bool { return cancelled.Load() == 2 })
	if ca.Err() != nil {
		t.Fatalf("timeouts closed the connection: %v", ca.Err())
	}
}

func TestChunkRequestsBounded(t *testing.T) {
	for _, tt := range []struct{ inFlight, serving, want int }{
		{inFlight: 3, serving: 32, want: 3},
		{inFlight: 10, serving: 2, want: 2},
	} {
		release := make(chan struct{})
		var now, peak atomic.Int32
		data := []byte("bounded chunk")
		a, _ := pair(t, []nodeOpt{func(c *Config) { c.MaxInFlight = tt.inFlight }},
			[]nodeOpt{func(c *Config) {
				c.MaxServing = tt.serving
				c.Chunks = chunkFunc(func(ctx context.Context, _ protocol.ChunkRequest, _ []byte) ([]byte, error) {
					n := now.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					defer now.Add(-1)
					<-release
					return data, nil
				})
			}})
		ca := a.nextConn(t)
		var wg sync.WaitGroup
		errs := make(chan error, 12)
		for range 12 {
			wg.Go(func() {
				_, err := ca.RequestChunk(context.Background(), req(data))
				errs <- err
			})
		}
		eventually(t, 5*time.Second, "requests reach the server", func() bool { return now.Load() == int32(tt.want) })
		time.Sleep(100 * time.Millisecond) // give any excess request the chance to arrive
		if p := peak.Load(); p != int32(tt.want) {
			t.Fatalf("in flight %d, serving %d: %d requests ran at once, want %d", tt.inFlight, tt.serving, p, tt.want)
		}
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			mustf(t, err, "request")
		}
	}
}

func TestSendBackpressure(t *testing.T) {
	a, b := pair(t, nil, nil)
	ca := a.nextConn(t)
	b.nextConn(t) // b's handler never calls Receive
	files := make([]protocol.FileInfo, 400)
	for i := range files {
		files[i] = protocol.FileInfo{Path: fmt.Sprintf("dir/%0200d", i), Type: protocol.Dir,
			Version: conflict.Vector{{Node: 1, Value: 1}}, Sequence: uint64(i + 1)}
	}
	msg := &protocol.IndexUpdate{Folder: "docroot", Through: 400, Files: files}
	size := len(mustFrame(t, msg))
	for i := range 4000 { // 4000 × ~100 KB: far beyond every queue and window
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := ca.Send(ctx, msg)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Logf("Send blocked after %d messages (%d KiB)", i, i*size>>10)
			if i*size > 64<<20 {
				t.Fatalf("%d MiB queued before Send blocked", i*size>>20)
			}
			return
		}
		mustf(t, err, "send %d", i)
	}
	t.Fatal("Send never blocked although the peer reads nothing")
}

func TestGarbageClosesConnection(t *testing.T) {
	huge := []byte{byte(protocol.TypeIndexUpdate), 0xff, 0xff, 0xff, 0xff}
	unknown := []byte{0xee, 0, 0, 0, 1, 0}
	badHello := []byte{byte(protocol.TypeHello), 0, 0, 0, 3, 1, 2, 3}
	resp, _ := protocol.AppendFrame(nil, &protocol.ChunkResponse{ID: 1, Data: []byte("x")})
	tests := []struct {
		name    string
		control []byte // written on the control stream
		request []byte // written on a request stream
		code    protocol.Code
	}{
		{name: "unknown type", control: unknown, code: protocol.CodeProtocol},
		{name: "oversized frame", control: huge, code: protocol.CodeTooLarge},
		{name: "malformed hello", control: badHello, code: protocol.CodeProtocol},
		{name: "response on control stream", control: resp, code: protocol.CodeProtocol},
		{name: "garbage request", request: []byte("GET / HTTP/1.1\r\n\r\n"), code: protocol.CodeProtocol},
		{name: "oversized request", request: huge, code: protocol.CodeTooLarge},
		{name: "response as request", request: resp, code: protocol.CodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ida, idb := newIdentity(t, "a"), newIdentity(t, "b")
			b := startNode(t, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}})
			tr, err := New(Config{Identity: ida, Handler: func(context.Context, *Conn) {}})
			mustf(t, err, "new")
			var presented identity.NodeID
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			qc, err := quic.DialAddr(ctx, b.tr.Addr().String(), tr.clientTLS(b.peer("b"), &presented), tr.quicConfig())
			mustf(t, err, "dial")
			defer qc.CloseWithError(0, "")
			cb := b.nextConn(t)
			if tt.control != nil {
				s, err := qc.OpenUniStream()
				mustf(t, err, "open")
				s.Write(tt.control)
			} else {
				s, err := qc.OpenStream()
				mustf(t, err, "open")
				s.Write(tt.request)
				s.Close()
			}
			select {
			case <-qc.Context().Done():
			case <-ctx.Done():
				t.Fatal("garbage did not close the connection")
			}
			var ae *quic.ApplicationError
			if err := context.Cause(qc.Context()); !errors.As(err, &ae) || protocol.Code(ae.ErrorCode) != tt.code {
				t.Fatalf("closed with %v, want application error %d (%s)", err, tt.code, tt.code)
			}
			<-cb.Done()
			if !errors.Is(cb.Err(), protocol.Error{Code: tt.code}) {
				t.Fatalf("b's close reason: %v", cb.Err())
			}
			if len(b.logs.lines("closing connection: protocol error")) != 1 {
				t.Fatalf("b logged %d protocol errors, want 1:\n%s", len(b.logs.lines("closing connection: protocol error")), b.logs)
			}
		})
	}
}

// A request stream hands the chunk server the same scratch buffer for each
// of its requests, so serving reads chunks without allocating one each.
func TestServerReusesBufferPerStream(t *testing.T) {
	chunks := [][]byte{randomChunk(40 << 10), randomChunk(64 << 10), randomChunk(10 << 10)}
	store := newChunkStore(chunks...)
	var mu sync.Mutex
	var bufs []*byte
	a, _ := pair(t, nil, []nodeOpt{withChunks(chunkFunc(func(ctx context.Context, r protocol.ChunkRequest, buf []byte) ([]byte, error) {
		data, err := store.ReadChunk(ctx, identity.NodeID{}, r, nil)
		if err != nil {
			return nil, err
		}
		if cap(buf) < len(data) {
			return nil, fmt.Errorf("buffer of %d bytes for a chunk of %d", cap(buf), len(data))
		}
		mu.Lock()
		bufs = append(bufs, unsafe.SliceData(buf))
		mu.Unlock()
		return buf[:copy(buf[:len(data)], data)], nil
	}))})
	c := a.nextConn(t)
	// One request after another: each reuses the idle stream.
	for _, chunk := range chunks {
		got, err := c.RequestChunk(context.Background(), req(chunk))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, chunk) {
			t.Fatal("served chunk differs")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bufs) != len(chunks) {
		t.Fatalf("server saw %d requests, want %d", len(bufs), len(chunks))
	}
	// The first request sizes the buffer; the second, larger, grows it
	// once; the third fits and reuses it.
	if bufs[2] != bufs[1] {
		t.Fatal("a request stream's next request got a new buffer instead of the one already large enough")
	}
}
