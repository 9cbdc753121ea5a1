package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/chunker"
	"lockstep/protocol"
)

// ErrHashMismatch reports chunk data that does not hash to what was asked.
var ErrHashMismatch = errors.New("hash mismatch")

// ErrCorrupt reports chunk data that cannot be what was asked: wrong
// length, or compressed data that does not decompress to that length.
var ErrCorrupt = errors.New("corrupt chunk data")

// maxRequestFrame bounds a ChunkRequest frame: fixed fields, folder ID and
// hint path.
const maxRequestFrame = 128 + protocol.MaxNameLen + protocol.MaxPathLen

// maxResponseHead bounds a ChunkResponse's fields before its data.
const maxResponseHead = 64

// maxBatchFrame bounds a ChunkBatchRequest frame: fixed fields, folder ID
// and every chunk's hash, length, hint path and offset.
const maxBatchFrame = 128 + protocol.MaxNameLen + protocol.MaxBatchChunks*(chunker.HashSize+16+protocol.MaxPathLen)

// ChunkBufferSize returns the buffer capacity RequestChunkInto needs to
// receive a chunk of length bytes without allocating.
func ChunkBufferSize(length int) int { return protocol.HeaderSize + maxResponseHead + length }

// RequestChunk fetches one chunk from the peer and returns its data, which
// has req.Length bytes and hashes to req.Hash; the caller owns it. req.ID is
// assigned here. At most Config.MaxInFlight requests per connection are in
// flight; further calls wait their turn. A request is abandoned when ctx
// ends, after Config.RequestTimeout, or when the connection is lost. A
// code sent by the peer is returned as a protocol.Error (errors.Is(err,
// protocol.ErrNotFound)); data that fails verification as ErrHashMismatch
// or ErrCorrupt.
func (c *Conn) RequestChunk(ctx context.Context, req protocol.ChunkRequest) ([]byte, error) {
	return c.RequestChunkInto(ctx, req, nil)
}

// RequestChunkInto is RequestChunk with a buffer to receive into: when
// buf's capacity is at least req.Length plus a small margin (ChunkBufferSize)
// the returned data lives in buf — not necessarily at its start — and
// nothing is allocated for it. Callers that write chunks out and recycle
// their buffers save an allocation and a clearing per chunk.
func (c *Conn) RequestChunkInto(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("fetch chunk %s from %s: %w", req.Hash.Short(), c.peer.Name, err)
	}
	if req.Length == 0 || req.Length > protocol.MaxChunkSize {
		return fail(fmt.Errorf("length %d out of range", req.Length))
	}
	ctx, s, done, err := c.openRequest(ctx)
	if err != nil {
		return fail(err)
	}
	reuse := false
	defer func() { done(reuse) }()

	req.ID = c.nextID.Add(1)
	if err := c.writeRequest(ctx, s, &req); err != nil {
		return fail(err)
	}

	r := protocol.NewReader(countingReader{s, &c.stats.received, nil}, maxResponseHead+int(req.Length))
	var inflated uint64 // what decompression added to the bytes read
	defer func() { c.stats.receivedRaw.Add(uint64(r.BytesRead()) + inflated) }()
	m, err := r.ReadMessageInto(buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("stream ended before the response: %w", protocol.ErrProtocol)
		}
		err = c.streamError(ctx, err)
		if errors.Is(err, protocol.ErrProtocol) || errors.Is(err, protocol.ErrTooLarge) {
			c.protocolError(fmt.Errorf("chunk response from %s: %w", c.peer.Name, err))
		}
		return fail(err)
	}
	resp, ok := m.(*protocol.ChunkResponse)
	if !ok || resp.ID != req.ID || !resp.Bare && resp.Hash != req.Hash {
		err := fmt.Errorf("answer %s does not match request %d: %w", m.Type(), req.ID, protocol.ErrProtocol)
		c.protocolError(fmt.Errorf("chunk response from %s: %w", c.peer.Name, err))
		return fail(err)
	}
	// The response was read whole: the stream is ready for the next
	// request, whatever the response says.
	reuse = true
	if resp.Code != protocol.CodeOK {
		return fail(protocol.Error{Code: resp.Code})
	}
	data := resp.Data
	if resp.Compressed {
		if data, err = decompress(resp.Data, int(req.Length), buf); err != nil {
			c.t.log.Warn("rejected chunk", "peer", c.peer.Name, "op", "fetch", "hash", req.Hash.String(), "err", err)
			return fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
		}
	}
	if len(data) != int(req.Length) {
		c.t.log.Warn("rejected chunk", "peer", c.peer.Name, "op", "fetch", "hash", req.Hash.String(), "bytes", len(data))
		return fail(fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(data), req.Length))
	}
	if got := chunker.Sum(data); got != req.Hash {
		c.t.log.Warn("rejected chunk", "peer", c.peer.Name, "op", "fetch", "hash", req.Hash.String(), "got", got.String())
		return fail(fmt.Errorf("%w: data hashes to %s", ErrHashMismatch, got.Short()))
	}
	inflated = uint64(len(data) - len(resp.Data))
	c.stats.chunksReceived.Add(1)
	c.stats.chunkBytesReceived.Add(uint64(len(data)))
	return data, nil
}

