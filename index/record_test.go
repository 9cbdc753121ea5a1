package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"lockstep/chunker"
	"lockstep/conflict"
)

func ref(s string, n uint32) chunker.Ref { return chunker.Ref{Hash: chunker.Sum([]byte(s)), Length: n} }

func vec(pairs ...uint64) conflict.Vector {
	var v conflict.Vector
	for i := 0; i+1 < len(pairs); i += 2 {
		v = append(v, conflict.Counter{Node: conflict.NodeID(pairs[i]), Value: pairs[i+1]})
	}
	return v
}

// sampleRecords covers every type and the extremes of every field.
var sampleRecords = []Record{
	{Path: "a.txt", Type: File, Size: 10, Mode: 0o644, MTime: 1_700_000_000_123_456_789, Inode: 42, Device: 2049,
		UID: 33, GID: 33, Manifest: chunker.Manifest{Chunks: []chunker.Ref{ref("x", 4), ref("y", 6)}},
		Version: vec(1, 3, 0xfedcba9876543210, 1), Stamp: conflict.MakeStamp(1_700_000_000_123, 7), Origin: 1, Sequence: 1},
	{Path: "empty", Type: File, Mode: 0o600, Version: vec(5, 1), Sequence: 2},
	{Path: "d/sub", Type: Dir, Mode: 0o2775, MTime: -1, Version: vec(1, 1), Sequence: 3},
	{Path: "link", Type: Symlink, Mode: 0o777, Target: "../outside/ünïcode", Version: vec(1, 1, 2, 2), Sequence: 4},
	{Path: "gone", Type: File, Deleted: true, Version: vec(1, 2), Sequence: 5, Origin: math.MaxUint64},
	{Path: "max", Type: File, Size: math.MaxUint32, Mode: 0o7777, MTime: math.MaxInt64, Inode: math.MaxUint64,
		Device: math.MaxUint64, UID: math.MaxUint32, GID: math.MaxUint32,
		Manifest: chunker.Manifest{Chunks: []chunker.Ref{ref("big", math.MaxUint32)}},
		Version:  vec(math.MaxUint64, math.MaxUint64), Stamp: math.MaxUint64, Sequence: math.MaxUint64},
	{Path: "min", Type: Dir, MTime: math.MinInt64, Version: vec(0, 1), Sequence: 1},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords {
		t.Run(r.Path, func(t *testing.T) {
			b := appendRecord(nil, &r)
			got, err := decodeRecord(r.Path, b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
			}
			// Stable: encoding the decoded record gives the same bytes.
			if b2 := appendRecord(nil, &got); !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
			}
		})
	}
}

