package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/chunker"
	"lockstep/protocol"
)

func batchOf(chunks ...[]byte) []protocol.BatchChunk {
	var out []protocol.BatchChunk
	for _, c := range chunks {
		out = append(out, protocol.BatchChunk{Hash: chunker.Sum(c), Length: uint32(len(c)), Path: "d/f.txt"})
	}
	return out
}

// TestRequestChunks: a batch fetches every chunk its peer has, each
// verified on its own: a chunk the peer lacks or sends corrupt fails alone,
// and the stream carries the next batch.
func TestRequestChunks(t *testing.T) {
	checkGoroutines(t)
	for _, mode := range []Compression{CompressNever, CompressAlways} {
		good := [][]byte{randomChunk(1024), textChunk(3000, 1), []byte("tiny")}
		corrupt := textChunk(2000, 2)
		missing := randomChunk(100)
		store := newChunkStore(good...)
		server := chunkFunc(func(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
			if req.Hash == chunker.Sum(corrupt) {
				bad := bytes.Clone(corrupt)
				bad[10] ^= 1
				return bad, nil
			}
			return store.ReadChunk(ctx, [32]byte{}, req, buf)
		})
		a, b := pair(t, nil, []nodeOpt{withChunks(server), func(c *Config) { c.Compression = mode }})
		ca, cb := a.nextConn(t), b.nextConn(t)
		helloWith(t, cb, ca, Features)
		if !ca.ChunkBatches() {
			t.Fatal("the peer's hello offers chunk batches, ChunkBatches is false")
		}
		ctx := context.Background()
		res, err := ca.RequestChunks(ctx, "docroot", batchOf(good[0], missing, good[1], corrupt, good[2]))
		mustf(t, err, "batch")
		if len(res) != 5 {
			t.Fatalf("%d results for 5 chunks", len(res))
		}
		for i, want := range map[int][]byte{0: good[0], 2: good[1], 4: good[2]} {
			if res[i].Err != nil || !bytes.Equal(res[i].Data, want) {
				t.Errorf("mode %d: chunk %d: %d bytes, %v", mode, i, len(res[i].Data), res[i].Err)
			}
		}
		if !errors.Is(res[1].Err, protocol.ErrNotFound) || res[1].Data != nil {
			t.Errorf("mode %d: missing chunk: %v, want ErrNotFound", mode, res[1].Err)
		}
		if !errors.Is(res[3].Err, ErrHashMismatch) || res[3].Data != nil {
			t.Errorf("mode %d: corrupt chunk: %v, want ErrHashMismatch", mode, res[3].Err)
		}
		if n := ca.Stats().ChunksReceived; n != 3 {
			t.Errorf("mode %d: %d chunks counted, want the 3 verified", mode, n)
		}
		// The same connection serves the next batch, and single requests.
		res, err = ca.RequestChunks(ctx, "docroot", batchOf(good[2], good[0]))
		mustf(t, err, "second batch")
		if !bytes.Equal(res[0].Data, good[2]) || !bytes.Equal(res[1].Data, good[0]) {
			t.Fatal("second batch differs")
		}
		got, err := ca.RequestChunk(ctx, req(good[1]))
		mustf(t, err, "single request")
		if !bytes.Equal(got, good[1]) {
			t.Fatal("single request differs")
		}
		if ca.Err() != nil {
			t.Fatalf("connection closed: %v", ca.Err())
		}
	}
}

// TestRequestChunksNeedsFeature: toward a peer whose Hello does not offer
// chunk batches (an earlier release, which would take the request for a
// protocol violation), nothing is sent and single requests still work.
func TestRequestChunksNeedsFeature(t *testing.T) {
	checkGoroutines(t)
	data := randomChunk(1024)
	a, b := pair(t, nil, []nodeOpt{withChunks(newChunkStore(data))})
	ca, cb := a.nextConn(t), b.nextConn(t)
	if ca.ChunkBatches() {
		t.Fatal("ChunkBatches before the peer's hello")
	}
	helloWith(t, cb, ca, protocol.FeatureChunkDelta|protocol.FeatureCompressed|protocol.FeatureBareChunkResponse)
	if ca.ChunkBatches() {
		t.Fatal("ChunkBatches toward a peer that does not offer them")
	}
	sent := ca.Stats().Sent
	_, err := ca.RequestChunks(context.Background(), "docroot", batchOf(data))
	if !errors.Is(err, protocol.ErrProtocol) || !strings.Contains(err.Error(), "does not answer chunk batches") {
		t.Fatalf("batch toward an old peer: %v", err)
	}
	if ca.Stats().Sent != sent {
		t.Fatal("a batch was sent to a peer that does not offer them")
	}
	got, err := ca.RequestChunk(context.Background(), req(data))
	mustf(t, err, "single request")
	if !bytes.Equal(got, data) || ca.Err() != nil {
		t.Fatal("single request after a refused batch failed")
	}
}

