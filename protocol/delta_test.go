package protocol

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"lockstep/chunker"
)

// refs returns one chunk per letter of s, the same letter the same chunk.
func refs(s string) []chunker.Ref {
	var out []chunker.Ref
	for _, c := range s {
		out = append(out, chunker.Ref{Hash: chunker.Sum([]byte{byte(c)}), Length: uint32(c)})
	}
	return out
}

// steps renders d's steps: c<from>+<count> for a copy, l<count> for a list.
func steps(d ChunkDelta) string {
	var parts []string
	for _, op := range d.Ops {
		if len(op.Refs) == 0 {
			parts = append(parts, fmt.Sprintf("c%d+%d", op.From, op.Count))
		} else {
			parts = append(parts, fmt.Sprintf("l%d", len(op.Refs)))
		}
	}
	return strings.Join(parts, " ")
}

func TestDiffChunks(t *testing.T) {
	tests := []struct {
		name, base, target, want string
	}{
		{"same", "abcdefgh", "abcdefgh", "c0+8"},
		{"insert at the front", "abcdefgh", "Xbcdefgh", "l1 c1+7"},
		{"insert in the middle", "abcdefgh", "abcXYdefgh", "c0+3 l2 c3+5"},
		{"overwrite in the middle", "abcdefgh", "abcXYZgh", "c0+3 l3 c6+2"},
		{"append", "abcd", "abcdXY", "c0+4 l2"},
		{"truncate", "abcdefgh", "abcd", "c0+4"},
		{"moved block", "abcdefgh", "efghabcd", "c4+4 c0+4"},
		{"repeated chunk", "aaaa", "aaaaaa", "c0+4 c0+2"},
		{"empty base", "", "abc", "l3"},
		{"empty target", "abc", "", ""},
		{"nothing shared", "abc", "XYZ", "l3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, target := refs(tt.base), refs(tt.target)
			d := DiffChunks(base, target)
			if got := steps(d); got != tt.want {
				t.Errorf("steps %q, want %q", got, tt.want)
			}
			got, err := d.Apply(base)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, target) {
				t.Errorf("Apply gave %d chunks, want the %d of the target", len(got), len(target))
			}
		})
	}
}

func TestApplyRefuses(t *testing.T) {
	base := refs("abcd")
	hash := chunker.Manifest{Chunks: base}.Hash()
	tests := []struct {
		name  string
		d     ChunkDelta
		wants string
	}{
		{"other base", ChunkDelta{Base: chunker.Sum([]byte("x")), Ops: []DeltaOp{{From: 0, Count: 1}}}, "not the one held"},
		{"copy past the end", ChunkDelta{Base: hash, Ops: []DeltaOp{{From: 2, Count: 3}}}, "of a base of 4"},
		{"copy overflowing", ChunkDelta{Base: hash, Ops: []DeltaOp{{From: 1<<32 - 1, Count: 2}}}, "of a base of 4"},
		{"too many chunks", ChunkDelta{Base: hash, Ops: slices.Repeat([]DeltaOp{{From: 0, Count: 4}}, maxListChunks/4+1)}, "more than"},
	}
	for _, tt := range tests {
		if _, err := tt.d.Apply(base); err == nil || !strings.Contains(err.Error(), tt.wants) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.wants)
		}
	}
}

func bigFile(path string, seq uint64, letters string) FileInfo {
	f := FileInfo{Path: path, Type: File, Mode: 0o644, Version: vec(1, seq), Sequence: seq, Chunks: refs(letters)}
	for _, c := range f.Chunks {
		f.Size += uint64(c.Length)
	}
	return f
}

