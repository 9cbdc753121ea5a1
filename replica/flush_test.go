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
