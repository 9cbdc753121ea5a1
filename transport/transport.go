package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/identity"
	"lockstep/protocol"
)

// Peer is a node this one may connect to.
type Peer struct {
	ID      identity.NodeID
	Name    string // for logs
	Address string // UDP host:port to dial; empty: wait for the peer to dial
}

// ChunkServer answers the chunk requests of peers. The engine implements it.
type ChunkServer interface {
	// ReadChunk returns exactly req.Length bytes whose BLAKE3 hash is
	// req.Hash, for peer. It is called concurrently, up to
	// Config.MaxServing calls per connection. buf, when its capacity is at
	// least req.Length, is scratch space the data may be read into instead
	// of a new slice: it belongs to the calling request stream and is
	// reused for that stream's next request, so the server must not keep
	// it. The transport keeps the returned slice only until the response
	// is written and never modifies it. An error wrapping a protocol.Error (protocol.ErrNotFound,
	// protocol.ErrNoFolder, ...) is sent to the requester with its code;
	// any other error as protocol.CodeInternal. Data that does not match
	// req.Hash is rejected by the requester, which blames this node.
	ReadChunk(ctx context.Context, peer identity.NodeID, req protocol.ChunkRequest, buf []byte) ([]byte, error)
}

// Config configures a Transport. Zero durations and limits take the
// defaults noted.
type Config struct {
	Identity identity.Identity
	Listen   string // UDP host:port to listen on and dial from
	Peers    []Peer
	Logger   *slog.Logger
	// Handler runs once per established connection, in a goroutine of its
	// own. ctx ends when the connection is lost, replaced or the transport
	// stops; Handler must then return promptly, and the connection is
	// closed when it returns. Required.
	Handler func(ctx context.Context, c *Conn)
	// Chunks answers chunk requests; nil answers every one with
	// protocol.CodeNotFound.
	Chunks ChunkServer

	// Compression says when chunk data this node serves goes compressed.
	// Peers decompress whatever they receive, whatever their own setting.
	Compression Compression

	MaxInFlight    int           // chunk requests this node has in flight per connection (32)
	MaxServing     int           // chunk requests served at once per connection (32)
	RequestTimeout time.Duration // deadline of one chunk request, either side (30s)
	KeepAlive      time.Duration // keep-alive period (20s)
	IdleTimeout    time.Duration // a silent connection is dead after this (45s)
	MinBackoff     time.Duration // first redial delay (500ms)
	MaxBackoff     time.Duration // cap of the redial delay (30s)
}

const (
	defaultMaxInFlight    = 32
	defaultMaxServing     = 32
	defaultRequestTimeout = 30 * time.Second
	// A keep-alive wakes both ends of a connection: on an idle node the
	// keep-alives of its connections are most of what is left running.
	// quic-go sends one at most every half the idle timeout, so that
	// one lost is not the end of the connection. 20 s also refreshes
	// the state of NATs and firewalls that forget a UDP flow after 30 s.
	defaultKeepAlive   = 20 * time.Second
	defaultIdleTimeout = 45 * time.Second
	defaultMinBackoff  = 500 * time.Millisecond
	defaultMaxBackoff  = 30 * time.Second
	dialTimeout        = 10 * time.Second
	// stableAfter is how long a connection must have lived for the next
	// redial to start again without delay.
	stableAfter = 10 * time.Second
)

// Compression is a policy for compressing served chunk data with zstd.
type Compression int

const (
	// CompressAuto compresses a chunk when zstd shrinks it below 95% and
	// the time that saves on the link exceeds the CPU time it costs, as
	// estimated from the compression speed seen so far and the link's
	// congestion window per round trip. On a LAN faster than the CPU can
	// compress, chunks go raw; on a slower link, compressible ones do not.
	CompressAuto Compression = iota
	// CompressAlways compresses every chunk zstd shrinks below 95%, to
	// save bandwidth on metered links whatever the CPU cost.
	CompressAlways
	// CompressNever sends chunk data raw.
	CompressNever
)