// ChunkBatches reports whether the peer answers RequestChunks: its Hello
// offers protocol.FeatureChunkBatch. Until its Hello has arrived, it does
// not.
func (c *Conn) ChunkBatches() bool {
	return c.peerFeatures.Load()&protocol.FeatureChunkBatch != 0
}

// ChunkResult is one chunk of a batch fetched with RequestChunks: its data,
// which hashes to what was asked, or why it could not be had.
type ChunkResult struct {
	Data []byte
	Err  error
}

// RequestChunks fetches the chunks of folder in one ChunkBatchRequest and
// returns one result per chunk, in order: the peer answers each chunk on
// its own, and a chunk it does not have (a protocol.Error) or whose data
// fails verification (ErrHashMismatch, ErrCorrupt) fails alone. The error
// is for the batch as a whole — the connection lost, the deadline passed,
// an answer that does not follow the protocol — and then no result is
// returned. The batch takes one of Config.MaxInFlight request slots and is
// bounded by Config.RequestTimeout like one request; the peer must offer
// protocol.FeatureChunkBatch (ChunkBatches).
func (c *Conn) RequestChunks(ctx context.Context, folder string, chunks []protocol.BatchChunk) ([]ChunkResult, error) {
	results := make([]ChunkResult, len(chunks))
	err := c.RequestChunksInto(ctx, folder, chunks, nil, func(i int, data []byte, err error) error {
		results[i] = ChunkResult{Data: data, Err: err}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// RequestChunksInto is RequestChunks with each chunk handed to each as it
// arrives, in order, instead of collected: its index in chunks and its
// data, verified, or why it failed alone. The data is received into buf
// when buf's capacity suffices (ChunkBufferSize of the chunk's length) and
// is then valid only until each returns; with a nil buf each chunk gets
// its own slice. An error from each abandons the batch and is returned as
// it is. Any other error is for the batch as a whole, as for
// RequestChunks; each has then been called for the chunks before the
// failure only.
func (c *Conn) RequestChunksInto(ctx context.Context, folder string, chunks []protocol.BatchChunk, buf []byte, each func(i int, data []byte, err error) error) error {
	fail := func(err error) error {
		return fmt.Errorf("fetch %d chunks from %s: %w", len(chunks), c.peer.Name, err)
	}
	if !c.ChunkBatches() {
		return fail(fmt.Errorf("the peer does not answer chunk batches: %w", protocol.ErrProtocol))
	}
	// An invalid batch (too many chunks, a length out of range) is
	// refused when it is encoded, before anything is sent.
	req := protocol.ChunkBatchRequest{Folder: folder, Chunks: chunks}
	maxLen := 0
	for _, ch := range chunks {
		maxLen = max(maxLen, int(min(ch.Length, protocol.MaxChunkSize)))
	}
	ctx, s, done, err := c.openRequest(ctx)
	if err != nil {
		return fail(err)
	}
	reuse := false
	defer func() { done(reuse) }()

	req.ID = c.nextID.Add(1)
	if err := c.writeRequest(ctx, s, &req); err != nil {
		return fail(err)
	}

	r := protocol.NewReader(countingReader{s, &c.stats.received, nil}, maxResponseHead+maxLen)
	var inflated uint64
	defer func() { c.stats.receivedRaw.Add(uint64(r.BytesRead()) + inflated) }()
	for i, ch := range chunks {
		m, err := r.ReadMessageInto(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("stream ended after %d of %d responses: %w", i, len(chunks), protocol.ErrProtocol)
			}
			err = c.streamError(ctx, err)
			if errors.Is(err, protocol.ErrProtocol) || errors.Is(err, protocol.ErrTooLarge) {
				c.protocolError(fmt.Errorf("chunk batch response from %s: %w", c.peer.Name, err))
			}
			return fail(err)
		}
		resp, ok := m.(*protocol.ChunkResponse)
		if !ok || resp.ID != req.ID || !resp.Bare && resp.Hash != ch.Hash {
			err := fmt.Errorf("answer %d, %s, does not match chunk %d of batch %d: %w", i, m.Type(), i, req.ID, protocol.ErrProtocol)
			c.protocolError(fmt.Errorf("chunk batch response from %s: %w", c.peer.Name, err))
			return fail(err)
		}
		data, err := c.verifyChunk(resp, ch.Hash, ch.Length, buf)
		if err == nil {
			inflated += uint64(len(data) - len(resp.Data))
		}
		if err := each(i, data, err); err != nil {
			return err
		}
	}
	// Every response was read: the stream is ready for the next request.
	reuse = true
	return nil
}

// openRequest takes one of the MaxInFlight request slots and a request
// stream, under a context that ends after the request timeout (returned:
// the request's reads and writes are bounded by it). done must be called
// once the request is over, with whether the stream may serve another
// request (its responses were read whole): it frees the slot and keeps or
// discards the stream. Ending the context cancels both directions of the
// stream, which unblocks its Read and Write and returns its credit to the
// peer; a stream is kept only if the context did not end meanwhile.
func (c *Conn) openRequest(ctx context.Context) (_ context.Context, s *quic.Stream, done func(reuse bool), err error) {
	select {
	case c.inflight <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, nil, nil, c.Err()
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.t.cfg.RequestTimeout, protocol.ErrTimeout)
	s, err = c.requestStream(ctx)
	if err != nil {
		err = c.streamError(ctx, err)
		cancel()
		<-c.inflight
		return nil, nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { cancelStream(s) })
	return ctx, s, func(reuse bool) {
		defer func() { <-c.inflight }()
		defer cancel()
		if stop() && reuse {
			select {
			case c.idle <- s: // room: at most MaxInFlight streams exist
				return
			default:
			}
		}
		c.discardStream(s)
	}, nil
}

// writeRequest sends a request on s, opened by openRequest under ctx.
func (c *Conn) writeRequest(ctx context.Context, s *quic.Stream, m protocol.Message) error {
	w := protocol.NewWriter(countingWriter{s, &c.stats.sent})
	if err := w.WriteMessage(m); err != nil {
		return c.streamError(ctx, err)
	}
	c.stats.sentRaw.Add(uint64(w.BytesWritten()))
	return nil
}

// verifyChunk checks a response's data against the chunk asked for —
// decompressed to exactly length bytes (into buf when it has room),
// hashing to h — and returns it.
func (c *Conn) verifyChunk(resp *protocol.ChunkResponse, h chunker.Hash, length uint32, buf []byte) ([]byte, error) {
	if resp.Code != protocol.CodeOK {
		return nil, fmt.Errorf("chunk %s: %w", h.Short(), protocol.Error{Code: resp.Code})
	}
	data := resp.Data
	if resp.Compressed {
		var err error
		if data, err = decompress(resp.Data, int(length), buf); err != nil {
			c.t.log.Warn("rejected chunk", "peer", c.peer.Name, "op", "fetch", "hash", h.String(), "err", err)
			return nil, fmt.Errorf("chunk %s: %w: %w", h.Short(), ErrCorrupt, err)
		}
	}
	if len(data) != int(length) {
		c.t.log.Warn("rejected chunk", "peer", c.peer.Name, "op", "fetch", "hash", h.String(), "bytes", len(data))
		return nil, fmt.Errorf("chunk %s: %w: %d bytes, want %d", h.Short(), ErrCorrupt, len(data), length)
	}
	if got := chunker.Sum(data); got != h {
		c.t.log.Warn("rejected chunk", "peer", c.peer.Name, "op", "fetch", "hash", h.String(), "got", got.String())
		return nil, fmt.Errorf("chunk %s: %w: data hashes to %s", h.Short(), ErrHashMismatch, got.Short())
	}
	c.stats.chunksReceived.Add(1)
	c.stats.chunkBytesReceived.Add(uint64(len(data)))
	return data, nil
}

// linkRate estimates what the connection can carry, in bytes per second:
// the congestion window per smoothed round trip; 0 before it is known.
func (c *Conn) linkRate() float64 {
	st := c.qc.ConnectionStats()
	if st.SmoothedRTT <= 0 {
		return 0
	}
	return float64(st.CongestionWindow) / st.SmoothedRTT.Seconds()
}

// streamError explains a failed stream operation: the request's deadline,
// the caller's cancellation, or the connection's end.
func (c *Conn) streamError(ctx context.Context, err error) error {
	if c.ctx.Err() != nil {
		return c.Err()
	}
	if cause := context.Cause(c.qc.Context()); cause != nil {
		// Closed, and ctx not yet ended (closeWith closes the QUIC
		// connection first): it is the connection's end all the same.
		return fmt.Errorf("%w: %w", ErrClosed, explainClose(cause))
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, protocol.ErrTimeout) {
			return fmt.Errorf("no answer within %v: %w", c.t.cfg.RequestTimeout, cause)
		}
		return ctx.Err()
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return fmt.Errorf("peer cancelled the request: %w", protocol.Error{Code: protocol.Code(se.ErrorCode)})
	}
	return err
}

// requestStream returns a request stream for one request: an idle one, or
// a new one. Streams are kept for the next request instead of being
// closed, which saves opening, accepting and closing a stream per chunk.
// At most MaxInFlight streams exist (every one is either idle or carries
// one of the requests in flight, and a new one is opened only when none
// is idle). A peer that allows fewer has every stream busy when the limit
// is reached: wait for one to become idle, or for a cancelled one to free
// its slot.
func (c *Conn) requestStream(ctx context.Context) (*quic.Stream, error) {
	select {
	case s := <-c.idle:
		return s, nil
	default:
	}
	s, err := c.qc.OpenStream()
	if err == nil || !errors.As(err, new(*quic.StreamLimitReachedError)) {
		return s, err
	}
	select {
	case s := <-c.idle:
		return s, nil
	case <-c.freed:
		return c.qc.OpenStreamSync(ctx)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, c.Err()
	}
}

// discardStream cancels a request stream that cannot carry another
// request, returning its credit to the peer.
func (c *Conn) discardStream(s *quic.Stream) {
	cancelStream(s)
	select {
	case c.freed <- struct{}{}:
	default:
	}
}

func cancelStream(s *quic.Stream) {
	s.CancelRead(quic.StreamErrorCode(protocol.CodeCanceled))
	s.CancelWrite(quic.StreamErrorCode(protocol.CodeCanceled))
}

// acceptStreams serves the peer's request streams, one goroutine per
// stream. QUIC's stream limit (Config.MaxServing) bounds how many run at
// once.
func (c *Conn) acceptStreams() {
	for {
		s, err := c.qc.AcceptStream(c.ctx)
		if err != nil {
			return
		}
		c.workers.Go(func() { c.serve(s) })
	}
}

// responseUrgency is quic-go's default urgency (RFC 9218): chunk data
// shares the link with the control stream as before.
const responseUrgency = 3

// serve answers the requests on s, one at a time and in order, until the
// requester ends the stream (or cancels it, or the connection closes).
func (c *Conn) serve(s *quic.Stream) {
	abort := func(code protocol.Code) {
		s.CancelRead(quic.StreamErrorCode(code))
		s.CancelWrite(quic.StreamErrorCode(code))
	}
	// Responses go out one after another rather than interleaved packet
	// by packet: each arrives whole sooner and its reader wakes once
	// instead of once per packet, for the same total rate.
	s.SetPriority(responseUrgency, false)
	r := protocol.NewReader(countingReader{s, &c.stats.received, &c.stats.receivedRaw}, maxBatchFrame)
	w := protocol.NewWriter(countingWriter{s, &c.stats.sent})
	// buf is handed to the chunk server for each request in turn: a
	// response is written whole (and the stream copies what it sends)
	// before the next request is read, so one buffer per stream serves
	// them all without allocating and clearing one per chunk. The server
	// gets it after protocol.ResponseRoom bytes, where the response's
	// header goes, so that the response is one write.
	var buf []byte
	for {
		// An idle stream waits for its next request without a deadline:
		// the peer's stream limit (MaxServing) bounds how many wait.
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			s.Close() // the requester is done with the stream
			return
		}
		if err != nil && c.ctx.Err() != nil {
			abort(protocol.CodeCanceled)
			return
		}
		var se *quic.StreamError
		if errors.As(err, &se) {
			abort(protocol.CodeCanceled) // the requester cancelled the stream
			return
		}
		var reqs []protocol.ChunkRequest
		switch m := m.(type) {
		case *protocol.ChunkRequest:
			reqs = append(reqs, *m)
		case *protocol.ChunkBatchRequest:
			// Answered like as many requests, one response each.
			for _, ch := range m.Chunks {
				reqs = append(reqs, protocol.ChunkRequest{ID: m.ID, Folder: m.Folder, Hash: ch.Hash, Length: ch.Length, Path: ch.Path, Offset: ch.Offset})
			}
		default:
			if err == nil {
				err = fmt.Errorf("%s on a request stream: %w", m.Type(), protocol.ErrProtocol)
			}
		}
		if err != nil {
			abort(protocol.CodeProtocol)
			if errors.Is(err, protocol.ErrProtocol) || errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, protocol.ErrVersion) {
				c.protocolError(fmt.Errorf("chunk request from %s: %w", c.peer.Name, err))
			}
			return
		}
		for i := range reqs {
			if cap(buf) < protocol.ResponseRoom+int(reqs[i].Length) && reqs[i].Length <= protocol.MaxChunkSize {
				buf = make([]byte, protocol.ResponseRoom+int(reqs[i].Length))
			}
			if !c.serveOne(s, w, &reqs[i], buf) {
				abort(protocol.CodeCanceled)
				return
			}
		}
	}
}

