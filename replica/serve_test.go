package replica

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"lockstep/protocol"
)

// racyTestScanner is the test scanner with a racy set.
type racyTestScanner struct {
	testScanner
	mu   sync.Mutex
	racy map[string]bool
}

func (s *racyTestScanner) Racy(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.racy[path]
}

func newServeNode(t *testing.T) (*testNode, *racyTestScanner) {
	n := newTestNode(t, "a", 0xa, []Peer{{Name: "b", ID: 0xb}})
	rs := &racyTestScanner{testScanner: testScanner{n}, racy: map[string]bool{}}
	n.engine.scan = rs
	// The test chunker's chunks are all small: serve them from their
	// records like the large chunks of real files.
	n.engine.smallChunk = 0
	return n, rs
}

// chunkReqs returns the requests for every chunk of rel's record, with
// the path and offset hints a puller sends.
func chunkReqs(t *testing.T, n *testNode, rel string) []protocol.ChunkRequest {
	t.Helper()
	rec, ok, err := n.ix.Get("docroot", rel)
	if err != nil || !ok {
		t.Fatalf("record of %s: %v %v", rel, ok, err)
	}
	var reqs []protocol.ChunkRequest
	var off uint64
	for _, c := range rec.Manifest.Chunks {
		reqs = append(reqs, protocol.ChunkRequest{Folder: "docroot", Hash: c.Hash, Length: c.Length, Path: rel, Offset: off})
		off += uint64(c.Length)
	}
	if len(reqs) < 3 {
		t.Fatalf("%s has %d chunks; the test wants several", rel, len(reqs))
	}
	return reqs
}

// setMTime gives rel an mtime of its own, as a write a tick later would.
func setMTime(t *testing.T, n *testNode, rel string, d time.Duration) {
	t.Helper()
	p := filepath.Join(n.dir, rel)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	m := st.ModTime().Add(d)
	if err := os.Chtimes(p, m, m); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, n *testNode, rel string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(n.dir, rel), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func TestServeUnhashedWhileFileUnchanged(t *testing.T) {
	n, _ := newServeNode(t)
	content := randomBytes(7, 100<<10)
	n.write("big.bin", content)
	n.engine.served.setActive(true)
	defer n.engine.served.setActive(false)
	reqs := chunkReqs(t, n, "big.bin")
	ctx := context.Background()
	for _, req := range reqs {
		data, err := n.engine.ReadChunk(ctx, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, content[req.Offset:req.Offset+uint64(req.Length)]) {
			t.Fatalf("chunk at %d: wrong data", req.Offset)
		}
	}
	if got := n.engine.Counters.ChunksServedUnhashed.Load(); got != int64(len(reqs)) {
		t.Fatalf("%d chunks served unhashed, want all %d", got, len(reqs))
	}
	if kept, open := n.engine.served.count(); kept != 1 || open != 1 {
		t.Fatalf("kept %d files, %d open; want 1, 1", kept, open)
	}
	// A wrong offset hint is no reason to trust: found elsewhere, hashed.
	wrong := reqs[1]
	wrong.Offset = reqs[2].Offset
	if data, err := n.engine.ReadChunk(ctx, wrong, nil); err != nil || !bytes.Equal(data, content[reqs[1].Offset:reqs[2].Offset]) {
		t.Fatalf("chunk with a wrong hint: %v", err)
	}
	if got := n.engine.Counters.ChunksServedUnhashed.Load(); got != int64(len(reqs)) {
		t.Fatalf("a chunk at a wrong offset was served unhashed")
	}
}

func TestServeChangedFileIsHashed(t *testing.T) {
	n, _ := newServeNode(t)
	content := randomBytes(8, 100<<10)
	n.write("big.bin", content)
	n.engine.served.setActive(true)
	defer n.engine.served.setActive(false)
	reqs := chunkReqs(t, n, "big.bin")
	ctx := context.Background()
	if _, err := n.engine.ReadChunk(ctx, reqs[0], nil); err != nil {
		t.Fatal(err)
	}
	// Changed in place, not yet scanned: the first chunk's bytes are not
	// what the record says any more, the others are.
	overwrite(t, n, "big.bin", 0, bytes.Repeat([]byte{'x'}, int(reqs[0].Length)))
	setMTime(t, n, "big.bin", time.Second)
	before := n.engine.Counters.ChunksServedUnhashed.Load()
	if data, err := n.engine.ReadChunk(ctx, reqs[0], nil); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("changed chunk served: %d bytes, err %v", len(data), err)
	}
	data, err := n.engine.ReadChunk(ctx, reqs[1], nil)
	if err != nil || !bytes.Equal(data, content[reqs[1].Offset:reqs[2].Offset]) {
		t.Fatalf("unchanged chunk of a changed file: %v", err)
	}
	if got := n.engine.Counters.ChunksServedUnhashed.Load(); got != before {
		t.Fatalf("%d chunks of a changed file served unhashed", got-before)
	}
}

