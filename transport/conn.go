package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/identity"
	"lockstep/protocol"
)

// Queue lengths. Small on purpose: a peer that stops reading makes Send
// block (and QUIC flow control stop the sender) instead of growing memory.
const (
	sendQueueLen = 64
	recvQueueLen = 64
	// batchBytes is how much queued control traffic the writer gathers
	// into one stream write.
	batchBytes = 256 << 10
)

// Features are the protocol.Hello feature bits a Conn implements: a node
// offers them in its Hello, and a Conn uses each toward a peer whose Hello
// offers it.
const Features = protocol.FeatureCompressed | protocol.FeatureBareChunkResponse | protocol.FeatureChunkBatch

// ErrClosed is returned by the methods of a Conn that has closed; the error
// wraps it together with the reason (Conn.Err).
var ErrClosed = errors.New("connection closed")

// Conn is an established, authenticated connection to one peer. Its methods
// are safe for concurrent use.
type Conn struct {
	t      *Transport
	peer   Peer
	qc     *quic.Conn
	ctrlIn *quic.ReceiveStream // the peer's control stream, once accepted
	dialed bool
	start  time.Time

	ctx    context.Context // ends when the connection closes
	cancel context.CancelCauseFunc

	sendq chan *outFrame // encoded control frames, from Send
	pongq chan uint64    // Pong nonces to answer with, ahead of sendq
	recvq chan protocol.Message

	inflight chan struct{}     // one token per chunk request in flight
	idle     chan *quic.Stream // request streams open and free for the next request
	freed    chan struct{}     // a request stream was cancelled: its slot frees up
	nextID   atomic.Uint64
	stats    counters
	comp     compressor

	closing atomic.Bool // set by the first closeWith
	// peerFeatures are the Hello.Features of the peer's Hello, once it
	// has arrived: which of Features to use toward the peer.
	peerFeatures atomic.Uint64

	mu    sync.Mutex
	pings map[uint64]chan struct{} // Ping nonces awaiting their Pong

	workers sync.WaitGroup // goroutines serving this connection
}

func newConn(t *Transport, p Peer, qc *quic.Conn, ctrl *quic.ReceiveStream, dialed bool) *Conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Conn{
		t: t, peer: p, qc: qc, ctrlIn: ctrl, dialed: dialed, start: time.Now(),
		ctx: ctx, cancel: cancel,
		sendq:    make(chan *outFrame, sendQueueLen),
		pongq:    make(chan uint64, 4),
		recvq:    make(chan protocol.Message, recvQueueLen),
		inflight: make(chan struct{}, t.cfg.MaxInFlight),
		idle:     make(chan *quic.Stream, t.cfg.MaxInFlight),
		freed:    make(chan struct{}, 1),
		pings:    make(map[uint64]chan struct{}),
	}
}

// Peer returns the peer at the other end.
func (c *Conn) Peer() Peer { return c.peer }

// RemoteAddr returns the peer's UDP address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// Dialed reports whether this node dialed the connection.
func (c *Conn) Dialed() bool { return c.dialed }

// Done is closed when the connection has closed (or begun closing).
func (c *Conn) Done() <-chan struct{} { return c.ctx.Done() }

// Err returns why the connection closed, or nil while it is open.
func (c *Conn) Err() error { return context.Cause(c.ctx) }

// Close closes the connection, sending err's protocol code (CodeOK for nil)
// and message to the peer. It returns without waiting for the connection's
// goroutines.
func (c *Conn) Close(err error) {
	cause := err
	if cause == nil {
		cause = errors.New("closed locally")
	}
	c.closeWith(fmt.Errorf("%w: %w", ErrClosed, cause), protocol.CodeOf(err), errMessage(err))
}

func errMessage(err error) string {
	if err == nil {
		return ""
	}
	var pe protocol.Error
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}

// closeWith records cause, ends ctx, frees the peer's slot and closes the
// QUIC connection with code. Only the first call has an effect; it returns
// once quic-go has sent the close, so stream calls fail from then on.
func (c *Conn) closeWith(cause error, code protocol.Code, msg string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.t.forget(c)
	if len(msg) > 256 {
		msg = msg[:256]
	}
	// Close the connection before cancelling the context: cancelling
	// makes the stream goroutines reset their streams, and a peer that
	// saw a reset first would report it instead of the real reason.
	c.qc.CloseWithError(quic.ApplicationErrorCode(code), msg)
	c.cancel(cause)
}