// Transport is this node's endpoint. Create it with New, run it with Run.
type Transport struct {
	cfg  Config
	log  *slog.Logger
	self identity.NodeID
	alpn string // protocol.ALPN; tests change it to speak another version
	// socket, when set before Run, is used instead of binding Listen:
	// tests close it under a running transport to simulate a crash.
	socket *net.UDPConn
	peers  map[identity.NodeID]*peerState

	ready chan struct{} // closed once the socket is bound
	addr  net.Addr      // valid after ready

	connWG  sync.WaitGroup // supervisors of live connections
	loops   sync.WaitGroup // the accept loop and the redialers
	started atomic.Bool    // Run was called

	// mu guards peers (the map and its entries), closing, and the fields
	// below, which Run sets once it is listening.
	mu      sync.Mutex
	closing bool // no connection is established after this is set
	runCtx  context.Context
	qt      *quic.Transport
}

// peerState is what the transport knows of one peer; its fields are
// guarded by Transport.mu.
type peerState struct {
	Peer
	conn *Conn
	// stopDial ends the peer's redialer; nil when none runs.
	stopDial context.CancelFunc
}

// New checks cfg and returns a Transport. It starts nothing and binds no
// socket; Run does.
func New(cfg Config) (*Transport, error) {
	self := cfg.Identity.ID
	if self.IsZero() || cfg.Identity.Certificate.Leaf == nil {
		return nil, errors.New("transport: no identity")
	}
	if cfg.Handler == nil {
		return nil, errors.New("transport: no connection handler")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&cfg.MaxInFlight, defaultMaxInFlight)
	setDefault(&cfg.MaxServing, defaultMaxServing)
	setDefault(&cfg.RequestTimeout, defaultRequestTimeout)
	setDefault(&cfg.KeepAlive, defaultKeepAlive)
	setDefault(&cfg.IdleTimeout, defaultIdleTimeout)
	setDefault(&cfg.MinBackoff, defaultMinBackoff)
	setDefault(&cfg.MaxBackoff, defaultMaxBackoff)
	if cfg.KeepAlive >= cfg.IdleTimeout {
		return nil, fmt.Errorf("transport: keep-alive %v must be shorter than the idle timeout %v", cfg.KeepAlive, cfg.IdleTimeout)
	}
	t := &Transport{
		cfg:   cfg,
		log:   cfg.Logger,
		self:  self,
		alpn:  protocol.ALPN,
		peers: make(map[identity.NodeID]*peerState, len(cfg.Peers)),
		ready: make(chan struct{}),
	}
	peers, err := checkPeers(self, cfg.Peers)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		t.peers[p.ID] = &peerState{Peer: p}
	}
	return t, nil
}

// checkPeers validates a peer list and fills in default names.
func checkPeers(self identity.NodeID, peers []Peer) ([]Peer, error) {
	out := make([]Peer, 0, len(peers))
	seen := map[identity.NodeID]string{}
	for _, p := range peers {
		switch {
		case p.ID.IsZero():
			return nil, fmt.Errorf("transport: peer %q has no ID", p.Name)
		case p.ID == self:
			return nil, fmt.Errorf("transport: peer %q has this node's own ID", p.Name)
		}
		if p.Name == "" {
			p.Name = p.ID.Abbrev()
		}
		if other, dup := seen[p.ID]; dup {
			return nil, fmt.Errorf("transport: peers %q and %q have the same ID", other, p.Name)
		}
		seen[p.ID] = p.Name
		out = append(out, p)
	}
	return out, nil
}

