package index

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder: it must
// never panic, its errors must wrap ErrCorrupt and name the folder and the
// key, and what it accepts must be a valid record that encodes back to the
// same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords {
		f.Add(appendRecord(nil, &r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecordAt("docroot", "some/path", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"some/path"`) || !strings.Contains(err.Error(), `"docroot"`) {
				t.Fatalf("error %q does not wrap ErrCorrupt or name the key", err)
			}
			return
		}
		if !rec.Version.Valid() || len(rec.Version) == 0 {
			t.Fatalf("decoded vector %v is not valid", rec.Version)
		}
		if err := rec.Validate(); err != nil {
			t.Fatalf("decoded record does not validate: %v", err)
		}
		if rec.Sequence == 0 {
			t.Fatal("decoded record has sequence 0")
		}
		if again := appendRecord(nil, &rec); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
	})
}

// FuzzDecodeMeta covers the other values read from disk: folder
// metadata, peer progress and pending chunk lists (kind selects which).
func FuzzDecodeMeta(f *testing.F) {
	f.Add(byte(0), encodeMeta(&FolderInfo{Epoch: 1, Sequence: 2, Files: 3, Bytes: 4}))
	f.Add(byte(1), encodeProgress(Progress{Received: 1, PeerEpoch: 2, Confirmed: 3}))
	f.Add(byte(2), encodePending(sampleRecords[0].Manifest.Chunks))
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		var again []byte
		switch kind % 3 {
		case 0:
			fi, err := decodeMeta(b)
			if err != nil {
				return
			}
			if fi.Files < 0 || fi.Dirs < 0 || fi.Symlinks < 0 || fi.Deleted < 0 || fi.Bytes < 0 {
				t.Fatalf("negative count decoded: %+v", fi)
			}
			again = encodeMeta(&fi)
		case 1:
			p, err := decodeProgress(b)
			if err != nil {
				return
			}
			again = encodeProgress(p)
		case 2:
			refs, err := decodePending(b)
			if err != nil {
				return
			}
			again = encodePending(refs)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("kind %d: re-encoding differs:\n%x\n%x", kind%3, b, again)
		}
	})
}
