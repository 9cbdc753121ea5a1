package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lockstep/chunker"
	"lockstep/config"
	"lockstep/conflict"
	"lockstep/index"
	"lockstep/protocol"
	"lockstep/transport"
	"lockstep/vfs"
)

// testNode is one in-process replica of a folder, with a minimal scanner
// that records what the test writes.
type testNode struct {
	t      *testing.T
	name   string
	id     conflict.NodeID
	dir    string
	data   string
	ix     *index.Index
	fs     *vfs.Folder
	engine *Folder
	clock  *Clock
	served int64 // chunk bytes served to peers
	diffs  int   // announced chunk lists sent as differences
	// announced counts the index entries sent to peers.
	announced int
	// committed holds the latencies reported by Events.Committed.
	committed []time.Duration
	mu        sync.Mutex
}

// scanner is a test stand-in for the real scanner: it records the paths it
// is given with whole-file hashing and no quick check.
type testScanner struct{ n *testNode }

func (s testScanner) Scan(ctx context.Context) ([]string, error) { return nil, nil }
func (s testScanner) ScanPaths(ctx context.Context, paths []string) ([]string, error) {
	for _, p := range paths {
		s.n.record(p)
	}
	return nil, nil
}

func newTestNode(t *testing.T, name string, id conflict.NodeID, peers []Peer) *testNode {
	t.Helper()
	root := t.TempDir()
	n := &testNode{t: t, name: name, id: id, dir: filepath.Join(root, "folder"), data: filepath.Join(root, "data"), clock: &Clock{}}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(n.data, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n.ix = ix
	t.Cleanup(func() { ix.Close() })
	n.fs, err = vfs.Open(n.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.fs.Close() })
	n.engine, err = New(Options{
		Folder:      config.Folder{ID: "docroot", Path: n.dir, Mode: config.ModeAsync},
		Name:        name,
		Self:        id,
		Peers:       peers,
		Index:       ix,
		Clock:       n.clock,
		ConflictDir: filepath.Join(n.data, "conflicts", "docroot"),
		Logger:      testLogger(),
		Events: Events{Committed: func(d time.Duration) {
			n.mu.Lock()
			n.committed = append(n.committed, d)
			n.mu.Unlock()
		}},
	}, testScanner{n}, n.fs)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// record stores the on-disk state of rel as a new local version.
func (n *testNode) record(rel string) {
	n.t.Helper()
	old, have, err := n.ix.Get("docroot", rel)
	if err != nil {
		n.t.Fatal(err)
	}
	st, err := os.Lstat(filepath.Join(n.dir, rel))
	var r index.Record
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !have || old.Deleted {
			return
		}
		r = index.Record{Path: rel, Type: old.Type, Deleted: true}
	case err != nil:
		n.t.Fatal(err)
	default:
		r = index.Record{Path: rel, Mode: uint32(st.Mode().Perm()), MTime: st.ModTime().UnixNano()}
		sys := st.Sys().(*syscall.Stat_t)
		r.Inode, r.Device = sys.Ino, uint64(sys.Dev)
		switch {
		case st.IsDir():
			r.Type = index.Dir
		case st.Mode()&fs.ModeSymlink != 0:
			r.Type = index.Symlink
			r.Target, _ = os.Readlink(filepath.Join(n.dir, rel))
		default:
			f, err := os.Open(filepath.Join(n.dir, rel))
			if err != nil {
				n.t.Fatal(err)
			}
			m, err := chunker.Split(f, chunker.Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10})
			f.Close()
			if err != nil {
				n.t.Fatal(err)
			}
			r.Manifest, r.Size = m, m.Size()
		}
	}
	r.Version = old.Version.Update(n.id)
	r.Stamp = n.engine.Stamp(time.Now())
	r.Origin = n.id
	if err := n.ix.Put("docroot", []index.Record{r}); err != nil {
		n.t.Fatal(err)
	}
	n.engine.local.Notify()
}

