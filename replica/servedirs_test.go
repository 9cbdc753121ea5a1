package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lockstep/chunker"
	"lockstep/protocol"
	"lockstep/vfs"
)

// smallReq asks for rel's single chunk, as a puller does.
func smallReq(t *testing.T, n *testNode, rel string) protocol.ChunkRequest {
	t.Helper()
	rec, ok, err := n.ix.Get("docroot", rel)
	if err != nil || !ok || len(rec.Manifest.Chunks) != 1 {
		t.Fatalf("record of %s: %v %v, %d chunks; want one", rel, ok, err, len(rec.Manifest.Chunks))
	}
	c := rec.Manifest.Chunks[0]
	return protocol.ChunkRequest{Folder: "docroot", Hash: c.Hash, Length: c.Length, Path: rel}
}

func TestServeSmallChunksThroughDirs(t *testing.T) {
	n := newTestNode(t, "a", 0xa, []Peer{{Name: "b", ID: 0xb}})
	f := n.engine
	content := map[string][]byte{"d/a": randomBytes(1, 900), "d/b": randomBytes(2, 700), "top": randomBytes(3, 500)}
	for rel, data := range content {
		n.write(rel, data)
	}
	ctx := context.Background()
	// Inactive: served all the same, nothing kept.
	if data, err := f.ReadChunk(ctx, smallReq(t, n, "d/a"), nil); err != nil || !bytes.Equal(data, content["d/a"]) {
		t.Fatalf("inactive: %v", err)
	}
	if got := f.servedDirs.count(); got != 0 {
		t.Fatalf("%d directories kept while inactive", got)
	}
	f.servedDirs.setActive(true)
	defer f.servedDirs.setActive(false)
	for _, rel := range []string{"d/a", "d/b", "top", "d/a"} {
		data, err := f.ReadChunk(ctx, smallReq(t, n, rel), make([]byte, 0, 4096))
		if err != nil || !bytes.Equal(data, content[rel]) {
			t.Fatalf("%s: %v", rel, err)
		}
	}
	if got := f.servedDirs.count(); got != 2 {
		t.Fatalf("%d directories kept, want 2 (the root and d)", got)
	}
	if got := f.Counters.ChunksServedUnhashed.Load(); got != 0 {
		t.Fatalf("%d small chunks served unhashed", got)
	}

	// Symlinks are refused, at the end and in a parent; the chunk is still
	// found by its hash at its real path.
	if err := os.Symlink("a", filepath.Join(n.dir, "d/l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d", filepath.Join(n.dir, "ld")); err != nil {
		t.Fatal(err)
	}
	req := smallReq(t, n, "d/a")
	for _, rel := range []string{"d/l", "ld/a"} {
		ref := chunker.Ref{Hash: req.Hash, Length: req.Length}
		if _, err := f.readSmallChunk(rel, 0, ref, nil); err == nil {
			t.Errorf("%s read through a symlink", rel)
		}
		r := req
		r.Path = rel
		if data, err := f.ReadChunk(ctx, r, nil); err != nil || !bytes.Equal(data, content["d/a"]) {
			t.Errorf("%s: not found by hash: %v", rel, err)
		}
	}
	for _, rel := range []string{"../x", "/etc/passwd", "d/../top"} {
		if _, err := f.readSmallChunk(rel, 0, chunker.Ref{Hash: req.Hash, Length: req.Length}, nil); err == nil {
			t.Errorf("%s read", rel)
		}
	}

	// Changed content is not served under the old hash.
	if err := os.WriteFile(filepath.Join(n.dir, "top"), randomBytes(9, 500), 0o644); err != nil {
		t.Fatal(err)
	}
	old := smallReq(t, n, "top")
	if _, err := f.readSmallChunk("top", 0, chunker.Ref{Hash: old.Hash, Length: old.Length}, nil); !errors.Is(err, errChanged) {
		t.Fatalf("changed file: %v, want errChanged", err)
	}
	// A directory moved away is not served from its kept handle once
	// that is servedRecheck old.
	if err := os.Rename(filepath.Join(n.dir, "d"), filepath.Join(n.dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(n.dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.now = func() time.Time { return now.Add(servedRecheck + time.Second) }
	if _, err := f.readSmallChunk("d/a", 0, chunker.Ref{Hash: req.Hash, Length: req.Length}, nil); err == nil {
		t.Fatal("d/a served from the directory moved away")
	}
	f.now = time.Now

	// Idle directories are closed by the sweep.
	f.servedDirs.sweep(time.Now().Add(time.Hour))
	if got := f.servedDirs.count(); got != 0 {
		t.Fatalf("%d directories kept after the sweep", got)
	}
}

func TestServedDirsBounded(t *testing.T) {
	n := newTestNode(t, "a", 0xa, []Peer{{Name: "b", ID: 0xb}})
	f := n.engine
	f.servedDirs.setActive(true)
	defer f.servedDirs.setActive(false)
	ctx := context.Background()
	for i := range servedDirsMax + 5 {
		rel := fmt.Sprintf("d%02d/f", i)
		data := randomBytes(uint64(i), 300)
		n.write(rel, data)
		if got, err := f.ReadChunk(ctx, smallReq(t, n, rel), nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %v", rel, err)
		}
	}
	if got := f.servedDirs.count(); got != servedDirsMax {
		t.Fatalf("%d directories kept, want %d", got, servedDirsMax)
	}
	// A directory in use when serving stops stays open until released.
	last := fmt.Sprintf("d%02d", servedDirsMax+4)
	e, err := f.servedDirs.acquire(last, time.Now(), func(string) (*vfs.Dir, error) {
		t.Fatal("a kept directory was opened again")
		return nil, nil
	})
	if err != nil || e == nil {
		t.Fatalf("acquire %s: %v", last, err)
	}
	f.servedDirs.setActive(false)
	file, err := e.d.Open("f")
	if err != nil {
		t.Fatalf("open in a directory still in use: %v", err)
	}
	file.Close()
	f.servedDirs.release(e)
	if got := f.servedDirs.count(); got != 0 {
		t.Fatalf("%d directories kept after serving stopped", got)
	}
}