// SetPeers replaces the list of peers while the transport runs (or before
// Run): a removed peer's connection is closed and its redialer stopped; an
// added peer is accepted from now on and, when it has an address, dialed;
// a peer whose address changed is dialed at the new address from its next
// attempt on (a live connection is kept). Peers are matched by ID.
func (t *Transport) SetPeers(peers []Peer) error {
	peers, err := checkPeers(t.self, peers)
	if err != nil {
		return err
	}
	want := make(map[identity.NodeID]Peer, len(peers))
	for _, p := range peers {
		want[p.ID] = p
	}
	var drop []*Conn
	t.mu.Lock()
	for id, ps := range t.peers {
		if _, ok := want[id]; ok {
			continue
		}
		delete(t.peers, id)
		if ps.stopDial != nil {
			ps.stopDial()
			ps.stopDial = nil
		}
		if ps.conn != nil {
			drop = append(drop, ps.conn)
		}
		t.log.Info("peer removed", "peer", ps.Name, "op", "config")
	}
	for _, p := range peers {
		ps := t.peers[p.ID]
		if ps == nil {
			ps = &peerState{Peer: p}
			t.peers[p.ID] = ps
			t.log.Info("peer added", "peer", p.Name, "addr", p.Address, "op", "config")
			t.startDialLocked(ps)
			continue
		}
		if ps.Peer == p {
			continue
		}
		ps.Peer = p
		if ps.stopDial != nil {
			ps.stopDial()
			ps.stopDial = nil
		}
		t.startDialLocked(ps)
	}
	t.mu.Unlock()
	for _, c := range drop {
		c.Close(protocol.Error{Code: protocol.CodeShutdown, Message: "peer removed from the configuration"})
	}
	return nil
}

// Reconnect closes the connection to peer id, if any, so that both nodes
// connect again and exchange hellos anew (after the set of folders they
// share changed).
func (t *Transport) Reconnect(id identity.NodeID) {
	t.mu.Lock()
	var c *Conn
	if ps := t.peers[id]; ps != nil {
		c = ps.conn
	}
	t.mu.Unlock()
	if c != nil {
		c.Close(protocol.Error{Code: protocol.CodeShutdown, Message: "configuration changed; reconnecting"})
	}
}

// startDialLocked starts the redialer of ps if it has an address and Run
// is listening; t.mu must be held.
func (t *Transport) startDialLocked(ps *peerState) {
	if ps.Address == "" || t.runCtx == nil || t.closing {
		return
	}
	ctx, cancel := context.WithCancel(t.runCtx)
	ps.stopDial = cancel
	qt := t.qt
	d := redialer{
		min: t.cfg.MinBackoff, max: t.cfg.MaxBackoff, stable: stableAfter,
		current: func() <-chan struct{} { return t.current(ps) },
		dial:    func(ctx context.Context) error { return t.dial(ctx, qt, ps) },
		log:     t.log.With("peer", ps.Name, "addr", ps.Address),
	}
	t.loops.Go(func() { d.run(ctx) })
}

// lookup returns the state of the configured peer id, or nil.
func (t *Transport) lookup(id identity.NodeID) *peerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[id]
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Ready is closed once Run has bound the UDP socket; Addr is valid then.
func (t *Transport) Ready() <-chan struct{} { return t.ready }

// Addr returns the bound UDP address, or nil before Ready.
func (t *Transport) Addr() net.Addr {
	select {
	case <-t.ready:
		return t.addr
	default:
		return nil
	}
}

