package ignore

import (
	"fmt"
	"strings"

	"lockstep/vfs"
)

// Matcher decides whether a path is ignored. The nil *Matcher is valid and
// ignores only lockstep's own names.
type Matcher struct {
	rules []rule
}

// maxDepth bounds the components Match keeps on the stack; deeper paths
// still work, at the cost of an allocation.
const maxDepth = 32

// New compiles patterns (see the package documentation for their syntax).
// A pattern that cannot be compiled is an error naming it.
func New(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		r, ok, err := parse(p)
		if err != nil {
			return nil, fmt.Errorf("ignore pattern %q: %w", p, err)
		}
		if ok {
			m.rules = append(m.rules, r)
		}
	}
	return m, nil
}

// Internal reports whether name, one path component, is one of lockstep's
// own temporary or staging names, which are always ignored.
func Internal(name string) bool { return strings.HasPrefix(name, vfs.TempPrefix) }

// Match reports whether relPath, slash-separated and relative to the folder
// root, is ignored; isDir says whether it names a directory. A path is
// ignored when one of its components is lockstep's own name, when one of
// its parent directories is ignored, or when the last pattern matching it
// is not negated. "" and "." (the root) are never ignored.
func (m *Matcher) Match(relPath string, isDir bool) bool {
	if relPath == "" || relPath == "." {
		return false
	}
	var buf [maxDepth]string
	comps := buf[:0]
	for rest := relPath; ; {
		i := strings.IndexByte(rest, '/')
		c := rest
		if i >= 0 {
			c = rest[:i]
		}
		if Internal(c) {
			return true
		}
		comps = append(comps, c)
		if i < 0 {
			break
		}
		rest = rest[i+1:]
	}
	if m == nil || len(m.rules) == 0 {
		return false
	}
	// Parents first: a path in an ignored directory stays ignored.
	for d := 1; d <= len(comps); d++ {
		if m.decide(comps[:d], d < len(comps) || isDir) {
			return true
		}
	}
	return false
}

// decide applies the rules to one path: the last matching rule wins.
func (m *Matcher) decide(comps []string, isDir bool) bool {
	for i := len(m.rules) - 1; i >= 0; i-- {
		r := &m.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		if r.matches(comps) {
			return !r.negate
		}
	}
	return false
}

func (r *rule) matches(comps []string) bool {
	if !r.anchored {
		return r.base.match(comps[len(comps)-1])
	}
	return matchSegments(r.segs, comps)
}

// Patterns returns the patterns in effect, as written, blank ones and
// comments left out.
func (m *Matcher) Patterns() []string {
	if m == nil {
		return nil
	}
	out := make([]string, len(m.rules))
	for i, r := range m.rules {
		out[i] = r.text
	}
	return out
}