// TestRequestChunksOversizeBatchRefused: a batch beyond the limits is
// refused before anything is sent.
func TestRequestChunksOversizeBatchRefused(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, nil, []nodeOpt{withChunks(newChunkStore())})
	ca, cb := a.nextConn(t), b.nextConn(t)
	helloWith(t, cb, ca, Features)
	many := make([]protocol.BatchChunk, protocol.MaxBatchChunks+1)
	for i := range many {
		many[i] = protocol.BatchChunk{Length: 1}
	}
	if _, err := ca.RequestChunks(context.Background(), "docroot", many); !errors.Is(err, protocol.ErrProtocol) {
		t.Fatalf("batch of %d chunks: %v, want a protocol error", len(many), err)
	}
	if ca.Err() != nil {
		t.Fatalf("a refused batch closed the connection: %v", ca.Err())
	}
}

// TestRequestChunksMisbehavingPeer: answers that break the protocol — a
// response for another request, data longer than the chunk — fail the
// batch with a clear error and close the connection; nothing is returned.
func TestRequestChunksMisbehavingPeer(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(r *protocol.ChunkBatchRequest) []protocol.Message
		want   error
	}{
		{"wrong id", func(r *protocol.ChunkBatchRequest) []protocol.Message {
			return []protocol.Message{&protocol.ChunkResponse{ID: r.ID + 1, Bare: true, Data: []byte("x")}}
		}, protocol.ErrProtocol},
		{"oversize data", func(r *protocol.ChunkBatchRequest) []protocol.Message {
			return []protocol.Message{&protocol.ChunkResponse{ID: r.ID, Bare: true, Data: make([]byte, r.Chunks[0].Length+200)}}
		}, protocol.ErrTooLarge},
		{"another hash", func(r *protocol.ChunkBatchRequest) []protocol.Message {
			return []protocol.Message{&protocol.ChunkResponse{ID: r.ID, Hash: chunker.Sum([]byte("other")), Data: []byte("other")}}
		}, protocol.ErrProtocol},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			ida := newIdentity(t, "a")
			rp := startRawPeer(t, ida.ID)
			a := startNode(t, ida, "127.0.0.1:0", []Peer{{ID: rp.id.ID, Name: "raw", Address: rp.addr}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			qc, err := rp.ln.Accept(ctx)
			mustf(t, err, "accept")
			// The raw peer's control stream: the preface, then a hello
			// offering batches.
			ctl, err := qc.OpenUniStream()
			mustf(t, err, "open control stream")
			hello, _ := protocol.AppendFrame(appendPingPong(nil, 0), &protocol.Hello{Version: protocol.Version, ID: rp.id.ID, Features: Features})
			_, err = ctl.Write(hello)
			mustf(t, err, "write hello")
			ca := a.nextConn(t)
			eventually(t, 5*time.Second, "the raw peer's hello", ca.ChunkBatches)

			data := [][]byte{randomChunk(500), randomChunk(600)}
			type result struct {
				res []ChunkResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := ca.RequestChunks(context.Background(), "docroot", batchOf(data...))
				done <- result{res, err}
			}()
			s, err := qc.AcceptStream(ctx)
			mustf(t, err, "accept stream")
			m, err := protocol.NewReader(s, 0).ReadMessage()
			mustf(t, err, "read batch")
			r, ok := m.(*protocol.ChunkBatchRequest)
			if !ok || len(r.Chunks) != 2 || r.Chunks[1].Hash != chunker.Sum(data[1]) {
				t.Fatalf("raw peer read %#v", m)
			}
			w := protocol.NewWriter(s)
			for _, m := range tt.answer(r) {
				// a may close the connection while the bad answer is still
				// being written: what counts is what a made of it.
				if err := w.WriteMessage(m); err != nil {
					t.Logf("answer: %v", err)
					break
				}
			}
			got := <-done
			if !errors.Is(got.err, tt.want) || got.res != nil {
				t.Fatalf("batch: %v (%d results), want %v and none", got.err, len(got.res), tt.want)
			}
			select {
			case <-ca.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the violation did not close the connection")
			}
		})
	}
}