// Run binds the socket, accepts and dials peers, and keeps connections up
// until ctx ends. It then closes every connection (protocol.CodeShutdown),
// waits for every handler and goroutine it started, and returns nil. It
// returns an error only when it cannot start. Run may be called once.
func (t *Transport) Run(ctx context.Context) error {
	if !t.started.CompareAndSwap(false, true) {
		return errors.New("transport: Run called twice")
	}
	udp := t.socket
	if udp == nil {
		laddr, err := net.ResolveUDPAddr("udp", t.cfg.Listen)
		if err != nil {
			return fmt.Errorf("transport: listen address %q: %w", t.cfg.Listen, err)
		}
		if udp, err = net.ListenUDP("udp", laddr); err != nil {
			return fmt.Errorf("transport: listen on %s: %w", t.cfg.Listen, err)
		}
	}
	defer udp.Close()
	raiseBuffers(udpBuffers{udp}, t.log)

	resetKey := t.statelessResetKey()
	qt := &quic.Transport{Conn: udp, StatelessResetKey: &resetKey}
	defer qt.Close()
	ln, err := qt.Listen(t.serverTLS(), t.quicConfig())
	if err != nil {
		return fmt.Errorf("transport: listen on %s: %w", udp.LocalAddr(), err)
	}
	defer ln.Close()
	t.addr = udp.LocalAddr()
	close(t.ready)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.loops.Go(func() { t.acceptLoop(runCtx, ln) })
	t.mu.Lock()
	t.log.Info("listening", "addr", t.addr.String(), "op", "listen", "peers", len(t.peers))
	t.runCtx, t.qt = runCtx, qt
	for _, ps := range t.peers {
		t.startDialLocked(ps)
	}
	t.mu.Unlock()
	<-runCtx.Done()

	t.mu.Lock()
	t.closing = true
	var conns []*Conn
	for _, ps := range t.peers {
		if ps.conn != nil {
			conns = append(conns, ps.conn)
		}
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close(protocol.Error{Code: protocol.CodeShutdown, Message: "node shutting down"})
	}
	t.loops.Wait()
	t.connWG.Wait()
	t.log.Info("stopped", "op", "listen")
	return nil
}

// statelessResetKey derives the QUIC stateless reset key from the node's
// private key, so it survives a restart: a restarted node can then reset
// the connections its previous run left open at its peers, which notice at
// once instead of after the idle timeout.
func (t *Transport) statelessResetKey() quic.StatelessResetKey {
	h := sha256.New()
	h.Write([]byte("lockstep quic stateless reset key v1\x00"))
	if k, ok := t.cfg.Identity.Certificate.PrivateKey.(ed25519.PrivateKey); ok {
		h.Write(k.Seed())
	} else {
		h.Write(t.self[:]) // not secret, but keeps the key stable
	}
	return quic.StatelessResetKey(h.Sum(nil))
}

func (t *Transport) quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:        t.cfg.IdleTimeout,
		KeepAlivePeriod:       t.cfg.KeepAlive,
		MaxIncomingStreams:    int64(t.cfg.MaxServing),
		MaxIncomingUniStreams: 1, // the peer's control stream
		// Larger windows than quic-go's defaults keep a fast link busy
		// with many chunks in flight.
		MaxStreamReceiveWindow:     8 << 20,
		MaxConnectionReceiveWindow: 32 << 20,
	}
}

func (t *Transport) acceptLoop(ctx context.Context, ln *quic.Listener) {
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			return // ctx ended or the listener closed
		}
		id, err := peerID(qc.ConnectionState().TLS)
		ps := t.lookup(id)
		if err != nil || ps == nil { // VerifyConnection makes this (almost) unreachable
			qc.CloseWithError(quic.ApplicationErrorCode(protocol.CodeProtocol), "unknown peer")
			continue
		}
		t.establish(qc, nil, ps, false)
	}
}

