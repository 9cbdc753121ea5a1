package replica

import (
	"slices"
	"testing"
)

func TestChooseFlush(t *testing.T) {
	for _, tc := range []struct {
		files int
		want  flush
	}{
		{0, flushNone},
		{1, flushEach},
		{16, flushEach},
		{flushEachMax, flushEach},
		{flushEachMax + 1, flushFS},
		{pullBatch, flushFS},
	} {
		if got := chooseFlush(tc.files); got != tc.want {
			t.Errorf("chooseFlush(%d) = %v, want %v", tc.files, got, tc.want)
		}
	}
}

func TestFlushAfter(t *testing.T) {
	for _, tc := range []struct {
		plan    flush
		renamed bool
		entries int
		want    flush
	}{
		// Temp files renamed: flushed the way they were written for.
		{flushEach, true, 3, flushEach},
		{flushFS, true, 500, flushFS},
		// Only deletions, directories or metadata: still flushed.
		{flushNone, false, 1, flushEach},
		{flushNone, false, flushEachMax + 1, flushFS},
		// Every temp file failed: what was put in place is still flushed.
		{flushFS, false, 2, flushEach},
		{flushNone, false, 0, flushNone},
	} {
		if got := flushAfter(tc.plan, tc.renamed, tc.entries); got != tc.want {
			t.Errorf("flushAfter(%v, %v, %d) = %v, want %v", tc.plan, tc.renamed, tc.entries, got, tc.want)
		}
	}
}

func TestDirsToFlush(t *testing.T) {
	for _, tc := range []struct {
		paths []string
		want  []string
	}{
		{nil, nil},
		{[]string{"a.txt"}, []string{"."}},
		{[]string{"a.txt", "b.txt"}, []string{"."}},
		{[]string{"x/y/z.jpg"}, []string{"x/y", "x", "."}},
		{[]string{"x/y/z.jpg", "x/w.jpg", "x/y/v.jpg", "q/r"}, []string{"x/y", "x", "q", "."}},
		{[]string{"x/y"}, []string{"x", "."}},
	} {
		if got := dirsToFlush(tc.paths); !slices.Equal(got, tc.want) {
			t.Errorf("dirsToFlush(%q) = %q, want %q", tc.paths, got, tc.want)
		}
	}
}