// run serves the connection until it closes, then waits for its workers.
func (c *Conn) run() {
	log := c.t.log.With("peer", c.peer.Name)
	c.workers.Go(c.writeLoop)
	c.workers.Go(c.readLoop)
	c.workers.Go(c.acceptStreams)
	c.workers.Go(func() {
		c.t.cfg.Handler(c.ctx, c)
		c.Close(nil)
	})
	select {
	case <-c.qc.Context().Done():
		cause := context.Cause(c.qc.Context())
		c.closeWith(fmt.Errorf("%w: %w", ErrClosed, explainClose(cause)), protocol.CodeOK, "")
	case <-c.ctx.Done():
	}
	c.workers.Wait()
	log.Info("disconnected", "op", "close", "err", c.Err(), "dur", time.Since(c.start).Round(time.Millisecond))
}

// explainClose turns quic-go's close causes into errors that say what
// happened in this protocol's terms.
func explainClose(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		if ae.ErrorCode == 0 {
			return errors.New("closed by peer")
		}
		pe := protocol.Error{Code: protocol.Code(ae.ErrorCode), Message: ae.ErrorMessage}
		return fmt.Errorf("closed by peer: %w", pe)
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return fmt.Errorf("peer silent for too long: %w", err)
	}
	return err
}

// connectionEnded reports whether err is quic-go's report of the whole
// connection ending (closed by either side, reset, timed out) rather than
// of one stream.
func connectionEnded(err error) bool {
	var (
		ae    *quic.ApplicationError
		te    *quic.TransportError
		reset *quic.StatelessResetError
		idle  *quic.IdleTimeoutError
	)
	return errors.As(err, &ae) || errors.As(err, &te) || errors.As(err, &reset) || errors.As(err, &idle)
}

// poke sends a Ping without waiting for the Pong: enough traffic for a
// restarted peer to answer with a stateless reset.
func (c *Conn) poke() {
	select {
	case c.pongq <- 0: // nonce 0 travels as a Ping, see writeLoop
	default:
	}
}

// Send queues a control message (*Hello, *IndexUpdate, *Confirm or *Error) for
// the peer. Messages sent from one goroutine arrive in order. Send blocks
// while the queue is full — the peer is reading slowly — until ctx ends or
// the connection closes. A nil error means queued, not delivered; the
// message is encoded before Send returns, so the caller may reuse it.
//
// Once the peer's Hello has offered protocol.FeatureCompressed, index
// updates and confirmations go compressed where that makes them shorter.
func (c *Conn) Send(ctx context.Context, m protocol.Message) error {
	switch m.Type() {
	case protocol.TypeHello, protocol.TypeIndexUpdate, protocol.TypeConfirm, protocol.TypeError:
	default:
		return fmt.Errorf("send %s to %s: not a control message", m.Type(), c.peer.Name)
	}
	f := getFrame()
	b, err := protocol.AppendFrame(f.b[:0], m)
	if err != nil {
		putFrame(f)
		return fmt.Errorf("send %s to %s: %w", m.Type(), c.peer.Name, err)
	}
	f.b = b
	if protocol.Compressible(m.Type()) && c.peerFeatures.Load()&protocol.FeatureCompressed != 0 {
		z := getFrame()
		var ok bool
		if z.b, ok = protocol.CompressFrame(z.b[:0], f.b); ok {
			z.inflated = len(f.b) - len(z.b)
			f, z = z, f
		}
		putFrame(z)
	}
	return c.enqueue(ctx, f, m.Type())
}

func (c *Conn) enqueue(ctx context.Context, f *outFrame, t protocol.Type) error {
	select {
	case c.sendq <- f:
		return nil
	case <-ctx.Done():
		putFrame(f)
		return fmt.Errorf("send %s to %s: %w", t, c.peer.Name, ctx.Err())
	case <-c.ctx.Done():
		putFrame(f)
		return fmt.Errorf("send %s to %s: %w", t, c.peer.Name, c.Err())
	}
}

// Receive returns the next control message from the peer — *protocol.Hello,
// *IndexUpdate, *Confirm or *Error — in the order the peer sent them. Messages
// that arrived before the connection closed are still returned; after them
// Receive returns an error wrapping ErrClosed.
func (c *Conn) Receive(ctx context.Context) (protocol.Message, error) {
	select {
	case m := <-c.recvq:
		return m, nil
	default:
	}
	select {
	case m := <-c.recvq:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		select {
		case m := <-c.recvq:
			return m, nil
		default:
			return nil, c.Err()
		}
	}
}

