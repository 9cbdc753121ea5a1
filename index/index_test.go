package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dgraph-io/badger/v4"

	"lockstep/chunker"
	"lockstep/conflict"
)

const local conflict.NodeID = 0xa1

func openTest(t testing.TB, dir string) *Index {
	t.Helper()
	ix, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// fileRec returns a live file record whose chunks are made of the names.
func fileRec(path string, chunks ...string) Record {
	r := Record{Path: path, Type: File, Mode: 0o644, Version: vec(uint64(local), 1), Origin: local}
	for _, c := range chunks {
		r.Manifest.Chunks = append(r.Manifest.Chunks, ref(c, uint32(len(c))))
		r.Size += int64(len(c))
	}
	return r
}

func tomb(path string) Record {
	return Record{Path: path, Type: File, Deleted: true, Version: vec(uint64(local), 2), Origin: local}
}

func put(t testing.TB, ix *Index, folder string, recs ...Record) []Record {
	t.Helper()
	if err := ix.Put(folder, recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func since(t *testing.T, ix *Index, folder string, after uint64) []string {
	t.Helper()
	var out []string
	err := ix.Since(context.Background(), folder, after, func(r Record) error {
		out = append(out, fmt.Sprintf("%s@%d", r.Path, r.Sequence))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func locate(t *testing.T, ix *Index, chunk string) []string {
	t.Helper()
	locs, err := ix.Locate(chunker.Sum([]byte(chunk)), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range locs {
		out = append(out, fmt.Sprintf("%s:%s@%d+%d", l.Folder, l.Path, l.Offset, l.Length))
	}
	slices.Sort(out)
	return out
}

func TestPutGet(t *testing.T) {
	ix := openTest(t, t.TempDir())
	recs := put(t, ix, "docs", fileRec("a.txt", "hello"), Record{Path: "d", Type: Dir, Mode: 0o755, Version: vec(1, 1)},
		Record{Path: "d/l", Type: Symlink, Target: "../a.txt", Version: vec(1, 1)})
	for i, r := range recs {
		if r.Sequence != uint64(i+1) {
			t.Errorf("%s: sequence %d, want %d", r.Path, r.Sequence, i+1)
		}
		got, ok, err := ix.Get("docs", r.Path)
		if err != nil || !ok {
			t.Fatalf("Get(%q) = %v, %v", r.Path, ok, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("Get(%q):\n got %+v\nwant %+v", r.Path, got, r)
		}
	}
	if _, ok, err := ix.Get("docs", "missing"); ok || err != nil {
		t.Errorf("Get(missing) = %v, %v", ok, err)
	}
	if _, ok, err := ix.Get("nofolder", "a.txt"); ok || err != nil {
		t.Errorf("Get in an unknown folder = %v, %v", ok, err)
	}
	// Invalid records are refused before anything is written.
	bad := fileRec("b", "x")
	bad.Size = 99
	if err := ix.Put("docs", []Record{fileRec("c", "y"), bad}); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("Put of an invalid record: %v", err)
	}
	if _, ok, _ := ix.Get("docs", "c"); ok {
		t.Error("a batch with an invalid record was partly written")
	}
	checkConsistent(t, ix)
}

func TestSinceStreamsEachPathOnce(t *testing.T) {
	ix := openTest(t, t.TempDir())
	put(t, ix, "f", fileRec("a", "1"), fileRec("b", "2"), fileRec("c", "3"))
	put(t, ix, "f", fileRec("a", "4")) // a moves from 1 to 4
	put(t, ix, "f", tomb("b"))         // b moves from 2 to 5, as a tombstone
	put(t, ix, "g", fileRec("a", "x")) // another folder has its own sequence
	for _, tc := range []struct {
		after uint64
		want  []string
	}{
		{0, []string{"c@3", "a@4", "b@5"}},
		{3, []string{"a@4", "b@5"}},
		{4, []string{"b@5"}},
		{5, nil},
		{1<<64 - 1, nil},
	} {
		if got := since(t, ix, "f", tc.after); !slices.Equal(got, tc.want) {
			t.Errorf("Since(%d) = %v, want %v", tc.after, got, tc.want)
		}
	}
	if got := since(t, ix, "g", 0); !slices.Equal(got, []string{"a@1"}) {
		t.Errorf("Since in folder g = %v", got)
	}
	// The callback's error stops the stream.
	stop := errors.New("stop")
	n := 0
	err := ix.Since(context.Background(), "f", 0, func(Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Since with a failing callback: %v after %d records", err, n)
	}
	checkConsistent(t, ix)
}

// TestSinceAcrossSnapshots streams more records than one snapshot reads
// while records change underneath: every path still appears exactly once,
// in sequence order.
func TestSinceAcrossSnapshots(t *testing.T) {
	defer func(n int) { renewEvery = n }(renewEvery)
	renewEvery = 7
	ix := openTest(t, t.TempDir())
	var recs []Record
	for i := range 50 {
		recs = append(recs, fileRec(fmt.Sprintf("p%02d", i), fmt.Sprint(i)))
	}
	put(t, ix, "f", recs...)
	seen := map[string]int{}
	var last uint64
	err := ix.Since(context.Background(), "f", 0, func(r Record) error {
		seen[r.Path]++
		if r.Sequence <= last {
			return fmt.Errorf("sequence %d after %d", r.Sequence, last)
		}
		last = r.Sequence
		if r.Path == "p10" {
			// Rewrite an early path: it moves to the end of the log.
			if err := ix.Put("f", []Record{fileRec("p03", "new")}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if want := map[bool]int{true: 2, false: 1}[r.Path == "p03"]; seen[r.Path] != want {
			t.Errorf("%s seen %d times, want %d", r.Path, seen[r.Path], want)
		}
	}
}

// TestSinceOrders: Since reads the same records, in sequence order, what
// ever order the paths were recorded in (the record cursor's stepping,
// seeking and falling back to point lookups), from any starting sequence,
// across snapshots, with some paths deleted and some rewritten.
func TestSinceOrders(t *testing.T) {
	defer func(n int) { renewEvery = n }(renewEvery)
	renewEvery = 97
	const n = 1200
	orders := map[string]func(i int) int{
		"walked":      func(i int) int { return i },
		"interleaved": func(i int) int { return i%3*(n/3) + i/3 },
		"scattered":   func(i int) int { return i * 7919 % n },
		"backwards":   func(i int) int { return n - 1 - i },
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			ix := openTest(t, t.TempDir())
			for i := 0; i < n; i += 100 {
				var batch []Record
				for k := i; k < i+100; k++ {
					j := order(k)
					batch = append(batch, fileRec(fmt.Sprintf("d%d/f%04d", j/50, j), fmt.Sprint(j)))
				}
				put(t, ix, "f", batch...)
			}
			// A hole, and paths moved to the end of the log.
			put(t, ix, "f", Record{Path: "d3/f0170", Deleted: true, Version: vec(0xa1, 2), Stamp: 1 << 20, Origin: 0xa1},
				fileRec("d0/f0001", "again"), fileRec("d20/f1000", "again"))
			var all []Record
			if err := ix.Since(context.Background(), "f", 0, func(r Record) error { all = append(all, r); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(all) != n {
				t.Fatalf("%d records, want %d", len(all), n)
			}
			for i, r := range all {
				if i > 0 && r.Sequence <= all[i-1].Sequence {
					t.Fatalf("sequence %d after %d", r.Sequence, all[i-1].Sequence)
				}
				got, ok, err := ix.Get("f", r.Path)
				if err != nil || !ok || got.Sequence != r.Sequence || !slices.Equal(got.Manifest.Chunks, r.Manifest.Chunks) {
					t.Fatalf("%s: Since gave sequence %d, Get %d (%v %v)", r.Path, r.Sequence, got.Sequence, ok, err)
				}
			}
			// From the middle: the same tail.
			mid := all[n/2-1].Sequence
			var tail []string
			if err := ix.Since(context.Background(), "f", mid, func(r Record) error { tail = append(tail, r.Path); return nil }); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, r := range all[n/2:] {
				want = append(want, r.Path)
			}
			if !slices.Equal(tail, want) {
				t.Fatalf("from sequence %d: %d paths, want %d", mid, len(tail), len(want))
			}
		})
	}
}

// TestGetMany: GetMany agrees with Get for every path asked, in any
// order, with duplicates, absent runs between present paths, paths before
// the first record and after the last, a tombstone, and an unknown folder.
func TestGetMany(t *testing.T) {
	ix := openTest(t, t.TempDir())
	var recs []Record
	for i := 0; i < 300; i += 3 {
		recs = append(recs, fileRec(fmt.Sprintf("d%d/f%03d", i/30, i), fmt.Sprint(i)))
	}
	put(t, ix, "f", recs...)
	put(t, ix, "f", Record{Path: "d1/f030", Deleted: true, Version: vec(0xa1, 2), Stamp: 1 << 20, Origin: 0xa1})
	var paths []string
	for i := 299; i >= -1; i-- { // every third present, the rest absent, in reverse
		paths = append(paths, fmt.Sprintf("d%d/f%03d", i/30, i))
	}
	paths = append(paths, "", "a", "zzz", "d0/f000", "d0/f000", "d1/f030", "d1")
	got, ok, err := ix.GetMany("f", paths)
	if err != nil {
		t.Fatal(err)
	}
	present := 0
	for i, p := range paths {
		want, wantOK, err := ix.Get("f", p)
		if err != nil {
			t.Fatal(err)
		}
		if ok[i] != wantOK || got[i].Sequence != want.Sequence || got[i].Path != want.Path || got[i].Deleted != want.Deleted {
			t.Errorf("%q: GetMany %v seq %d, Get %v seq %d", p, ok[i], got[i].Sequence, wantOK, want.Sequence)
		}
		if ok[i] {
			present++
		}
	}
	if present != len(recs)+3 { // the duplicates and the tombstone again
		t.Errorf("%d found, want %d", present, len(recs)+3)
	}
	if got, ok, err := ix.GetMany("nope", []string{"a"}); err != nil || ok[0] || len(got) != 1 {
		t.Errorf("unknown folder: %v %v %v", got, ok, err)
	}
}

func TestChunkLocations(t *testing.T) {
	ix := openTest(t, t.TempDir())
	put(t, ix, "f", fileRec("x", "AAAA", "BB"), fileRec("y", "BB"))
	check := func(chunk string, want ...string) {
		t.Helper()
		if got := locate(t, ix, chunk); !slices.Equal(got, want) {
			t.Errorf("Locate(%s) = %v, want %v", chunk, got, want)
		}
		// LocateAll agrees, with other chunks asked for around it.
		h := chunker.Sum([]byte(chunk))
		all, err := ix.LocateAll([]chunker.Hash{chunker.Sum([]byte("BB")), h, chunker.Sum([]byte("none")), h}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range all[h] {
			got = append(got, fmt.Sprintf("%s:%s@%d+%d", l.Folder, l.Path, l.Offset, l.Length))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("LocateAll(%s) = %v, want %v", chunk, got, want)
		}
		if _, ok := all[chunker.Sum([]byte("none"))]; ok {
			t.Errorf("LocateAll found a chunk that is nowhere")
		}
	}
	check("AAAA", "f:x@0+4")
	check("BB", "f:x@4+2", "f:y@0+2")
	// x changes: BB moves to offset 0, AAAA is gone, CCC appears.
	put(t, ix, "f", fileRec("x", "BB", "CCC"))
	check("AAAA")
	check("BB", "f:x@0+2", "f:y@0+2")
	check("CCC", "f:x@2+3")
	// A metadata-only change keeps the locations.
	meta := fileRec("x", "BB", "CCC")
	meta.Mode = 0o600
	put(t, ix, "f", meta)
	check("CCC", "f:x@2+3")
	// Deletion removes them.
	put(t, ix, "f", tomb("x"))
	check("BB", "f:y@0+2")
	check("CCC")
	// A repeated chunk has one location per offset.
	put(t, ix, "g", fileRec("z", "DD", "DD", "DD"))
	check("DD", "g:z@0+2", "g:z@2+2", "g:z@4+2")
	locs, err := ix.Locate(chunker.Sum([]byte("DD")), 2)
	if err != nil || len(locs) != 2 {
		t.Errorf("Locate with limit 2 = %v, %v", locs, err)
	}
	all, err := ix.LocateAll([]chunker.Hash{chunker.Sum([]byte("DD")), chunker.Sum([]byte("BB"))}, 2)
	if err != nil || len(all[chunker.Sum([]byte("DD"))]) != 2 || len(all[chunker.Sum([]byte("BB"))]) != 1 {
		t.Errorf("LocateAll with limit 2 = %v, %v", all, err)
	}
	checkConsistent(t, ix)
}

func TestCountsAndTombstones(t *testing.T) {
	ix := openTest(t, t.TempDir())
	put(t, ix, "f", fileRec("a", "12345"), fileRec("b", "12"),
		Record{Path: "d", Type: Dir, Version: vec(1, 1)},
		Record{Path: "l", Type: Symlink, Target: "a", Version: vec(1, 1)})
	info, err := ix.Info("f")
	if err != nil {
		t.Fatal(err)
	}
	if info.Files != 2 || info.Dirs != 1 || info.Symlinks != 1 || info.Deleted != 0 || info.Bytes != 7 || info.Sequence != 4 {
		t.Errorf("after creation: %+v", info)
	}
	put(t, ix, "f", tomb("a"), Record{Path: "d", Type: Dir, Deleted: true, Version: vec(1, 2)}, fileRec("b", "123"))
	info, _ = ix.Info("f")
	if info.Files != 1 || info.Dirs != 0 || info.Symlinks != 1 || info.Deleted != 2 || info.Bytes != 3 || info.Sequence != 7 || info.Entries() != 2 {
		t.Errorf("after deletions: %+v", info)
	}
	rec, ok, _ := ix.Get("f", "a")
	if !ok || !rec.Deleted || rec.Sequence != 5 {
		t.Errorf("tombstone of a: %+v, %v", rec, ok)
	}
	// Forget removes tombstones only.
	if err := ix.Forget("f", []string{"b"}); !errors.Is(err, ErrNotTombstone) {
		t.Errorf("Forget of a live record: %v", err)
	}
	if err := ix.Forget("f", []string{"a", "d", "never"}); err != nil {
		t.Fatal(err)
	}
	info, _ = ix.Info("f")
	if info.Deleted != 0 || info.Files != 1 {
		t.Errorf("after Forget: %+v", info)
	}
	if got := since(t, ix, "f", 0); !slices.Equal(got, []string{"l@4", "b@7"}) {
		t.Errorf("after Forget, Since(0) = %v", got)
	}
	checkConsistent(t, ix)
}

func TestConditionalWrites(t *testing.T) {
	ix := openTest(t, t.TempDir())
	a := put(t, ix, "f", fileRec("a", "1"))[0]
	ws := []Write{
		{Record: fileRec("a", "2"), Conditional: true, IfSequence: 99}, // stale
		{Record: fileRec("b", "3"), Conditional: true, IfSequence: 0},  // new, as expected
		{Record: fileRec("c", "4"), Conditional: true, IfSequence: 5},  // expected a record; none
	}
	if err := ix.Apply("f", ws); err != nil {
		t.Fatal(err)
	}
	if !ws[0].Stale || ws[1].Stale || !ws[2].Stale {
		t.Errorf("stale flags = %v %v %v, want true false true", ws[0].Stale, ws[1].Stale, ws[2].Stale)
	}
	if got, _, _ := ix.Get("f", "a"); got.Sequence != a.Sequence {
		t.Error("a stale write changed the record")
	}
	if _, ok, _ := ix.Get("f", "c"); ok {
		t.Error("a stale write created a record")
	}
	// KeepSequence rewrites local fields without a new sequence.
	fresh := fileRec("a", "1")
	fresh.Inode = 777
	ws = []Write{{Record: fresh, KeepSequence: true}}
	if err := ix.Apply("f", ws); err != nil || ws[0].Stale {
		t.Fatalf("refresh: %v, stale=%v", err, ws[0].Stale)
	}
	got, _, _ := ix.Get("f", "a")
	if got.Inode != 777 || got.Sequence != a.Sequence {
		t.Errorf("after refresh: inode %d sequence %d, want 777 %d", got.Inode, got.Sequence, a.Sequence)
	}
	info, _ := ix.Info("f")
	if info.Sequence != 2 {
		t.Errorf("refresh used a sequence: folder at %d", info.Sequence)
	}
	other := fileRec("a", "1")
	other.Version = vec(9, 9)
	ws = []Write{{Record: other, KeepSequence: true}, {Record: fileRec("zz", "1"), KeepSequence: true}}
	if err := ix.Apply("f", ws); err != nil || !ws[0].Stale || !ws[1].Stale {
		t.Errorf("refresh of another version or of nothing: %v, stale=%v %v", err, ws[0].Stale, ws[1].Stale)
	}
	checkConsistent(t, ix)
}

func TestWalkAndChildren(t *testing.T) {
	defer func(n int) { renewEvery = n }(renewEvery)
	renewEvery = 3
	ix := openTest(t, t.TempDir())
	paths := []string{"a", "a.b", "a/x", "a/x/y", "a/x/y/z", "a/x.y", "a/z", "a0", "b", "b/c"}
	var recs []Record
	for _, p := range paths {
		recs = append(recs, Record{Path: p, Type: Dir, Version: vec(1, 1)})
	}
	put(t, ix, "f", recs...)
	collect := func(f func(context.Context, string, string, func(Record) error) error, arg string) []string {
		var out []string
		if err := f(context.Background(), "f", arg, func(r Record) error { out = append(out, r.Path); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		walk bool
		arg  string
		want []string
	}{
		{true, "", []string{"a", "a.b", "a/x", "a/x.y", "a/x/y", "a/x/y/z", "a/z", "a0", "b", "b/c"}},
		{true, "a", []string{"a", "a/x", "a/x.y", "a/x/y", "a/x/y/z", "a/z"}},
		{true, "a/x", []string{"a/x", "a/x/y", "a/x/y/z"}},
		{true, "nothing", nil},
		{false, "", []string{"a", "a.b", "a0", "b"}},
		{false, "a", []string{"a/x", "a/x.y", "a/z"}},
		{false, "a/x", []string{"a/x/y"}},
		{false, "b/c", nil},
	} {
		f, name := ix.Children, "Children"
		if tc.walk {
			f, name = ix.Walk, "Walk"
		}
		if got := collect(f, tc.arg); !slices.Equal(got, tc.want) {
			t.Errorf("%s(%q) = %v, want %v", name, tc.arg, got, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ix.Walk(ctx, "f", "", func(Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Walk with a cancelled context: %v", err)
	}
}

// TestBatchSplitsAcrossTransactions writes more records in one Apply than
// one Badger transaction holds.
func TestBatchSplitsAcrossTransactions(t *testing.T) {
	ix := openTest(t, t.TempDir())
	n := int(ix.newBudget().count / 2) // each record takes three entries or more
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = fileRec(fmt.Sprintf("dir%03d/file%06d", i%100, i), fmt.Sprintf("content %d", i))
	}
	put(t, ix, "f", recs...)
	for i, r := range recs {
		if r.Sequence != uint64(i+1) {
			t.Fatalf("record %d has sequence %d", i, r.Sequence)
		}
	}
	info, _ := ix.Info("f")
	if info.Files != int64(n) || info.Sequence != uint64(n) {
		t.Errorf("info %+v, want %d files", info, n)
	}
	checkConsistent(t, ix)
}

// TestHugeManifest stores a file with more chunks than one transaction can
// locate, changes it and deletes it.
func TestHugeManifest(t *testing.T) {
	ix := openTest(t, t.TempDir())
	n := int(ix.db.MaxBatchCount()) + 100
	big := func(seed string, n int) Record {
		r := Record{Path: "big.iso", Type: File, Version: vec(1, 1)}
		r.Manifest.Chunks = make([]chunker.Ref, n)
		for i := range r.Manifest.Chunks {
			r.Manifest.Chunks[i] = chunker.Ref{Hash: chunker.Sum(fmt.Appendf(nil, "%s%d", seed, i)), Length: 100}
		}
		r.Size = int64(n) * 100
		return r
	}
	put(t, ix, "f", fileRec("small", "s"), big("a", n), fileRec("after", "t"))
	checkConsistent(t, ix)
	if got := locate(t, ix, "s"); len(got) != 1 {
		t.Errorf("small file's chunk: %v", got)
	}
	locs, err := ix.Locate(chunker.Sum([]byte(fmt.Sprintf("a%d", n-1))), 0)
	if err != nil || len(locs) != 1 || locs[0].Offset != int64(n-1)*100 {
		t.Errorf("last chunk of the big file: %v, %v", locs, err)
	}
	put(t, ix, "f", big("b", n/2))
	checkConsistent(t, ix)
	put(t, ix, "f", tomb("big.iso"))
	checkConsistent(t, ix)
}

// TestRepairPending simulates a crash in the middle of moving a big
// file's chunk locations: Open must finish the move.
func TestRepairPending(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, ix, "f", fileRec("x", "OLD1", "OLD2"))
	f, _ := ix.lookupFolder("f")
	// The state right after the record's transaction: new record, old
	// locations, pending entry holding the old list.
	old, _, _ := ix.Get("f", "x")
	rec := fileRec("x", "NEW1", "OLD2", "NEW3")
	rec.Sequence = 2
	err = ix.db.Update(func(txn *badger.Txn) error {
		meta, _ := ix.getMeta(txn, f)
		meta.count(&old, -1)
		meta.count(&rec, 1)
		meta.Sequence = 2
		for _, o := range []op{
			{key: seqKey(f, 1), del: true},
			{key: seqKey(f, 2), val: []byte("x")},
			{key: recordKey(f, "x"), val: appendRecord(nil, &rec)},
			{key: pendingKey(f, "x"), val: encodePending(old.Manifest.Chunks)},
			{key: metaKey(f), val: encodeMeta(&meta)},
			// ...and one location already moved.
			{key: locKey(ref("NEW1", 4).Hash, f, 0, "x"), val: locValue(4)},
		} {
			if err := (&stager{txn: txn}).stage([]op{o}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix = openTest(t, dir)
	checkConsistent(t, ix)
	if got := locate(t, ix, "OLD1"); got != nil {
		t.Errorf("old chunk still located: %v", got)
	}
	if got := locate(t, ix, "NEW3"); !slices.Equal(got, []string{"f:x@8+4"}) {
		t.Errorf("new chunk: %v", got)
	}
}

func TestProgress(t *testing.T) {
	ix := openTest(t, t.TempDir())
	if p, err := ix.Progress("f", 7); err != nil || p != (Progress{}) {
		t.Errorf("progress before any: %+v, %v", p, err)
	}
	p1 := Progress{Received: 10, PeerEpoch: 99, Confirmed: 4}
	if err := ix.SetProgress("f", 7, p1); err != nil {
		t.Fatal(err)
	}
	if err := ix.SetProgress("f", 8, Progress{Confirmed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ix.SetProgress("g", 7, Progress{Confirmed: 2}); err != nil {
		t.Fatal(err)
	}
	if p, _ := ix.Progress("f", 7); p != p1 {
		t.Errorf("Progress = %+v, want %+v", p, p1)
	}
	peers, err := ix.Peers("f")
	if err != nil || len(peers) != 2 || peers[7] != p1 || peers[8].Confirmed != 1 {
		t.Errorf("Peers = %v, %v", peers, err)
	}
}

func TestResetFolder(t *testing.T) {
	ix := openTest(t, t.TempDir())
	put(t, ix, "f", fileRec("a", "AAA"), fileRec("b", "BBB"))
	put(t, ix, "other", fileRec("a", "AAA"))
	if err := ix.SetProgress("f", 3, Progress{Confirmed: 2}); err != nil {
		t.Fatal(err)
	}
	before, _ := ix.Info("f")
	oldFID, _ := ix.lookupFolder("f")
	after, err := ix.ResetFolder("f")
	if err != nil {
		t.Fatal(err)
	}
	if after.Epoch == before.Epoch || after.Epoch == 0 {
		t.Errorf("epoch not renewed: %x → %x", before.Epoch, after.Epoch)
	}
	if after.Sequence != before.Sequence || after.Entries() != 0 {
		t.Errorf("after reset: %+v", after)
	}
	if _, ok, _ := ix.Get("f", "a"); ok {
		t.Error("a record survived the reset")
	}
	if got := locate(t, ix, "AAA"); !slices.Equal(got, []string{"other:a@0+3"}) {
		t.Errorf("after reset, AAA at %v", got)
	}
	if p, _ := ix.Progress("f", 3); p != (Progress{}) {
		t.Errorf("progress survived the reset: %+v", p)
	}
	rec := put(t, ix, "f", fileRec("c", "CCC"))[0]
	if rec.Sequence != before.Sequence+1 {
		t.Errorf("first sequence after reset = %d, want %d", rec.Sequence, before.Sequence+1)
	}
	if err := ix.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Nothing keyed by the old folder id is left.
	err = ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			var f fid
			switch k[0] {
			case kindLoc:
				_, f, _, _, _ = parseLocKey(k)
			case kindRecord, kindSeq, kindMeta, kindProgress, kindPending, kindGarbage:
				f, _, _ = parseFolderKey(k, k[0])
			default:
				continue
			}
			if f == oldFID {
				t.Errorf("key %q of the reset folder survived Maintain", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, ix)
}

func TestOpenCorrupt(t *testing.T) {
	t.Run("damaged files", func(t *testing.T) {
		dir := t.TempDir()
		ix := openTest(t, dir)
		put(t, ix, "f", fileRec("a", "x"))
		ix.Close()
		if err := os.WriteFile(filepath.Join(dir, Subdir, "MANIFEST"), []byte("this is not a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Options{})
		checkCorruptErr(t, err, dir)
	})
	t.Run("foreign schema", func(t *testing.T) {
		dir := t.TempDir()
		ix := openTest(t, dir)
		if err := ix.db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte{kindSchema}, binary.AppendUvarint(nil, schemaVersion+1))
		}); err != nil {
			t.Fatal(err)
		}
		ix.Close()
		_, err := Open(dir, Options{})
		checkCorruptErr(t, err, dir)
	})
	t.Run("corrupt record", func(t *testing.T) {
		ix := openTest(t, t.TempDir())
		put(t, ix, "f", fileRec("a/b.txt", "x"))
		f, _ := ix.lookupFolder("f")
		if err := ix.db.Update(func(txn *badger.Txn) error {
			return txn.Set(recordKey(f, "a/b.txt"), []byte{1, 0, 0, 0xff})
		}); err != nil {
			t.Fatal(err)
		}
		_, _, err := ix.Get("f", "a/b.txt")
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"a/b.txt"`) || !strings.Contains(err.Error(), `"f"`) {
			t.Errorf("Get of a corrupt record: %v", err)
		}
		err = ix.Walk(context.Background(), "f", "", func(Record) error { return nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Walk over a corrupt record: %v", err)
		}
	})
}

func checkCorruptErr(t *testing.T, err error, dir string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, filepath.Join(dir, Subdir)) || !strings.Contains(msg, "lockstep resync") || strings.Contains(msg, "\n") {
		t.Errorf("Open error %q: want one line naming the directory and 'lockstep resync'", msg)
	}
}

func TestOpenTwice(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	_, err := Open(dir, Options{})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open: %v, want an in-use error", err)
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, ix, "f", fileRec("a", "x"))
	ix.Close()
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	ix = openTest(t, dir)
	if _, ok, _ := ix.Get("f", "a"); ok {
		t.Error("record survived Remove")
	}
}

// recordingHandler keeps the log records it receives.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLogLevels(t *testing.T) {
	h := &recordingHandler{}
	l := badgerLogger{slog.New(h)}
	l.Infof("compaction %d\n", 1)
	l.Debugf("detail")
	l.Warningf("disk %s\n", "slow")
	l.Errorf("broken")
	if len(h.recs) != 2 || h.recs[0].Level != slog.LevelWarn || h.recs[0].Message != "disk slow" || h.recs[1].Level != slog.LevelError {
		var got []string
		for _, r := range h.recs {
			got = append(got, r.Level.String()+" "+r.Message)
		}
		t.Errorf("logged %q, want a warning and an error only", got)
	}
	// Opening an index logs nothing at info level or above from Badger.
	h2 := &recordingHandler{}
	ix, err := Open(t.TempDir(), Options{Logger: slog.New(h2)})
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	for _, r := range h2.recs {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "op" && a.Value.String() == "badger" {
				t.Errorf("Badger logged %s %q on a clean open and close", r.Level, r.Message)
			}
			return true
		})
	}
}

func TestRunMaintainsPeriodically(t *testing.T) {
	// The compactors are never paused here: resumed inside the bubble,
	// they would belong to it.
	ix, err := Open(t.TempDir(), Options{MaintainInterval: time.Minute, idleAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	synctest.Test(t, func(t *testing.T) {
		var rounds int
		var mu sync.Mutex
		ix.maintained = func() { mu.Lock(); rounds++; mu.Unlock() }
		got := func() int {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return rounds
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- ix.Run(ctx) }()
		time.Sleep(time.Minute + time.Second)
		if n := got(); n != 1 {
			t.Errorf("%d maintenance rounds in the first minute, want 1", n)
		}
		// Nothing written: the next rounds are skipped.
		time.Sleep(2 * time.Minute)
		if n := got(); n != 1 {
			t.Errorf("%d maintenance rounds after two idle minutes, want still 1", n)
		}
		// A write (counted as Apply counts one) brings the next round back.
		ix.idle.writing()()
		time.Sleep(time.Minute)
		if n := got(); n != 2 {
			t.Errorf("%d maintenance rounds a minute after a write, want 2", n)
		}
		time.Sleep(time.Minute)
		if n := got(); n != 2 {
			t.Errorf("%d maintenance rounds after another idle minute, want still 2", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel", err)
		}
	})
}

// checkConsistent verifies the invariants of doc.go by reading every key:
// each record of a live folder has exactly its sequence entry and its
// chunk locations, nothing else exists, no move is pending, and the counts
// match the records.
func checkConsistent(t testing.TB, ix *Index) {
	t.Helper()
	if err := consistencyError(ix); err != nil {
		t.Fatal(err)
	}
}

func consistencyError(ix *Index) error {
	type folderState struct {
		info    FolderInfo
		counted FolderInfo
		seqs    map[uint64]string
	}
	live := map[fid]*folderState{}
	ix.fmu.RLock()
	for f := range ix.byID {
		live[f] = &folderState{seqs: map[uint64]string{}}
	}
	ix.fmu.RUnlock()
	wantLocs := map[string]uint32{}
	gotLocs := map[string]uint32{}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	err := ix.db.View(func(txn *badger.Txn) error {
		for f, st := range live {
			var err error
			if st.info, err = ix.getMeta(txn, f); err != nil {
				return err
			}
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.KeyCopy(nil)
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			switch k[0] {
			case kindRecord:
				f, rest, _ := parseFolderKey(k, kindRecord)
				st := live[f]
				if st == nil {
					continue
				}
				rec, err := decodeRecord(string(rest), v)
				if err != nil {
					return err
				}
				st.counted.count(&rec, 1)
				if p, ok := st.seqs[rec.Sequence]; ok {
					bad("sequence %d used by %q and %q", rec.Sequence, p, rec.Path)
				}
				st.seqs[rec.Sequence] = rec.Path
				var off int64
				for _, c := range rec.Manifest.Chunks {
					wantLocs[string(locKey(c.Hash, f, off, rec.Path))] = c.Length
					off += int64(c.Length)
				}
			case kindSeq:
				f, rest, _ := parseFolderKey(k, kindSeq)
				if live[f] == nil {
					continue
				}
				seq := binary.BigEndian.Uint64(rest)
				rec, ok, err := ix.getRecord(txn, f, string(v))
				if err != nil {
					return err
				}
				if !ok || rec.Sequence != seq {
					bad("sequence entry %d → %q: record %v with sequence %d", seq, v, ok, rec.Sequence)
				}
			case kindLoc:
				_, f, _, _, err := parseLocKey(k)
				if err != nil {
					return err
				}
				if live[f] == nil {
					continue
				}
				n, _ := binary.Uvarint(v)
				gotLocs[string(k)] = uint32(n)
			case kindPending:
				bad("pending entry %q left", k)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for f, st := range live {
		c, i := st.counted, st.info
		if c.Files != i.Files || c.Dirs != i.Dirs || c.Symlinks != i.Symlinks || c.Deleted != i.Deleted || c.Bytes != i.Bytes {
			bad("folder %d: counts %+v, records say %+v", f, i, c)
		}
		for seq := range st.seqs {
			if seq > i.Sequence {
				bad("folder %d: record with sequence %d above the folder's %d", f, seq, i.Sequence)
			}
		}
	}
	for k, n := range wantLocs {
		if m, ok := gotLocs[k]; !ok || m != n {
			_, _, off, p, _ := parseLocKey([]byte(k))
			bad("missing location %q@%d (length %d, have %v %d)", p, off, n, ok, m)
		}
	}
	for k := range gotLocs {
		if _, ok := wantLocs[k]; !ok {
			_, _, off, p, _ := parseLocKey([]byte(k))
			bad("stray location %q@%d", p, off)
		}
	}
	// Every record has a sequence entry: count both sides.
	nseq := 0
	_ = ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindSeq}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			f, _, _ := parseFolderKey(it.Item().Key(), kindSeq)
			if live[f] != nil {
				nseq++
			}
		}
		return nil
	})
	nrec := 0
	for _, st := range live {
		nrec += len(st.seqs)
	}
	if nseq != nrec {
		bad("%d sequence entries for %d records", nseq, nrec)
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
		}
		return errors.New("index inconsistent:\n" + strings.Join(problems, "\n"))
	}
	return nil
}

func TestFoldersSyncAndSize(t *testing.T) {
	dir := t.TempDir()
	ix := openTest(t, dir)
	if ix.Dir() != filepath.Join(dir, Subdir) {
		t.Errorf("Dir() = %q", ix.Dir())
	}
	a, err := ix.Info("a")
	if err != nil || a.Epoch == 0 || a.Sequence != 0 || a.Entries() != 0 {
		t.Fatalf("Info of a new folder = %+v, %v", a, err)
	}
	if again, _ := ix.Info("a"); again.Epoch != a.Epoch {
		t.Error("the epoch changed between two Info calls")
	}
	if err := ix.SetRootDevice("b", 2049); err != nil {
		t.Fatal(err)
	}
	if b, _ := ix.Info("b"); b.RootDevice != 2049 || b.Epoch == a.Epoch {
		t.Errorf("folder b: %+v", b)
	}
	got := ix.Folders()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Folders() = %v", got)
	}
	put(t, ix, "a", fileRec("x", "data"))
	if err := ix.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, err := ix.DiskSize(); err != nil || n <= 0 {
		t.Errorf("DiskSize = %d, %v", n, err)
	}
	// Everything survives a reopen, epochs included.
	ix.Close()
	ix = openTest(t, dir)
	if a2, _ := ix.Info("a"); a2.Epoch != a.Epoch || a2.Files != 1 || a2.Sequence != 1 {
		t.Errorf("after reopen: %+v (epoch was %x)", a2, a.Epoch)
	}
}