// TestRecordSize pins the encoding's compactness: a small file's record
// is about 100 bytes.
func TestRecordSize(t *testing.T) {
	r := sampleRecords[0]
	r.Manifest.Chunks = r.Manifest.Chunks[:1]
	r.Size = 4
	if n := len(appendRecord(nil, &r)); n > 110 {
		t.Errorf("one-chunk record encodes to %d bytes, want at most 110", n)
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good := appendRecord(nil, &sampleRecords[0])
	mutate := func(f func(r *Record)) []byte {
		r := sampleRecords[0]
		r.Manifest.Chunks = append([]chunker.Ref(nil), r.Manifest.Chunks...)
		f(&r)
		return appendRecord(nil, &r)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version", append([]byte{9}, good[1:]...), "unknown record version 9"},
		{"type", mutate(func(r *Record) { r.Type = 3 }), "unknown type"},
		{"flags", func() []byte { b := bytes.Clone(good); b[2] = 0x80; return b }(), "unknown flags"},
		{"trailing", append(bytes.Clone(good), 0), "trailing"},
		{"sequence zero", mutate(func(r *Record) { r.Sequence = 0 }), "sequence 0"},
		{"mode", mutate(func(r *Record) { r.Mode = 0o10000 }), "mode"},
		{"duplicate node", mutate(func(r *Record) { r.Version = vec(1, 1, 1, 2) }), "not canonical"},
		{"zero counter", mutate(func(r *Record) { r.Version = vec(1, 0) }), "not canonical"},
		{"no vector", mutate(func(r *Record) { r.Version = nil }), "empty version vector"},
		{"size mismatch", mutate(func(r *Record) { r.Size = 11 }), "add up to 10"},
		{"empty chunk", mutate(func(r *Record) { r.Manifest.Chunks[0].Length = 0; r.Size = 6 }), "empty chunk"},
		{"dir with chunks", mutate(func(r *Record) { r.Type = Dir; r.Size = 0 }), "has no chunks"},
		{"dir with size", mutate(func(r *Record) { r.Type = Dir; r.Manifest.Chunks = nil }), "no size"},
		{"symlink without target", mutate(func(r *Record) { r.Type = Symlink; r.Size = 0; r.Manifest.Chunks = nil }), "without a target"},
		{"file with target", mutate(func(r *Record) { r.Target = "x" }), "only a live symlink"},
		{"tombstone with chunks", mutate(func(r *Record) { r.Deleted = true }), "has no chunks"},
		{"huge chunk count", func() []byte {
			r := sampleRecords[1]
			b := appendRecord(nil, &r)
			b[len(b)-1] = 0xff // the chunk count, now a truncated uvarint
			return append(b, 0xff, 0xff, 0x7f)
		}(), "exceeds"},
		{"huge target", func() []byte {
			r := sampleRecords[3]
			b := appendRecord(nil, &r)
			i := bytes.Index(b, []byte(r.Target))
			return append(append(bytes.Clone(b[:i-1]), binary.AppendUvarint(nil, 1<<40)...), b[i:]...)
		}(), "target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeRecord("p", tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Every truncation of a valid record fails cleanly.
	for n := range good {
		if _, err := decodeRecord("p", good[:n]); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
}

func TestDecodeRecordAtNamesKey(t *testing.T) {
	_, err := decodeRecordAt("docroot", "a/b.txt", []byte{1, 2})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not wrap ErrCorrupt", err)
	}
	for _, want := range []string{`"docroot"`, `"a/b.txt"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestValidPath(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"a", true}, {"a/b/c", true}, {"a\\b", true}, {"..a", true},
		{"", false}, {"/a", false}, {"a/", false}, {"a//b", false}, {"./a", false}, {".", false},
		{"..", false}, {"../a", false}, {"a/../b", false}, {"a\x00b", false}, {strings.Repeat("a", MaxPathLen+1), false},
	} {
		if err := ValidPath(tc.p); (err == nil) != tc.ok {
			t.Errorf("ValidPath(%q) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, fi := range []FolderInfo{
		{},
		{Epoch: 0xdeadbeefcafef00d, Sequence: 123456, Files: 10, Dirs: 2, Symlinks: 1, Deleted: 7, Bytes: 1 << 40, RootDevice: 2049},
		{Epoch: math.MaxUint64, Sequence: math.MaxUint64, Files: math.MaxInt64, Bytes: math.MaxInt64},
	} {
		got, err := decodeMeta(encodeMeta(&fi))
		if err != nil || got != fi {
			t.Errorf("meta round trip: got %+v, %v; want %+v", got, err, fi)
		}
	}
	if _, err := decodeMeta([]byte{metaVersion, 1, 2}); err == nil {
		t.Error("truncated meta decoded")
	}
	if _, err := decodeMeta(append(encodeMeta(&FolderInfo{}), 0)); err == nil {
		t.Error("meta with trailing bytes decoded")
	}
	b := encodeMeta(&FolderInfo{})
	b = append(b[:len(b)-6], binary.AppendUvarint(nil, math.MaxUint64)...) // Files > MaxInt64
	b = append(b, 0, 0, 0, 0, 0)
	if _, err := decodeMeta(b); err == nil || !strings.Contains(err.Error(), "files") {
		t.Errorf("meta with a count above MaxInt64: error %v, want one about files", err)
	}
}

func TestProgressRoundTrip(t *testing.T) {
	for _, p := range []Progress{{}, {Received: 5, PeerEpoch: 99, Confirmed: 7}, {math.MaxUint64, math.MaxUint64, math.MaxUint64}} {
		got, err := decodeProgress(encodeProgress(p))
		if err != nil || got != p {
			t.Errorf("progress round trip: got %+v, %v; want %+v", got, err, p)
		}
	}
	if _, err := decodeProgress([]byte{2}); err == nil {
		t.Error("progress of an unknown version decoded")
	}
}

func TestPendingRoundTrip(t *testing.T) {
	for _, refs := range [][]chunker.Ref{nil, {ref("a", 1)}, {ref("a", 1), ref("b", math.MaxUint32)}} {
		got, err := decodePending(encodePending(refs))
		if err != nil || !reflect.DeepEqual(got, refs) {
			t.Errorf("pending round trip: got %v, %v; want %v", got, err, refs)
		}
	}
}