// dial makes one attempt to connect to ps.
func (t *Transport) dial(ctx context.Context, qt *quic.Transport, ps *peerState) error {
	t.mu.Lock()
	p := ps.Peer
	t.mu.Unlock()
	raddr, err := net.ResolveUDPAddr("udp", p.Address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", p.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var presented identity.NodeID
	qc, err := qt.Dial(ctx, raddr, t.clientTLS(p, &presented), t.quicConfig())
	if err != nil {
		return t.dialError(p, raddr, presented, err)
	}
	// In TLS 1.3 the client finishes its handshake before the server has
	// checked the client's certificate. The server opens its control
	// stream only once it has accepted us, so wait for that before
	// calling the connection established.
	ctrl, err := qc.AcceptUniStream(ctx)
	if err != nil {
		qc.CloseWithError(quic.ApplicationErrorCode(protocol.CodeCanceled), "")
		if cause := context.Cause(qc.Context()); cause != nil {
			err = cause
		}
		return t.dialError(p, raddr, presented, err)
	}
	t.establish(qc, ctrl, ps, true)
	return nil
}

// dialError explains a failed dial. A refusal of the peer's identity is
// logged here, once per attempt, naming what the peer presented.
func (t *Transport) dialError(p Peer, raddr *net.UDPAddr, presented identity.NodeID, err error) error {
	var te *quic.TransportError
	switch {
	case errors.Is(err, errRefused):
		t.log.Warn("refused connection: peer presented an unexpected identity", "peer", p.Name,
			"addr", raddr.String(), "presented", presented.String(), "want", p.ID.String(), "op", "dial", "err", err)
		return fmt.Errorf("dial %s at %s: %w", p.Name, raddr, err)
	case errors.As(err, &te) && te.Remote && te.ErrorCode == quic.TransportErrorCode(0x100+tlsAlertNoApplicationProtocol):
		return fmt.Errorf("dial %s at %s: %w: the peer does not speak %s", p.Name, raddr,
			protocol.Error{Code: protocol.CodeVersion, Message: "protocol version mismatch"}, t.alpn)
	}
	return fmt.Errorf("dial %s at %s: %w", p.Name, raddr, explainClose(err))
}

// current returns a channel that is closed when ps's connection ends, or
// nil when there is none.
func (t *Transport) current(ps *peerState) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps.conn == nil {
		return nil
	}
	return ps.conn.Done()
}

// keepNew decides which of two connections to one peer survives: the new
// one if the same node dialed both (the old one is stale: the dialer only
// dials when it has no connection), otherwise the one dialed by the node
// with the smaller ID. Both nodes reach the same decision whatever order
// the connections complete in.
func keepNew(oldDialedByUs, newDialedByUs, selfIsSmaller bool) bool {
	if oldDialedByUs == newDialedByUs {
		return true
	}
	return newDialedByUs == selfIsSmaller
}

// establish makes qc the connection to ps, or closes it if the existing
// connection wins. ctrl is the peer's control stream if already accepted.
func (t *Transport) establish(qc *quic.Conn, ctrl *quic.ReceiveStream, ps *peerState, dialed bool) {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		qc.CloseWithError(quic.ApplicationErrorCode(protocol.CodeShutdown), "node shutting down")
		return
	}
	if t.peers[ps.ID] != ps {
		// Removed from the configuration while connecting.
		t.mu.Unlock()
		qc.CloseWithError(quic.ApplicationErrorCode(protocol.CodeShutdown), "peer removed from the configuration")
		return
	}
	old := ps.conn
	if old != nil && !keepNew(old.dialed, dialed, t.self.Compare(ps.ID) < 0) {
		name := ps.Name
		t.mu.Unlock()
		t.log.Debug("closing duplicate connection", "peer", name, "addr", qc.RemoteAddr().String(), "op", "establish")
		qc.CloseWithError(quic.ApplicationErrorCode(protocol.CodeDuplicate), "duplicate connection")
		// The kept connection may be stale if the peer restarted;
		// traffic on it draws a stateless reset and ends it at once.
		old.poke()
		return
	}
	c := newConn(t, ps.Peer, qc, ctrl, dialed)
	ps.conn = c
	name := ps.Name
	t.connWG.Add(1)
	t.mu.Unlock()
	if old != nil {
		old.Close(protocol.Error{Code: protocol.CodeDuplicate, Message: "replaced by a newer connection"})
	}
	op := "accept"
	if dialed {
		op = "dial"
	}
	t.log.Info("connected", "peer", name, "addr", qc.RemoteAddr().String(), "op", op)
	go func() {
		defer t.connWG.Done()
		c.run()
	}()
}

// forget removes c from its peer's slot if it is still there.
func (t *Transport) forget(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps := t.peers[c.peer.ID]; ps != nil && ps.conn == c {
		ps.conn = nil
	}
}
