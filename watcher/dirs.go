package watcher

import "strings"

// dirSet is the set of watched directories (relative slash paths, "" for
// the root), kept as a tree so that a removed or renamed directory's whole
// subtree is found without scanning every watch.
type dirSet struct {
	children map[string]map[string]struct{} // watched dir → its watched subdirs
	inos     map[string]uint64              // watched dir → its inode when listed, if known
}

func newDirSet() *dirSet {
	return &dirSet{children: make(map[string]map[string]struct{}), inos: make(map[string]uint64)}
}

// setIno records the inode of the watched directory rel, as its listing
// found it.
func (d *dirSet) setIno(rel string, ino uint64) {
	if d.has(rel) && ino != 0 {
		d.inos[rel] = ino
	}
}

// sameDir reports whether the watched directory rel is known to be the
// directory with inode ino.
func (d *dirSet) sameDir(rel string, ino uint64) bool {
	got, ok := d.inos[rel]
	return ok && ino != 0 && got == ino
}

func (d *dirSet) has(rel string) bool {
	_, ok := d.children[rel]
	return ok
}

func (d *dirSet) len() int { return len(d.children) }

// add records rel as watched. Its parent need not be in the set (the root
// has none); if it is, rel is linked under it.
func (d *dirSet) add(rel string) {
	if d.has(rel) {
		return
	}
	d.children[rel] = nil
	if rel == "" {
		return
	}
	p := parentOf(rel)
	if kids, ok := d.children[p]; ok {
		if kids == nil {
			kids = make(map[string]struct{})
			d.children[p] = kids
		}
		kids[rel] = struct{}{}
	}
}

// removeTree drops rel and every watched directory below it, calling fn for
// each one removed (deepest first is not promised).
func (d *dirSet) removeTree(rel string, fn func(rel string)) {
	if !d.has(rel) {
		return
	}
	if rel != "" {
		if kids := d.children[parentOf(rel)]; kids != nil {
			delete(kids, rel)
		}
	}
	stack := []string{rel}
	for len(stack) > 0 {
		r := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for k := range d.children[r] {
			stack = append(stack, k)
		}
		delete(d.children, r)
		delete(d.inos, r)
		fn(r)
	}
}

// parentOf returns the parent of a relative slash path; "" for a top-level
// name.
func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}