// serveOne answers req on s; false means the response could not be
// written and the stream is unusable. The chunk is read into buf after
// protocol.ResponseRoom bytes when buf has room for it.
func (c *Conn) serveOne(s *quic.Stream, w *protocol.Writer, req *protocol.ChunkRequest, buf []byte) bool {
	deadline := time.Now().Add(c.t.cfg.RequestTimeout)
	s.SetWriteDeadline(deadline)
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	// The requester giving up (STOP_SENDING) cancels the work.
	stop := context.AfterFunc(s.Context(), cancel)
	defer stop()
	resp := protocol.ChunkResponse{ID: req.ID, Hash: req.Hash,
		Bare: c.peerFeatures.Load()&protocol.FeatureBareChunkResponse != 0}
	var data []byte
	var err error
	if c.t.cfg.Chunks == nil {
		err = protocol.ErrNotFound
	} else {
		var into []byte
		if len(buf) >= protocol.ResponseRoom {
			into = buf[protocol.ResponseRoom:]
		}
		data, err = c.t.cfg.Chunks.ReadChunk(ctx, c.peer.ID, *req, into)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// The requester gave up or the deadline passed: nobody is waiting
		// for a diagnosis.
		resp.Code = protocol.CodeCanceled
	case err != nil:
		resp.Code = protocol.CodeOf(err)
		if resp.Code == protocol.CodeInternal {
			c.t.log.Warn("cannot serve chunk", "peer", c.peer.Name, "op", "serve", "hash", req.Hash.String(), "err", err)
		}
	case len(data) != int(req.Length):
		c.t.log.Warn("cannot serve chunk: wrong length from the chunk server", "peer", c.peer.Name, "op", "serve",
			"hash", req.Hash.String(), "bytes", len(data), "want", req.Length)
		resp.Code = protocol.CodeInternal
	default:
		resp.Data = data
		var z *[]byte
		switch c.t.cfg.Compression {
		case CompressAuto:
			z = c.comp.compress(data, c.linkRate())
		case CompressAlways:
			z = c.comp.compress(data, 0) // 0: an unknown link, always worth it
		}
		if z != nil {
			defer putCompressed(z)
			resp.Data, resp.Compressed = *z, true
		}
	}
	before := w.BytesWritten()
	if resp.Compressed || len(buf) < protocol.ResponseRoom+len(resp.Data) {
		err = w.WriteMessage(&resp)
	} else {
		// One write when the data is where the chunk server was asked to
		// read it (WriteChunkResponse checks).
		err = w.WriteChunkResponse(&resp, buf[:protocol.ResponseRoom+len(resp.Data)], protocol.ResponseRoom)
	}
	written := uint64(w.BytesWritten() - before)
	if err != nil {
		c.stats.sentRaw.Add(written)
		return false
	}
	c.stats.sentRaw.Add(written + uint64(len(data)-len(resp.Data)))
	if resp.Code == protocol.CodeOK {
		c.stats.chunksSent.Add(1)
		c.stats.chunkBytesSent.Add(uint64(len(data)))
	}
	return true
}
