package scanner

import (
	"testing"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/index"
)

var (
	m1 = chunker.Manifest{Chunks: []chunker.Ref{{Hash: chunker.Sum([]byte("a")), Length: 10}}}
	m2 = chunker.Manifest{Chunks: []chunker.Ref{{Hash: chunker.Sum([]byte("b")), Length: 10}}}
)

func fileStat() stat {
	return stat{kind: kindFile, mode: 0o644, size: 10, mtime: 1000, ctime: 1000, ino: 5, dev: 1, uid: 33, gid: 33}
}

func fileRecord() *index.Record {
	return &index.Record{Path: "f", Type: index.File, Mode: 0o644, Size: 10, MTime: 1000, Inode: 5, Device: 1,
		UID: 33, GID: 33, Manifest: m1, Version: conflict.Vector{{Node: 1, Value: 1}}, Sequence: 3}
}

func TestDecide(t *testing.T) {
	with := func(f func(*stat)) stat { s := fileStat(); f(&s); return s }
	rec := func(f func(*index.Record)) *index.Record { r := fileRecord(); f(r); return r }
	dirStat := stat{kind: kindDir, mode: 0o755, ino: 9, dev: 1, mtime: 50}
	dirRec := &index.Record{Path: "d", Type: index.Dir, Mode: 0o755, Inode: 9, Device: 1, MTime: 10}
	linkStat := stat{kind: kindSymlink, mode: 0o777, ino: 7, dev: 1, mtime: 70}
	linkRec := &index.Record{Path: "l", Type: index.Symlink, Mode: 0o777, Inode: 7, Device: 1, MTime: 70, Target: "t"}
	for _, tc := range []struct {
		name string
		st   stat
		old  *index.Record
		want action
	}{
		{"new file", fileStat(), nil, hash},
		{"unchanged file", fileStat(), fileRecord(), skip},
		{"size changed", with(func(s *stat) { s.size = 11 }), fileRecord(), hash},
		{"mtime changed", with(func(s *stat) { s.mtime = 1001 }), fileRecord(), hash},
		{"inode changed", with(func(s *stat) { s.ino = 6 }), fileRecord(), hash},
		{"device changed", with(func(s *stat) { s.dev = 2 }), fileRecord(), hash},
		{"ctime alone is not compared", with(func(s *stat) { s.ctime = 5 }), fileRecord(), skip},
		{"chmod", with(func(s *stat) { s.mode = 0o600 }), fileRecord(), version},
		{"chown", with(func(s *stat) { s.uid = 0 }), fileRecord(), version},
		{"chgrp", with(func(s *stat) { s.gid = 0 }), fileRecord(), version},
		{"chmod and write", with(func(s *stat) { s.mode = 0o600; s.size = 3 }), fileRecord(), hash},
		{"recreated after deletion", fileStat(), rec(func(r *index.Record) { r.Deleted = true; r.Manifest = chunker.Manifest{} }), hash},
		{"was a directory", fileStat(), dirRec, hash},
		{"new directory", dirStat, nil, version},
		{"unchanged directory", dirStat, dirRec, skip},
		{"directory mtime is not compared", func() stat { s := dirStat; s.mtime = 99; return s }(), dirRec, skip},
		{"directory chmod", func() stat { s := dirStat; s.mode = 0o700; return s }(), dirRec, version},
		{"directory replaced by another", func() stat { s := dirStat; s.ino = 10; return s }(), dirRec, refresh},
		{"was a file, now a directory", dirStat, fileRecord(), version},
		{"new symlink", linkStat, nil, readTarget},
		{"unchanged symlink", linkStat, linkRec, skip},
		{"symlink recreated", func() stat { s := linkStat; s.ino = 8; return s }(), linkRec, readTarget},
		{"symlink mtime", func() stat { s := linkStat; s.mtime = 71; return s }(), linkRec, readTarget},
		{"was a file, now a symlink", linkStat, fileRecord(), readTarget},
	} {
		if got := decide(tc.st, tc.old); got != tc.want {
			t.Errorf("%s: decide = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecideContent(t *testing.T) {
	with := func(f func(*stat)) stat { s := fileStat(); f(&s); return s }
	linkStat := stat{kind: kindSymlink, ino: 7, dev: 1, mtime: 70}
	linkRec := &index.Record{Path: "l", Type: index.Symlink, Inode: 7, Device: 1, MTime: 70, Target: "t"}
	for _, tc := range []struct {
		name   string
		st     stat
		m      chunker.Manifest
		target string
		old    *index.Record
		want   action
	}{
		{"new file", fileStat(), m1, "", nil, version},
		{"same content, same stat", fileStat(), m1, "", fileRecord(), skip},
		{"new content", with(func(s *stat) { s.mtime = 2000 }), m2, "", fileRecord(), version},
		{"touched: same content, new mtime", with(func(s *stat) { s.mtime = 2000 }), m1, "", fileRecord(), version},
		{"identical copy on a new inode", with(func(s *stat) { s.ino = 99 }), m1, "", fileRecord(), refresh},
		{"identical copy, new mode", with(func(s *stat) { s.ino = 99; s.mode = 0o600 }), m1, "", fileRecord(), version},
		{"after a tombstone", fileStat(), m1, "", &index.Record{Path: "f", Type: index.File, Deleted: true}, version},
		{"new symlink", linkStat, chunker.Manifest{}, "t", nil, version},
		{"same target, recreated", func() stat { s := linkStat; s.ino = 8; s.mtime = 80; return s }(), chunker.Manifest{}, "t", linkRec, refresh},
		{"new target", func() stat { s := linkStat; s.ino = 8; return s }(), chunker.Manifest{}, "u", linkRec, version},
		{"symlink chown", func() stat { s := linkStat; s.uid = 5; return s }(), chunker.Manifest{}, "t", linkRec, version},
	} {
		if got := decideContent(tc.st, tc.m, tc.target, tc.old); got != tc.want {
			t.Errorf("%s: decideContent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRacy(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ns := now.UnixNano()
	for _, tc := range []struct {
		mtime int64
		want  bool
	}{
		{ns, true},
		{ns - int64(racyWindow) + 1, true},
		{ns - int64(racyWindow), false},
		{ns - int64(time.Hour), false},
		{ns + int64(time.Millisecond), true},
		{ns + int64(time.Hour), false}, // a future mtime set on purpose, not a tick
	} {
		if got := racy(tc.mtime, now); got != tc.want {
			t.Errorf("racy(now%+v) = %v, want %v", time.Duration(tc.mtime-ns), got, tc.want)
		}
	}
}

func TestRecordAndTombstone(t *testing.T) {
	st := fileStat()
	r := record("d/f", st, m1, "")
	if r.Path != "d/f" || r.Type != index.File || r.Size != 10 || r.Mode != 0o644 || r.MTime != 1000 ||
		r.Inode != 5 || r.Device != 1 || r.UID != 33 || !r.Manifest.Equal(m1) || r.Target != "" {
		t.Errorf("record = %+v", r)
	}
	d := record("d", stat{kind: kindDir, size: 4096, mode: 0o755}, chunker.Manifest{}, "")
	if d.Size != 0 || d.Type != index.Dir {
		t.Errorf("directory record = %+v: a directory has no size", d)
	}
	l := record("l", stat{kind: kindSymlink, size: 1}, m1, "t")
	if l.Target != "t" || len(l.Manifest.Chunks) != 0 || l.Size != 0 {
		t.Errorf("symlink record = %+v", l)
	}
	ts := tombstone(fileRecord())
	ts.Version = conflict.Vector{{Node: 1, Value: 2}}
	if !ts.Deleted || ts.Size != 0 || len(ts.Manifest.Chunks) != 0 || ts.Type != index.File {
		t.Errorf("tombstone = %+v", ts)
	}
	if err := ts.Validate(); err != nil {
		t.Errorf("tombstone does not validate: %v", err)
	}
}

func TestTopmost(t *testing.T) {
	got := topmost([]string{"a/b", "c", "a", "a/b/c", "ab", "c", "a.b/x"})
	want := []string{"a", "a.b/x", "ab", "c"}
	if len(got) != len(want) {
		t.Fatalf("topmost = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("topmost = %q, want %q", got, want)
		}
	}
}