func TestServeRacyFileIsHashed(t *testing.T) {
	n, rs := newServeNode(t)
	content := randomBytes(9, 100<<10)
	n.write("big.bin", content)
	rs.racy["big.bin"] = true
	n.engine.served.setActive(true)
	defer n.engine.served.setActive(false)
	reqs := chunkReqs(t, n, "big.bin")
	// Changed within the recorded mtime's tick: size and mtime as
	// recorded. Only reading tells, and a racy record must be read.
	st, err := os.Stat(filepath.Join(n.dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, n, "big.bin", 0, bytes.Repeat([]byte{'y'}, int(reqs[0].Length)))
	if err := os.Chtimes(filepath.Join(n.dir, "big.bin"), st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if data, err := n.engine.ReadChunk(ctx, reqs[0], nil); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("changed chunk of a racy file served: %d bytes, err %v", len(data), err)
	}
	if data, err := n.engine.ReadChunk(ctx, reqs[1], nil); err != nil || !bytes.Equal(data, content[reqs[1].Offset:reqs[2].Offset]) {
		t.Fatalf("unchanged chunk of a racy file: %v", err)
	}
	if got := n.engine.Counters.ChunksServedUnhashed.Load(); got != 0 {
		t.Fatalf("%d chunks of a racy file served unhashed", got)
	}
}

func TestServeReplacedFile(t *testing.T) {
	n, _ := newServeNode(t)
	old := randomBytes(10, 100<<10)
	n.write("big.bin", old)
	n.engine.served.setActive(true)
	defer n.engine.served.setActive(false)
	oldReqs := chunkReqs(t, n, "big.bin")
	ctx := context.Background()
	if _, err := n.engine.ReadChunk(ctx, oldReqs[0], nil); err != nil {
		t.Fatal(err)
	}
	// A new version renamed into place and recorded while the old one is
	// held open.
	repl := randomBytes(11, 100<<10)
	tmp := filepath.Join(n.dir, "tmp")
	if err := os.WriteFile(tmp, repl, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.dir, "big.bin")); err != nil {
		t.Fatal(err)
	}
	n.record("big.bin")
	for _, req := range chunkReqs(t, n, "big.bin") {
		data, err := n.engine.ReadChunk(ctx, req, nil)
		if err != nil || !bytes.Equal(data, repl[req.Offset:req.Offset+uint64(req.Length)]) {
			t.Fatalf("new version's chunk at %d: %v", req.Offset, err)
		}
	}
	// The old version's chunks are only served if they are what was
	// asked: from the file still open, whose bytes the old record vouches
	// for, or not at all.
	for _, req := range oldReqs {
		data, err := n.engine.ReadChunk(ctx, req, nil)
		if err == nil && !bytes.Equal(data, old[req.Offset:req.Offset+uint64(req.Length)]) {
			t.Fatalf("old version's chunk at %d: wrong data", req.Offset)
		}
	}
}