// TestRequestChunksInto: each chunk of a batch is handed over as it
// arrives, received into the caller's buffer, compressed or not, each
// verified; an error from the callback abandons the batch, and the
// connection carries the next one.
func TestRequestChunksInto(t *testing.T) {
	checkGoroutines(t)
	for _, mode := range []Compression{CompressNever, CompressAlways} {
		good := [][]byte{randomChunk(1024), textChunk(3000, 1), textChunk(2500, 3)}
		corrupt := textChunk(2000, 2)
		store := newChunkStore(good...)
		server := chunkFunc(func(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
			if req.Hash == chunker.Sum(corrupt) {
				bad := bytes.Clone(corrupt)
				bad[10] ^= 1
				return bad, nil
			}
			return store.ReadChunk(ctx, [32]byte{}, req, buf)
		})
		a, b := pair(t, nil, []nodeOpt{withChunks(server), func(c *Config) { c.Compression = mode }})
		ca, cb := a.nextConn(t), b.nextConn(t)
		helloWith(t, cb, ca, Features)
		ctx := context.Background()
		buf := make([]byte, ChunkBufferSize(3000))
		var order []int
		err := ca.RequestChunksInto(ctx, "docroot", batchOf(good[0], corrupt, good[1], good[2]), buf, func(i int, data []byte, err error) error {
			order = append(order, i)
			want := map[int][]byte{0: good[0], 2: good[1], 3: good[2]}[i]
			switch {
			case i == 1:
				if !errors.Is(err, ErrHashMismatch) {
					t.Errorf("mode %d: corrupt chunk: %v, want ErrHashMismatch", mode, err)
				}
			case err != nil || !bytes.Equal(data, want):
				t.Errorf("mode %d: chunk %d: %d bytes, %v", mode, i, len(data), err)
			case !overlaps(data, buf):
				t.Errorf("mode %d: chunk %d not received into the buffer", mode, i)
			}
			return nil
		})
		mustf(t, err, "batch")
		if fmt.Sprint(order) != "[0 1 2 3]" {
			t.Errorf("mode %d: chunks handed over in order %v", mode, order)
		}
		stop := errors.New("stop")
		calls := 0
		err = ca.RequestChunksInto(ctx, "docroot", batchOf(good[0], good[1], good[2]), buf, func(int, []byte, error) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("mode %d: callback error: %v after %d calls, want it after 1", mode, err, calls)
		}
		res, err := ca.RequestChunks(ctx, "docroot", batchOf(good[2], good[0]))
		mustf(t, err, "next batch")
		if !bytes.Equal(res[0].Data, good[2]) || !bytes.Equal(res[1].Data, good[0]) {
			t.Fatal("next batch differs")
		}
	}
}

// TestRequestOnClosingConnWrapsErrClosed: a request on a connection whose
// QUIC connection was just closed here (closeWith closes it before it
// ends the Conn's context, as when a newer connection replaces it) fails
// with an error wrapping ErrClosed, which tells the caller to ask again on
// the peer's next connection, not to count a failure.
func TestRequestOnClosingConnWrapsErrClosed(t *testing.T) {
	checkGoroutines(t)
	data := []byte("a chunk asked for as the connection closes")
	a, b := pair(t, nil, []nodeOpt{withChunks(newChunkStore(data))})
	ca, cb := a.nextConn(t), b.nextConn(t)
	helloWith(t, cb, ca, Features)
	ca.qc.CloseWithError(quic.ApplicationErrorCode(protocol.CodeDuplicate), "replaced by a newer connection")
	_, err := ca.RequestChunk(context.Background(), req(data))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("request on a closed connection: %v, want ErrClosed", err)
	}
	// The moment in between, held still: the QUIC connection closed, the
	// Conn's context not yet ended.
	between := &Conn{ctx: context.Background(), qc: ca.qc, t: ca.t}
	if err := between.streamError(context.Background(), errors.New("stream write failed")); !errors.Is(err, ErrClosed) {
		t.Fatalf("streamError once the QUIC connection closed: %v, want ErrClosed", err)
	}
}
