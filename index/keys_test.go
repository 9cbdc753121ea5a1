package index

import (
	"bytes"
	"slices"
	"testing"

	"lockstep/chunker"
)

func TestKeyLayout(t *testing.T) {
	h := chunker.Sum([]byte("x"))
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"record", recordKey(1, "a/b"), []byte("f\x00\x00\x00\x01a/b")},
		{"subtree of root", subtreePrefix(7, ""), []byte("f\x00\x00\x00\x07")},
		{"subtree of dir", subtreePrefix(7, "a"), []byte("f\x00\x00\x00\x07a/")},
		{"sequence", seqKey(2, 258), []byte("s\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x01\x02")},
		{"meta", metaKey(3), []byte("M\x00\x00\x00\x03")},
		{"folder id", folderIDKey("docroot"), []byte("Ndocroot")},
		{"progress", progressKey(1, 0x0102030405060708), []byte("p\x00\x00\x00\x01\x01\x02\x03\x04\x05\x06\x07\x08")},
		{"pending", pendingKey(1, "big.iso"), []byte("d\x00\x00\x00\x01big.iso")},
		{"garbage", garbageKey(9), []byte("g\x00\x00\x00\x09")},
		{"location", locKey(h, 1, 65536, "a"), append(append([]byte("c"), h[:]...), []byte("\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00a")...)},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s key = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseLocKey(t *testing.T) {
	h := chunker.Sum([]byte("y"))
	gh, f, off, path, err := parseLocKey(locKey(h, 5, 1<<40, "d/e f"))
	if err != nil || gh != h || f != 5 || off != 1<<40 || path != "d/e f" {
		t.Fatalf("parseLocKey = %v %d %d %q %v", gh.Short(), f, off, path, err)
	}
	for _, bad := range [][]byte{nil, []byte("c"), locKey(h, 5, 0, "")[:locFixedLen], append([]byte("f"), locKey(h, 1, 0, "a")[1:]...)} {
		if _, _, _, _, err := parseLocKey(bad); err == nil {
			t.Errorf("parseLocKey(%q) accepted a malformed key", bad)
		}
	}
}

// TestSequenceKeysSortNumerically: the sequence log is streamed in key
// order, which must be numeric order.
func TestSequenceKeysSortNumerically(t *testing.T) {
	seqs := []uint64{1, 2, 255, 256, 1 << 32, 1<<64 - 1}
	for i := 1; i < len(seqs); i++ {
		if bytes.Compare(seqKey(1, seqs[i-1]), seqKey(1, seqs[i])) >= 0 {
			t.Errorf("seqKey(%d) does not sort before seqKey(%d)", seqs[i-1], seqs[i])
		}
	}
	if bytes.Compare(seqKey(1, 1<<64-1), seqKey(2, 0)) >= 0 {
		t.Error("folder 1's sequences do not sort before folder 2's")
	}
}

// TestChildOrder pins the property Children relies on: in key order, a
// directory's descendants sit in one run right after the directory, and
// the key child+('/'+1) is the first key after that run.
func TestChildOrder(t *testing.T) {
	paths := []string{"a", "a.b", "a/x", "a/x/y", "a/z", "a0", "a-", "b", "a/x.y", "a/x/y/z"}
	keys := make([][]byte, len(paths))
	for i, p := range paths {
		keys[i] = recordKey(1, p)
	}
	slices.SortFunc(keys, bytes.Compare)
	skip := append(recordKey(1, "a/x"), '/'+1)
	for _, k := range keys {
		p := string(k[1+fidLen:])
		below := len(p) > 4 && p[:4] == "a/x/"
		if below && bytes.Compare(k, skip) >= 0 {
			t.Errorf("%q sorts after the skip key", p)
		}
		if !below && bytes.Compare(k, recordKey(1, "a/x/")) > 0 && bytes.Compare(k, skip) < 0 {
			t.Errorf("%q, not below a/x, sorts inside a/x's run", p)
		}
	}
}