func TestServedFilesClosed(t *testing.T) {
	n, _ := newServeNode(t)
	n.write("a.bin", randomBytes(12, 64<<10))
	n.write("b.bin", randomBytes(13, 64<<10))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.engine.Run(ctx, make(chan Batch))
	}()
	ra, rb := chunkReqs(t, n, "a.bin"), chunkReqs(t, n, "b.bin")
	eventually(t, "a file served unhashed", func() bool {
		n.engine.ReadChunk(ctx, ra[0], nil)
		return n.engine.Counters.ChunksServedUnhashed.Load() > 0
	})
	if _, err := n.engine.ReadChunk(ctx, rb[0], nil); err != nil {
		t.Fatal(err)
	}
	if _, open := n.engine.served.count(); open != 2 {
		t.Fatalf("%d files open, want 2", open)
	}
	n.engine.served.sweep(time.Now().Add(time.Hour))
	if kept, _ := n.engine.served.count(); kept != 0 {
		t.Fatalf("%d files kept after they went idle", kept)
	}
	if _, err := n.engine.ReadChunk(ctx, ra[1], nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if kept, _ := n.engine.served.count(); kept != 0 {
		t.Fatalf("%d files kept after Run returned", kept)
	}
	// Served still, each chunk read and hashed.
	before := n.engine.Counters.ChunksServedUnhashed.Load()
	if _, err := n.engine.ReadChunk(context.Background(), ra[2], nil); err != nil {
		t.Fatal(err)
	}
	if n.engine.Counters.ChunksServedUnhashed.Load() != before {
		t.Fatal("served unhashed after Run returned")
	}
}

func TestServedFilesBounded(t *testing.T) {
	n, _ := newServeNode(t)
	n.engine.served.setActive(true)
	defer n.engine.served.setActive(false)
	ctx := context.Background()
	for i := range servedMax + 5 {
		rel := filepath.Join("d", string(rune('a'+i/26))+string(rune('a'+i%26)))
		n.write(rel, randomBytes(uint64(100+i), 8<<10))
		rec, _, _ := n.ix.Get("docroot", rel)
		c := rec.Manifest.Chunks[0]
		if _, err := n.engine.ReadChunk(ctx, protocol.ChunkRequest{Folder: "docroot", Hash: c.Hash, Length: c.Length, Path: rel}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if kept, _ := n.engine.served.count(); kept != servedMax {
		t.Fatalf("%d files kept, want at most %d", kept, servedMax)
	}
	if got := n.engine.Counters.ChunksServedUnhashed.Load(); got != servedMax+5 {
		t.Fatalf("%d served unhashed, want %d", got, servedMax+5)
	}
}

func TestServedChunkListsBounded(t *testing.T) {
	n, _ := newServeNode(t)
	n.write("a.bin", randomBytes(20, 100<<10))
	n.write("b.bin", randomBytes(21, 100<<10))
	n.write("big.bin", randomBytes(22, 300<<10))
	ra, rb, rbig := chunkReqs(t, n, "a.bin"), chunkReqs(t, n, "b.bin"), chunkReqs(t, n, "big.bin")
	if len(rbig) <= len(ra)+len(rb) {
		t.Fatalf("big.bin has %d chunks, a.bin and b.bin %d: the test wants more", len(rbig), len(ra)+len(rb))
	}
	s := &n.engine.served
	s.maxChunks = max(len(ra), len(rb)) + 1 // room for one of a.bin and b.bin
	s.setActive(true)
	defer s.setActive(false)
	ctx := context.Background()
	serve := func(req protocol.ChunkRequest) (unhashed bool) {
		t.Helper()
		before := n.engine.Counters.ChunksServedUnhashed.Load()
		if _, err := n.engine.ReadChunk(ctx, req, nil); err != nil {
			t.Fatal(err)
		}
		return n.engine.Counters.ChunksServedUnhashed.Load() > before
	}
	if !serve(ra[0]) {
		t.Fatal("a.bin not served from its record")
	}
	if !serve(rb[0]) {
		t.Fatal("b.bin not served from its record")
	}
	if kept, _ := s.count(); kept != 1 || s.chunks != len(rb) {
		t.Fatalf("kept %d files with %d chunks; want b.bin alone, %d", kept, s.chunks, len(rb))
	}
	if serve(rbig[0]) {
		t.Fatal("big.bin's list exceeds the bound, yet it was kept")
	}
	if _, open := s.count(); open != 0 || s.chunks != 0 {
		t.Fatalf("%d files open, %d chunks counted after big.bin; want 0, 0", open, s.chunks)
	}
	s.setActive(false)
	if s.chunks != 0 {
		t.Fatalf("%d chunks counted with nothing kept", s.chunks)
	}
}