// Ping measures the round trip over the control stream.
func (c *Conn) Ping(ctx context.Context) (time.Duration, error) {
	nonce := c.nextID.Add(1)
	got := make(chan struct{})
	c.mu.Lock()
	c.pings[nonce] = got
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pings, nonce)
		c.mu.Unlock()
	}()
	f := getFrame()
	f.b, _ = protocol.AppendFrame(f.b[:0], &protocol.Ping{Nonce: nonce})
	start := time.Now()
	if err := c.enqueue(ctx, f, protocol.TypePing); err != nil {
		return 0, err
	}
	select {
	case <-got:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("ping %s: %w", c.peer.Name, ctx.Err())
	case <-c.ctx.Done():
		return 0, fmt.Errorf("ping %s: %w", c.peer.Name, c.Err())
	}
}

// protocolError closes the connection because the peer broke the protocol.
func (c *Conn) protocolError(err error) {
	c.t.log.Warn("closing connection: protocol error", "peer", c.peer.Name, "addr", c.qc.RemoteAddr().String(), "err", err)
	code := protocol.CodeOf(err)
	if code == protocol.CodeInternal || code == protocol.CodeOK {
		code = protocol.CodeProtocol
	}
	c.closeWith(fmt.Errorf("%w: %w", ErrClosed, err), code, errMessage(err))
}

// writeLoop owns this side's control stream: it writes queued frames,
// gathering what is queued into one write.
func (c *Conn) writeLoop() {
	s, err := c.qc.OpenUniStream()
	if err != nil {
		c.closeWith(fmt.Errorf("%w: open control stream: %w", ErrClosed, err), protocol.CodeInternal, "")
		return
	}
	defer s.CancelWrite(quic.StreamErrorCode(protocol.CodeCanceled))
	// The stream opens with a Ping that asks for no answer: it makes the
	// stream visible to the peer at once, which a dialer waits for as
	// proof that this side accepted its certificate.
	batch := appendPingPong(nil, 0)
	n, err := s.Write(batch)
	c.stats.sent.Add(uint64(n))
	c.stats.sentRaw.Add(uint64(n))
	if err != nil {
		c.closeWith(fmt.Errorf("%w: write control stream: %w", ErrClosed, err), protocol.CodeInternal, "")
		return
	}
	for {
		batch = batch[:0]
		inflated := 0 // what the batch's compressed frames saved
		select {
		case <-c.ctx.Done():
			return
		case nonce := <-c.pongq:
			batch = appendPingPong(batch, nonce)
		case f := <-c.sendq:
			batch = append(batch, f.b...)
			inflated += f.inflated
			putFrame(f)
		}
	gather:
		for len(batch) < batchBytes {
			select {
			case nonce := <-c.pongq:
				batch = appendPingPong(batch, nonce)
			case f := <-c.sendq:
				batch = append(batch, f.b...)
				inflated += f.inflated
				putFrame(f)
			default:
				break gather
			}
		}
		n, err := s.Write(batch)
		c.stats.sent.Add(uint64(n))
		if n == len(batch) {
			n += inflated
		}
		c.stats.sentRaw.Add(uint64(n))
		if err != nil {
			c.closeWith(fmt.Errorf("%w: write control stream: %w", ErrClosed, err), protocol.CodeInternal, "")
			return
		}
		if cap(batch) > 4*batchBytes {
			batch = nil
		}
	}
}

// appendPingPong encodes a Pong for nonce, or a Ping for nonce 0 (poke).
func appendPingPong(b []byte, nonce uint64) []byte {
	var m protocol.Message = &protocol.Pong{Nonce: nonce}
	if nonce == 0 {
		m = &protocol.Ping{}
	}
	b, _ = protocol.AppendFrame(b, m)
	return b
}

