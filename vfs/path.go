package vfs

import (
	"errors"
	"fmt"
	"strings"
)

// TempPrefix begins every name lockstep creates inside a synced folder. Every
// node ignores such names, and one web server rule can deny them all.
const TempPrefix = ".lockstep"

// Limits on paths received from peers. Linux allows 255 bytes per name and
// 4096 per path; a path longer than that could never be created anyway.
const (
	MaxNameLen = 255
	MaxPathLen = 4096
)

// ErrUnsafePath is wrapped by every error CheckPath returns.
var ErrUnsafePath = errors.New("unsafe path")

// IsTemp reports whether a path's last component is one of lockstep's own
// temporary or staging names.
func IsTemp(rel string) bool {
	name := rel[strings.LastIndexByte(rel, '/')+1:]
	return strings.HasPrefix(name, TempPrefix)
}

// CheckPath reports whether rel is a path lockstep may use inside a folder:
// non-empty, relative, slash-separated and clean, with no "." or ".."
// component, no NUL or backslash, no component that is a temp name, and
// within the length limits. The folder root itself is not a valid path.
func CheckPath(rel string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrUnsafePath, rel, why) }
	switch {
	case rel == "":
		return bad("empty")
	case len(rel) > MaxPathLen:
		return bad("too long")
	case rel[0] == '/':
		return bad("absolute")
	case strings.ContainsRune(rel, 0):
		return bad("contains NUL")
	case strings.ContainsRune(rel, '\\'):
		return bad("contains a backslash")
	}
	for comp := range strings.SplitSeq(rel, "/") {
		switch {
		case comp == "":
			return bad("empty component")
		case comp == "." || comp == "..":
			return bad("contains " + comp)
		case len(comp) > MaxNameLen:
			return bad("component too long")
		case strings.HasPrefix(comp, TempPrefix):
			return bad("lockstep temporary name")
		}
	}
	return nil
}

// parent returns the directory part of rel, "." for a top-level name.
func parent(rel string) string {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "."
	}
	return rel[:i]
}