func (n *testNode) write(rel string, data []byte) {
	n.t.Helper()
	p := filepath.Join(n.dir, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.record(rel)
}

func (n *testNode) read(rel string) ([]byte, error) { return os.ReadFile(filepath.Join(n.dir, rel)) }

// memConn connects two in-process engines: Send delivers to the other
// side's handlers in order, RequestChunk reads from the other side.
type memConn struct {
	from, to *testNode
	in       chan protocol.Message // to's inbound queue
	done     chan struct{}
	once     sync.Once
	fail     func(req protocol.ChunkRequest) error
	// batches makes the connection answer RequestChunks; singles and
	// batched count the requests of each kind.
	batches         bool
	singles, batchd atomic.Int64
}

func (c *memConn) Send(ctx context.Context, m protocol.Message) error {
	if u, ok := m.(*protocol.IndexUpdate); ok {
		c.from.mu.Lock()
		c.from.announced += len(u.Files)
		c.from.mu.Unlock()
		for _, fi := range u.Files {
			if fi.Delta != nil {
				c.from.mu.Lock()
				c.from.diffs++
				c.from.mu.Unlock()
			}
		}
	}
	select {
	case c.in <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return errors.New("closed")
	}
}

func (c *memConn) RequestChunk(ctx context.Context, req protocol.ChunkRequest) ([]byte, error) {
	return c.RequestChunkInto(ctx, req, nil)
}

func (c *memConn) RequestChunkInto(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
	c.singles.Add(1)
	return c.requestChunk(ctx, req, buf)
}

func (c *memConn) ChunkBatches() bool { return c.batches }

// RequestChunks answers like the transport: one verified result per chunk.
func (c *memConn) RequestChunks(ctx context.Context, folder string, chunks []protocol.BatchChunk) ([]transport.ChunkResult, error) {
	if !c.batches {
		return nil, errors.New("no batches")
	}
	c.batchd.Add(1)
	out := make([]transport.ChunkResult, len(chunks))
	for i, ch := range chunks {
		data, err := c.requestChunk(ctx, protocol.ChunkRequest{Folder: folder, Hash: ch.Hash, Length: ch.Length, Path: ch.Path, Offset: ch.Offset}, nil)
		out[i] = transport.ChunkResult{Data: data, Err: err}
	}
	return out, nil
}

// RequestChunksInto answers like the transport: each chunk in order,
// received into buf.
func (c *memConn) RequestChunksInto(ctx context.Context, folder string, chunks []protocol.BatchChunk, buf []byte, each func(int, []byte, error) error) error {
	if !c.batches {
		return errors.New("no batches")
	}
	c.batchd.Add(1)
	for i, ch := range chunks {
		data, err := c.requestChunk(ctx, protocol.ChunkRequest{Folder: folder, Hash: ch.Hash, Length: ch.Length, Path: ch.Path, Offset: ch.Offset}, buf)
		if err := each(i, data, err); err != nil {
			return err
		}
	}
	return nil
}

func (c *memConn) requestChunk(ctx context.Context, req protocol.ChunkRequest, buf []byte) ([]byte, error) {
	select {
	case <-c.done:
		return nil, errors.New("closed")
	default:
	}
	if c.fail != nil {
		if err := c.fail(req); err != nil {
			return nil, err
		}
	}
	data, err := c.to.engine.ReadChunk(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	if chunker.Sum(data) != req.Hash {
		return nil, errors.New("hash mismatch")
	}
	c.to.mu.Lock()
	c.to.served += int64(len(data))
	c.to.mu.Unlock()
	if cap(buf) >= len(data) {
		// Like the transport: the data lands in the caller's buffer.
		data = buf[:copy(buf[:len(data)], data)]
	}
	return data, nil
}

func (c *memConn) Done() <-chan struct{} { return c.done }
func (c *memConn) close()                { c.once.Do(func() { close(c.done) }) }

// link connects a and b until the returned function is called.
func link(t *testing.T, ctx context.Context, a, b *testNode) (cut func()) {
	return linkWith(t, ctx, a, b, nil)
}

// linkWith is link with a hook called on each chunk request b makes of a;
// an error it returns fails the request.
func linkWith(t *testing.T, ctx context.Context, a, b *testNode, failBA func(req protocol.ChunkRequest) error) (cut func()) {
	cut, _ = linkConns(t, ctx, a, b, failBA, false)
	return cut
}

// linkConns is linkWith that also says whether b's connection to a answers
// chunk batches, and returns that connection.
func linkConns(t *testing.T, ctx context.Context, a, b *testNode, failBA func(req protocol.ChunkRequest) error, batches bool) (cut func(), ba *memConn) {
	ab := &memConn{from: a, to: b, in: make(chan protocol.Message, 4), done: make(chan struct{})}
	ba = &memConn{from: b, to: a, in: make(chan protocol.Message, 4), done: make(chan struct{}), fail: failBA, batches: batches}
	ba.done = ab.done
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	side := func(self, other *testNode, out *memConn, in chan protocol.Message) {
		hello, err := other.engine.Hello(self.id)
		if err != nil {
			t.Error(err)
			return
		}
		sess, err := self.engine.Attach(other.id, out, hello)
		if err != nil {
			t.Error(err)
			return
		}
		sess.UseChunkDeltas()
		wg.Add(2)
		go func() {
			defer wg.Done()
			sess.Run(ctx)
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-out.done:
					return
				case m := <-in:
					switch m := m.(type) {
					case *protocol.IndexUpdate:
						if err := sess.HandleIndex(ctx, m); err != nil && ctx.Err() == nil {
							t.Error(err)
						}
					case *protocol.Confirm:
						self.engine.HandleConfirm(other.id, m)
					}
				}
			}
		}()
	}
	// a serves b over ab; what a sends arrives in ab.in, handled by b.
	side(a, b, ab, ba.in)
	side(b, a, ba, ab.in)
	var once sync.Once
	return func() {
		once.Do(func() {
			ab.close()
			cancel()
			wg.Wait()
		})
	}, ba
}

