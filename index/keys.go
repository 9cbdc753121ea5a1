package index

import (
	"encoding/binary"
	"errors"

	"lockstep/chunker"
)

// The first byte of every key says what kind of entry it is. Folders are
// named by a 4-byte id allocated in the database (fid below), never by
// their name, so a folder's keys stay short. Numbers are big-endian, so
// keys sort numerically.
//
//	'V'                                  schema version (uvarint)
//	'n'                                  last folder id allocated (fid)
//	'N' name                             a folder's id (fid)
//	'M' fid                              folder metadata (encodeMeta)
//	'f' fid path                         a file record (appendRecord)
//	's' fid seq(8)                       the path holding that sequence
//	'c' hash(32) fid offset(8) path      a chunk location; value: length (uvarint)
//	'p' fid peer(8)                      peer progress (encodeProgress)
//	'd' fid path                         chunk locations of path still being
//	                                     rewritten; value: the old chunk list
//	'g' fid                              a reset folder's data, awaiting removal
const (
	kindSchema   = 'V'
	kindLastFID  = 'n'
	kindFolderID = 'N'
	kindMeta     = 'M'
	kindRecord   = 'f'
	kindSeq      = 's'
	kindLoc      = 'c'
	kindProgress = 'p'
	kindPending  = 'd'
	kindGarbage  = 'g'
)

// fid is a folder's numeric id inside the database.
type fid uint32

const fidLen = 4

func appendFID(b []byte, f fid) []byte { return binary.BigEndian.AppendUint32(b, uint32(f)) }

func folderIDKey(name string) []byte { return append([]byte{kindFolderID}, name...) }

func metaKey(f fid) []byte { return appendFID([]byte{kindMeta}, f) }

func garbageKey(f fid) []byte { return appendFID([]byte{kindGarbage}, f) }

// folderPrefix is the prefix of every key of kind k in folder f.
func folderPrefix(k byte, f fid) []byte { return appendFID([]byte{k}, f) }

func recordKey(f fid, path string) []byte {
	return appendRecordKey(make([]byte, 0, 1+fidLen+len(path)), f, path)
}

func appendRecordKey(b []byte, f fid, path string) []byte {
	b = append(b, kindRecord)
	b = appendFID(b, f)
	return append(b, path...)
}

// subtreePrefix is the prefix of the records strictly below dir ("" is the
// folder root).
func subtreePrefix(f fid, dir string) []byte {
	b := appendRecordKey(nil, f, dir)
	if dir != "" {
		b = append(b, '/')
	}
	return b
}

func seqKey(f fid, seq uint64) []byte {
	b := appendFID([]byte{kindSeq}, f)
	return binary.BigEndian.AppendUint64(b, seq)
}

func pendingKey(f fid, path string) []byte {
	b := appendFID([]byte{kindPending}, f)
	return append(b, path...)
}

func progressKey(f fid, peer uint64) []byte {
	b := appendFID([]byte{kindProgress}, f)
	return binary.BigEndian.AppendUint64(b, peer)
}

const locFixedLen = 1 + chunker.HashSize + fidLen + 8

func locKey(h chunker.Hash, f fid, offset int64, path string) []byte {
	b := make([]byte, 0, locFixedLen+len(path))
	b = append(b, kindLoc)
	b = append(b, h[:]...)
	b = appendFID(b, f)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	return append(b, path...)
}

func locPrefix(h chunker.Hash) []byte { return append([]byte{kindLoc}, h[:]...) }

var errBadKey = errors.New("malformed key")

// parseLocKey splits a chunk-location key.
func parseLocKey(k []byte) (h chunker.Hash, f fid, offset int64, path string, err error) {
	if len(k) <= locFixedLen || k[0] != kindLoc {
		return h, 0, 0, "", errBadKey
	}
	copy(h[:], k[1:])
	f = fid(binary.BigEndian.Uint32(k[1+chunker.HashSize:]))
	offset = int64(binary.BigEndian.Uint64(k[1+chunker.HashSize+fidLen:]))
	return h, f, offset, string(k[locFixedLen:]), nil
}

// parseFolderKey splits a key of the form kind fid rest.
func parseFolderKey(k []byte, kind byte) (fid, []byte, error) {
	if len(k) < 1+fidLen || k[0] != kind {
		return 0, nil, errBadKey
	}
	return fid(binary.BigEndian.Uint32(k[1:])), k[1+fidLen:], nil
}