// readLoop reads the peer's control stream and queues its messages for
// Receive, answering Pings itself.
func (c *Conn) readLoop() {
	s := c.ctrlIn
	if s == nil {
		var err error
		if s, err = c.qc.AcceptUniStream(c.ctx); err != nil {
			return // closed
		}
	}
	defer s.CancelRead(quic.StreamErrorCode(protocol.CodeCanceled))
	r := protocol.NewReader(countingReader{s, &c.stats.received, &c.stats.receivedRaw}, 0)
	var inflated int64
	for {
		m, err := r.ReadMessage()
		if d := r.BytesInflated() - inflated; d != 0 {
			c.stats.receivedRaw.Add(uint64(d))
			inflated += d
		}
		if err != nil {
			if c.ctx.Err() != nil || c.qc.Context().Err() != nil {
				return
			}
			if connectionEnded(err) {
				// The read saw the connection close before run did:
				// report it the same way, with the peer's reason.
				c.closeWith(fmt.Errorf("%w: %w", ErrClosed, explainClose(err)), protocol.CodeOK, "")
				return
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("peer ended its control stream")
			}
			var se *quic.StreamError
			if errors.As(err, &se) {
				c.protocolError(fmt.Errorf("control stream from %s reset: %w", c.peer.Name, err))
				return
			}
			c.protocolError(fmt.Errorf("control stream from %s: %w", c.peer.Name, err))
			return
		}
		switch m := m.(type) {
		case *protocol.Ping:
			if m.Nonce != 0 {
				select {
				case c.pongq <- m.Nonce:
				default: // best effort: a flood of pings gets fewer pongs
				}
			}
			continue
		case *protocol.Pong:
			c.mu.Lock()
			if ch := c.pings[m.Nonce]; ch != nil {
				close(ch)
				delete(c.pings, m.Nonce)
			}
			c.mu.Unlock()
			continue
		case *protocol.ChunkRequest, *protocol.ChunkResponse, *protocol.ChunkBatchRequest:
			c.protocolError(fmt.Errorf("control stream from %s: %s: %w", c.peer.Name, m.Type(), protocol.Error{Code: protocol.CodeProtocol, Message: m.Type().String() + " on the control stream"}))
			return
		case *protocol.Hello:
			if identity.NodeID(m.ID) != c.peer.ID {
				c.protocolError(fmt.Errorf("hello from %s: %w", c.peer.Name, protocol.Error{Code: protocol.CodeProtocol,
					Message: fmt.Sprintf("hello names node %s, the certificate %s", identity.NodeID(m.ID), c.peer.ID)}))
				return
			}
			c.peerFeatures.Store(m.Features)
		}
		select {
		case c.recvq <- m:
		case <-c.ctx.Done():
			return
		}
	}
}

// Stats are a connection's byte and chunk counters. Bytes count stream
// payload (frames), before QUIC's own framing and encryption; Raw counts
// chunk data and compressed control messages at their uncompressed length,
// so Raw minus the plain count is what compression saved. Packet counts come from QUIC and include
// retransmissions and headers.
type Stats struct {
	Sent, Received       uint64 // stream bytes as sent
	SentRaw, ReceivedRaw uint64 // stream bytes with chunk data uncompressed
	ChunksSent           uint64 // chunk responses with data sent
	ChunksReceived       uint64 // chunks received and verified
	ChunkBytesSent       uint64 // chunk data sent, uncompressed
	ChunkBytesReceived   uint64 // chunk data received and verified, uncompressed
	PacketBytesSent      uint64
	PacketBytesReceived  uint64
}

type counters struct {
	sent, received, sentRaw, receivedRaw atomic.Uint64
	chunksSent, chunksReceived           atomic.Uint64
	chunkBytesSent, chunkBytesReceived   atomic.Uint64
}

// Stats returns the connection's counters so far.
func (c *Conn) Stats() Stats {
	qs := c.qc.ConnectionStats()
	return Stats{
		Sent: c.stats.sent.Load(), Received: c.stats.received.Load(),
		SentRaw: c.stats.sentRaw.Load(), ReceivedRaw: c.stats.receivedRaw.Load(),
		ChunksSent: c.stats.chunksSent.Load(), ChunksReceived: c.stats.chunksReceived.Load(),
		ChunkBytesSent: c.stats.chunkBytesSent.Load(), ChunkBytesReceived: c.stats.chunkBytesReceived.Load(),
		PacketBytesSent: qs.BytesSent, PacketBytesReceived: qs.BytesReceived,
	}
}

// countingReader counts the bytes read through it into one or more counters.
type countingReader struct {
	r      io.Reader
	n, raw *atomic.Uint64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n.Add(uint64(n))
	if r.raw != nil {
		r.raw.Add(uint64(n))
	}
	return n, err
}

type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n.Add(uint64(n))
	return n, err
}

// outFrame is an encoded control frame queued for the writer; inflated is
// how many bytes more it would take uncompressed.
type outFrame struct {
	b        []byte
	inflated int
}

var framePool = sync.Pool{New: func() any { return &outFrame{b: make([]byte, 0, 4096)} }}

func getFrame() *outFrame { return framePool.Get().(*outFrame) }

func putFrame(f *outFrame) {
	if cap(f.b) <= 1<<20 {
		f.b, f.inflated = f.b[:0], 0
		framePool.Put(f)
	}
}
