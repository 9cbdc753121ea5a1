package transport

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/protocol"
)

// smallFiles is an index batch of n one-chunk files.
func smallFiles(n int) *protocol.IndexUpdate {
	u := &protocol.IndexUpdate{Folder: "docroot", Epoch: 7, Through: uint64(n)}
	for i := range n {
		u.Files = append(u.Files, protocol.FileInfo{
			Path: fmt.Sprintf("d%04d/f%06d.txt", i/100, i), Type: protocol.File, Size: 1024, Mode: 0o644,
			ModTime: 1795000000123456789 + int64(i)*7919, UID: 33, GID: 33,
			Chunks:  []chunker.Ref{{Hash: chunker.Sum(fmt.Appendf(nil, "%d", i)), Length: 1024}},
			Version: conflict.Vector{{Node: 0x1234, Value: uint64(i + 1)}}, Stamp: conflict.MakeStamp(1795000000123, uint16(i)),
			Origin: 0x1234, Sequence: uint64(i + 1),
		})
	}
	return u
}

// helloWith sends a Hello offering features from one side and waits for
// the other to receive it.
func helloWith(t testing.TB, from, to *Conn, features uint64) {
	t.Helper()
	ctx := context.Background()
	h := &protocol.Hello{Version: protocol.Version, ID: from.t.cfg.Identity.ID, Features: features}
	mustf(t, from.Send(ctx, h), "send hello")
	m, err := to.Receive(ctx)
	mustf(t, err, "receive hello")
	if got, ok := m.(*protocol.Hello); !ok || got.Features != features {
		t.Fatalf("received %#v, want the hello", m)
	}
}

// TestCompressedControlFollowsHello: index updates go compressed to a peer
// whose Hello offers it, and plain to one whose Hello does not (a node of
// an earlier release); both arrive intact, and the stats count what
// compression saved on both sides.
func TestCompressedControlFollowsHello(t *testing.T) {
	checkGoroutines(t)
	for _, tt := range []struct {
		name       string
		features   uint64
		compressed bool
	}{
		{"offered", Features, true},
		{"not offered", protocol.FeatureChunkDelta, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := pair(t, nil, nil)
			ca, cb := a.nextConn(t), b.nextConn(t)
			// Once b has a's hello, it has read everything a sent before:
			// what b counts next is the batch alone.
			helloWith(t, ca, cb, 0)
			helloWith(t, cb, ca, tt.features)
			ctx := context.Background()
			batch := smallFiles(1000)
			plain := uint64(len(mustFrame(t, batch)))
			before := cb.Stats()
			mustf(t, ca.Send(ctx, batch), "send")
			got, err := cb.Receive(ctx)
			mustf(t, err, "receive")
			if !reflect.DeepEqual(got, batch) {
				t.Fatal("the batch arrived changed")
			}
			st := cb.Stats()
			wire, raw := st.Received-before.Received, st.ReceivedRaw-before.ReceivedRaw
			if raw != plain {
				t.Fatalf("receiver counted %d raw bytes, the plain frame is %d", raw, plain)
			}
			if tt.compressed != (wire < plain/2) || !tt.compressed && wire != plain {
				t.Fatalf("%d bytes on the wire for a %d-byte frame; compressed: want %v", wire, plain, tt.compressed)
			}
			eventually(t, 5*time.Second, "sender's stats", func() bool {
				sa := ca.Stats()
				return sa.SentRaw-sa.Sent == raw-wire
			})
		})
	}
}

// TestBareChunkResponsesFollowHello: a server answers without the echoed
// hash once the requester's Hello offers it, and the data still arrives
// verified.
func TestBareChunkResponsesFollowHello(t *testing.T) {
	checkGoroutines(t)
	chunks := [][]byte{randomChunk(1024), randomChunk(1024), randomChunk(1024)}
	a, b := pair(t, nil, []nodeOpt{withChunks(newChunkStore(chunks...))})
	ca, cb := a.nextConn(t), b.nextConn(t)
	ctx := context.Background()
	fetch := func(data []byte) uint64 {
		before := ca.Stats().Received
		got, err := ca.RequestChunk(ctx, req(data))
		mustf(t, err, "request")
		if !bytes.Equal(got, data) {
			t.Fatal("received data differs")
		}
		return ca.Stats().Received - before
	}
	// Once a has b's hello, it has read everything b sent on its control
	// stream: what a counts next is chunk responses alone.
	helloWith(t, cb, ca, 0)
	full := fetch(chunks[0])
	helloWith(t, ca, cb, protocol.FeatureChunkDelta) // not offered: as before
	if again := fetch(chunks[1]); again != full {
		t.Fatalf("response of %d bytes after a hello without the feature, %d before", again, full)
	}
	helloWith(t, ca, cb, Features)
	if bare := fetch(chunks[2]); full-bare != chunker.HashSize {
		t.Fatalf("response of %d bytes once offered, %d before; want the hash (%d bytes) fewer", bare, full, chunker.HashSize)
	}
	if st := ca.Stats(); st.ChunksReceived != 3 {
		t.Fatalf("requester counted %d chunks, want 3", st.ChunksReceived)
	}
}