// TestWindowOverTheWire sends versions of files through a sender's and a
// receiver's window and the codec: the receiver rebuilds every list, and
// small edits travel as differences.
func TestWindowOverTheWire(t *testing.T) {
	send, recv := NewDeltaWindow(), NewDeltaWindow()
	versions := []struct {
		f       FileInfo
		diffed  bool
		maxSize int
	}{
		{bigFile("a", 1, "abcdefghijklmnop"), false, 0},
		{bigFile("small", 2, "abc"), false, 0},
		{bigFile("a", 3, "Xabcdefghijklmnop"), true, 120},
		{bigFile("a", 4, "XabcdefgYYhijklmnop"), true, 190},
		{bigFile("small", 5, "abcd"), false, 0},
		{bigFile("b", 6, "qrstuvwxyzABCDEF"), false, 0},
		{bigFile("b", 7, "QRSTUVWXYZ012345"), false, 0}, // nothing shared: the full list is shorter
		{FileInfo{Path: "a", Type: File, Deleted: true, Version: vec(1, 8), Sequence: 8}, false, 0},
		{bigFile("a", 9, "abcdefghijklmnop"), false, 0}, // the deletion dropped the base
	}
	for _, v := range versions {
		fi := v.f
		send.Compress(&fi)
		if (fi.Delta != nil) != v.diffed {
			t.Fatalf("%s@%d: difference %v, want %v", fi.Path, fi.Sequence, fi.Delta != nil, v.diffed)
		}
		if v.maxSize > 0 && fi.EncodedSize() > v.maxSize {
			t.Errorf("%s@%d: %d bytes on the wire, want at most %d", fi.Path, fi.Sequence, fi.EncodedSize(), v.maxSize)
		}
		u := &IndexUpdate{Folder: "f", After: fi.Sequence - 1, Through: fi.Sequence, Files: []FileInfo{fi}}
		frame, err := AppendFrame(nil, u)
		if err != nil {
			t.Fatal(err)
		}
		send.Note(&fi)
		m, err := Decode(TypeIndexUpdate, frame[HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		got := &m.(*IndexUpdate).Files[0]
		if err := recv.Resolve(got); err != nil {
			t.Fatalf("%s@%d: %v", fi.Path, fi.Sequence, err)
		}
		recv.Note(got)
		want := v.f
		if !reflect.DeepEqual(got.Chunks, want.Chunks) || got.Size != want.Size {
			t.Errorf("%s@%d: received %d chunks, want %d", fi.Path, fi.Sequence, len(got.Chunks), len(want.Chunks))
		}
	}
}

func TestWindowEvictsOldest(t *testing.T) {
	w := NewDeltaWindow()
	per := DeltaWindowRefs / 4
	long := func(path string) *FileInfo {
		f := &FileInfo{Path: path, Type: File, Chunks: make([]chunker.Ref, per)}
		return f
	}
	for _, p := range []string{"a", "b", "c", "d"} {
		w.Note(long(p))
	}
	w.Note(long("a")) // a is now the newest
	w.Note(long("e")) // b, the oldest, goes
	for p, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true, "e": true} {
		if _, _, ok := w.Base(p); ok != want {
			t.Errorf("holds %s: %v, want %v", p, ok, want)
		}
	}
	if w.refs != DeltaWindowRefs {
		t.Errorf("window counts %d refs, want %d", w.refs, DeltaWindowRefs)
	}
}

func TestResolveRefuses(t *testing.T) {
	w := NewDeltaWindow()
	base := bigFile("a", 1, "abcdefghij")
	w.Note(&base)
	stale := DiffChunks(refs("abcdefghiK"), refs("abcdefghiKL"))
	tests := []struct {
		name  string
		f     FileInfo
		wants string
	}{
		{"no base", FileInfo{Path: "b", Type: File, Size: 1, Delta: &ChunkDelta{}}, "no list of this path"},
		{"other base", FileInfo{Path: "a", Type: File, Delta: &stale}, "not the one held"},
		{"wrong size", FileInfo{Path: "a", Type: File, Size: 1, Version: vec(1, 2), Sequence: 2,
			Delta: &ChunkDelta{Base: chunker.Manifest{Chunks: base.Chunks}.Hash(), Ops: []DeltaOp{{From: 0, Count: 2}}}}, "add up to"},
	}
	for _, tt := range tests {
		f := tt.f
		if err := w.Resolve(&f); err == nil || !strings.Contains(err.Error(), tt.wants) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.wants)
		}
	}
}

func TestDecodeRefusesBadDelta(t *testing.T) {
	f := bigFile("a", 1, "abcdefghij")
	f.Chunks = nil
	tests := []struct {
		name  string
		d     ChunkDelta
		wants string
	}{
		{"empty step", ChunkDelta{Ops: []DeltaOp{{}}}, "empty step"},
		{"zero length", ChunkDelta{Ops: []DeltaOp{{Refs: []chunker.Ref{{}}}}}, "length 0"},
	}
	for _, tt := range tests {
		f.Delta = &tt.d
		u := &IndexUpdate{Folder: "f", Through: 1, Files: []FileInfo{f}}
		_, err := Decode(TypeIndexUpdate, u.appendPayload(nil))
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.wants) {
			t.Errorf("%s: %v, want a protocol error containing %q", tt.name, err, tt.wants)
		}
		if _, err := AppendFrame(nil, u); err == nil {
			t.Errorf("%s: encoded", tt.name)
		}
	}
}

// FuzzChunkDelta decodes arbitrary bytes as a difference and applies what
// decodes to a fixed base: never a panic, and a result that re-encodes to
// the same list.
func FuzzChunkDelta(f *testing.F) {
	base := refs("abcdefghijklmnopqrstuvwxyz")
	for _, target := range []string{"abcdefghijklmnopqrstuvwxyz", "Xbcdefghijklmnopqrstuvwxyz", "abcXYZ", ""} {
		d := DiffChunks(base, refs(target))
		f.Add(d.appendTo(nil))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := decoder{b: in}
		cd := d.chunkDelta()
		if d.err != nil {
			return
		}
		if err := cd.validate(); err != nil {
			return
		}
		cd.Base = chunker.Manifest{Chunks: base}.Hash()
		got, err := cd.Apply(base)
		if err != nil {
			return
		}
		re := DiffChunks(base, got)
		again, err := re.Apply(base)
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("re-encoded difference gives %d chunks (%v), want %d", len(again), err, len(got))
		}
	})
}