// runEngines runs the nodes' engines until the test ends.
func runEngines(t *testing.T, nodes ...*testNode) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.engine.Run(ctx, make(chan Batch))
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return ctx
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasContent(n *testNode, rel string, want []byte) func() bool {
	return func() bool {
		got, err := n.read(rel)
		return err == nil && bytes.Equal(got, want)
	}
}

func pair(t *testing.T) (a, b *testNode) {
	a = newTestNode(t, "a", 0xa, []Peer{{Name: "b", ID: 0xb}})
	b = newTestNode(t, "b", 0xb, []Peer{{Name: "a", ID: 0xa}})
	return a, b
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestReplicatesCreateModifyDelete(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	defer link(t, ctx, a, b)()

	data := randomBytes(1, 100_000)
	a.write("dir/sub/file.bin", data)
	eventually(t, "file on b", hasContent(b, "dir/sub/file.bin", data))
	st, _ := os.Stat(filepath.Join(b.dir, "dir/sub/file.bin"))
	ast, _ := os.Stat(filepath.Join(a.dir, "dir/sub/file.bin"))
	if !st.ModTime().Equal(ast.ModTime()) || st.Mode() != ast.Mode() {
		t.Fatalf("metadata differs: b %v %v, a %v %v", st.ModTime(), st.Mode(), ast.ModTime(), ast.Mode())
	}

	// A small edit reuses b's chunks: only about one chunk travels.
	a.mu.Lock()
	before := a.served
	a.mu.Unlock()
	edited := append([]byte{}, data...)
	copy(edited[50_000:], "an edit in the middle")
	a.write("dir/sub/file.bin", edited)
	eventually(t, "edit on b", hasContent(b, "dir/sub/file.bin", edited))
	a.mu.Lock()
	sent := a.served - before
	a.mu.Unlock()
	if sent > 40<<10 {
		t.Fatalf("a small edit sent %d bytes of chunks, want at most a couple of chunks", sent)
	}
	// And its chunk list went as a difference from the first version's.
	a.mu.Lock()
	diffs := a.diffs
	a.mu.Unlock()
	if diffs == 0 {
		t.Fatal("the edit's chunk list was sent in full, want a difference")
	}

	// Deleting on b reaches a. (Wait for b to have recorded the edit: a
	// delete of the older version would be concurrent with the edit, and
	// the edit would rightly win.)
	eventually(t, "edit recorded on b", func() bool {
		ra, _, _ := a.ix.Get("docroot", "dir/sub/file.bin")
		rb, _, _ := b.ix.Get("docroot", "dir/sub/file.bin")
		return rb.Version.Compare(ra.Version) == conflict.Equal
	})
	os.Remove(filepath.Join(b.dir, "dir/sub/file.bin"))
	b.record("dir/sub/file.bin")
	eventually(t, "delete on a", func() bool {
		_, err := a.read("dir/sub/file.bin")
		return errors.Is(err, fs.ErrNotExist)
	})
	// Both sides converge: nothing pending either way.
	eventually(t, "nothing pending", func() bool {
		sa, _ := a.engine.Status(ctx)
		sb, _ := b.engine.Status(ctx)
		return sa.Peers[0].PendingFiles == 0 && sb.Peers[0].PendingFiles == 0 && sa.State == "idle" && sb.State == "idle"
	})
}

func TestConcurrentEditKeepsLoser(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	a.write("page.html", []byte("from a"))
	time.Sleep(2 * time.Millisecond) // b's stamp is later: b wins
	b.write("page.html", []byte("from b, later"))
	defer link(t, ctx, a, b)()
	eventually(t, "a takes b's version", hasContent(a, "page.html", []byte("from b, later")))
	got, _ := b.read("page.html")
	if string(got) != "from b, later" {
		t.Fatalf("b holds %q, want its own winning version", got)
	}
	list, err := a.engine.Conflicts()
	if err != nil || len(list) != 1 {
		t.Fatalf("a's conflicts = %v, %v; want one", list, err)
	}
	kept, err := os.ReadFile(list[0].Copy)
	if err != nil || string(kept) != "from a" {
		t.Fatalf("kept copy = %q, %v; want a's losing content", kept, err)
	}
	if list[0].Winner != "b" || list[0].Loser != "a" {
		t.Fatalf("conflict entry = %+v", list[0])
	}
	entries, _ := os.ReadDir(a.dir)
	if len(entries) != 1 {
		t.Fatalf("the folder holds %d entries; the loser must not be kept inside it", len(entries))
	}
}

func TestUnrecordedLocalChangeIsNotOverwritten(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	cut := link(t, ctx, a, b)
	a.write("f", []byte("v1"))
	eventually(t, "v1 on b", hasContent(b, "f", []byte("v1")))
	cut()
	// b edits without the scanner having seen it yet; a edits too.
	a.write("f", []byte("a's later edit"))
	os.WriteFile(filepath.Join(b.dir, "f"), []byte("b's unrecorded edit"), 0o644)
	defer link(t, ctx, a, b)()
	// b records its edit when a's version arrives, so b's edit is the
	// later one and wins; a's edit is kept in a's conflict store. Either
	// way neither edit is lost.
	want := []byte("b's unrecorded edit")
	eventually(t, "b's edit on a", hasContent(a, "f", want))
	if got, _ := b.read("f"); !bytes.Equal(got, want) {
		t.Fatalf("b holds %q, want its own edit", got)
	}
	list, _ := a.engine.Conflicts()
	if len(list) != 1 {
		t.Fatalf("a's conflicts = %v; want a's edit kept", list)
	}
	kept, _ := os.ReadFile(list[0].Copy)
	if string(kept) != "a's later edit" {
		t.Fatalf("kept %q", kept)
	}
}

func TestCatchUpAfterDisconnect(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	cut := link(t, ctx, a, b)
	a.write("one", []byte("1"))
	eventually(t, "one on b", hasContent(b, "one", []byte("1")))
	cut()
	for i := range 50 {
		a.write(fmt.Sprintf("batch/%02d", i), []byte(fmt.Sprint(i)))
	}
	os.Symlink("one", filepath.Join(a.dir, "link"))
	a.record("link")
	defer link(t, ctx, a, b)()
	eventually(t, "batch on b", hasContent(b, "batch/49", []byte("49")))
	eventually(t, "link on b", func() bool {
		target, err := os.Readlink(filepath.Join(b.dir, "link"))
		return err == nil && target == "one"
	})
	// Resumed, not restarted: b's progress for a is past the first file.
	eventually(t, "b's progress persisted past the batch", func() bool {
		prog, _ := b.ix.Progress("docroot", a.id)
		return prog.Received >= 50
	})
}

// TestLargeAndMixedBatches: a batch larger than flushEachMax (flushed with
// syncfs), then a new file in new directories, a mode change and a
// deletion (small batches, flushed file by file) arrive whole, with their
// metadata, and leave no temp file.
func TestLargeAndMixedBatches(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a)
	n := flushEachMax + 36
	for i := range n {
		a.write(fmt.Sprintf("many/%03d", i), []byte(fmt.Sprint(i)))
	}
	// b's puller starts once every file is queued: they are applied in one
	// batch.
	cut := link(t, ctx, a, b)
	eventually(t, "the files queued on b", func() bool {
		b.engine.mu.Lock()
		defer b.engine.mu.Unlock()
		return b.engine.queue.len() == n
	})
	runEngines(t, b)
	eventually(t, "the large batch on b", func() bool {
		for i := range n {
			if !hasContent(b, fmt.Sprintf("many/%03d", i), []byte(fmt.Sprint(i)))() {
				return false
			}
		}
		return true
	})
	cut()
	a.write("deep/new/file", []byte("new"))
	if err := os.Chmod(filepath.Join(a.dir, "many/000"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.record("many/000")
	os.Remove(filepath.Join(a.dir, "many/001"))
	a.record("many/001")
	defer link(t, ctx, a, b)()
	eventually(t, "the mixed batch on b", func() bool {
		st, err := os.Stat(filepath.Join(b.dir, "many/000"))
		_, gone := os.Stat(filepath.Join(b.dir, "many/001"))
		return hasContent(b, "deep/new/file", []byte("new"))() && err == nil && st.Mode().Perm() == 0o600 && errors.Is(gone, fs.ErrNotExist)
	})
	entries, _ := os.ReadDir(filepath.Join(b.dir, "many"))
	for _, e := range entries {
		if vfs.IsTemp(e.Name()) {
			t.Errorf("temp file left on b: %s", e.Name())
		}
	}
}

func TestUnsafePathRefused(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, b)
	_ = a
	u := &protocol.IndexUpdate{Folder: "docroot", Epoch: 0, After: 0, Through: 1, Files: []protocol.FileInfo{{
		Path: ".lockstep.x.tmp", Type: protocol.File, Version: conflict.Vector{{Node: 0xa, Value: 1}}, Origin: 0xa, Sequence: 1,
	}}}
	if err := b.engine.HandleIndex(ctx, 0xa, u); err != nil {
		t.Fatal(err)
	}
	b.engine.mu.Lock()
	n := b.engine.queue.len()
	b.engine.mu.Unlock()
	if n != 0 {
		t.Fatalf("an internal temp name from a peer was queued")
	}
}

func TestCommittedThrough(t *testing.T) {
	tests := []struct {
		confirmed []uint64
		quorum    int
		want      uint64
	}{
		{[]uint64{5, 9}, 2, 9},
		{[]uint64{5, 9}, 3, 5},
		{[]uint64{5, 9}, 1, ^uint64(0)},
		{[]uint64{5}, 3, 0},
		{[]uint64{3, 7, 1, 4}, 3, 4},
	}
	for _, tt := range tests {
		if got := CommittedThrough(tt.confirmed, tt.quorum); got != tt.want {
			t.Errorf("CommittedThrough(%v, %d) = %d, want %d", tt.confirmed, tt.quorum, got, tt.want)
		}
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("LOCKSTEP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestOverwriteFetchesOnlyNewBytes: after an overwrite in the middle of a
// file, the chunks that hold old bytes cut differently are read from the
// local copy, not fetched: only the chunks that hold overwritten bytes
// travel.
func TestOverwriteFetchesOnlyNewBytes(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	defer link(t, ctx, a, b)()

	data := randomBytes(3, 400_000)
	a.write("f.bin", data)
	eventually(t, "file on b", hasContent(b, "f.bin", data))
	old, _, _ := a.ix.Get("docroot", "f.bin")

	edited := bytes.Clone(data)
	copy(edited[200_000:], randomBytes(4, 20_000))
	a.write("f.bin", edited)
	eventually(t, "edit on b", hasContent(b, "f.bin", edited))
	cur, _, _ := a.ix.Get("docroot", "f.bin")

	had := map[chunker.Ref]bool{}
	for _, c := range old.Manifest.Chunks {
		had[c] = true
	}
	var lacking, changed int64 // bytes of chunks b lacked; of those, holding edited bytes
	var off int64
	for _, c := range cur.Manifest.Chunks {
		if !had[c] {
			lacking += int64(c.Length)
			if off < 220_000 && off+int64(c.Length) > 200_000 {
				changed += int64(c.Length)
			}
		}
		off += int64(c.Length)
	}
	if lacking == changed {
		t.Fatalf("test data: every chunk b lacks holds edited bytes (%d); the test needs chunks cut differently past the edit", lacking)
	}
	if got := b.engine.Counters.BytesFetched.Load(); got-int64(len(data)) != changed {
		t.Errorf("the edit fetched %d bytes, want the %d of the chunks holding edited bytes (%d lacked)", got-int64(len(data)), changed, lacking)
	}
}

// TestChunkRequestFollowsReplacedConnection: a chunk request whose
// connection closes under it (two nodes that dialled each other at once
// keep one connection and close the other) is asked again on the peer's
// next connection instead of failing the apply into a backoff.
func TestChunkRequestFollowsReplacedConnection(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	cuts := make(chan func(), 2)
	var once sync.Once
	replaced := false
	first := linkWith(t, ctx, a, b, func(protocol.ChunkRequest) error {
		once.Do(func() {
			replaced = true
			cut := <-cuts
			cut()
			go func() { cuts <- link(t, ctx, a, b) }()
		})
		return errors.New("closed")
	})
	cuts <- first
	data := randomBytes(9, 200_000)
	a.write("f.bin", data)
	eventually(t, "file on b", hasContent(b, "f.bin", data))
	(<-cuts)()
	if !replaced {
		t.Fatal("no chunk request went through the first connection")
	}
	if n := b.engine.Counters.Retries.Load(); n != 0 {
		t.Errorf("%d applies were retried after a backoff; want the request asked again on the new connection", n)
	}
}

// A file large enough to be handed to the disk while it is assembled
// arrives whole and intact, its chunks received into reused buffers.
func TestLargeFileWrittenBackAlongTheWay(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a, b)
	defer link(t, ctx, a, b)()
	data := randomBytes(5, 2*writebackEvery+12_345)
	a.write("big.bin", data)
	eventually(t, "large file on b", hasContent(b, "big.bin", data))
}

// TestNewFileDoesNotReplaceLocalWrite: in a batch flushed with syncfs, new
// files are written unnamed and linked in (vfs.CreateNew). A file written
// locally under one of their names while the batch is fetched is not
// replaced by the link: the local edit ends up at its path on both nodes
// or kept as a conflict's loser, never lost, and no temp file is left.
func TestNewFileDoesNotReplaceLocalWrite(t *testing.T) {
	a, b := pair(t)
	ctx := runEngines(t, a)
	n := flushEachMax + 10
	for i := range n {
		a.write(fmt.Sprintf("many/%03d", i), []byte(fmt.Sprint("remote ", i)))
	}
	const taken = "many/050"
	local := []byte("written on b meanwhile")
	var once sync.Once
	defer linkWith(t, ctx, a, b, func(req protocol.ChunkRequest) error {
		if req.Path == taken {
			once.Do(func() {
				os.MkdirAll(filepath.Join(b.dir, filepath.Dir(taken)), 0o755)
				if err := os.WriteFile(filepath.Join(b.dir, taken), local, 0o644); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	})()
	// b's puller starts once every file is queued: one batch.
	eventually(t, "the files queued on b", func() bool {
		b.engine.mu.Lock()
		defer b.engine.mu.Unlock()
		return b.engine.queue.len() == n
	})
	runEngines(t, b)
	eventually(t, "the batch on b", func() bool {
		for i := range n {
			if i != 50 && !hasContent(b, fmt.Sprintf("many/%03d", i), []byte(fmt.Sprint("remote ", i)))() {
				return false
			}
		}
		return true
	})
	eventually(t, "the two versions of "+taken+" settled", func() bool {
		ga, errA := a.read(taken)
		gb, errB := b.read(taken)
		return errA == nil && errB == nil && bytes.Equal(ga, gb)
	})
	got, _ := b.read(taken)
	if !bytes.Equal(got, local) {
		// The local edit lost: it must be kept as a conflict's loser.
		kept := false
		for _, n := range []*testNode{a, b} {
			list, _ := n.engine.Conflicts()
			for _, c := range list {
				data, _ := os.ReadFile(c.Copy)
				kept = kept || bytes.Equal(data, local)
			}
		}
		if !kept {
			t.Fatalf("%s holds %q on both nodes and b's local write is nowhere", taken, got)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(b.dir, "many"))
	for _, e := range entries {
		if vfs.IsTemp(e.Name()) {
			t.Errorf("temp file left on b: %s", e.Name())
		}
	}
}
