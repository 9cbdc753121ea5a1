package ignore

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNew checks that any pattern either compiles or fails with an error
// naming it, and that a compiled one never panics on a path and never
// un-ignores lockstep's own names.
func FuzzNew(f *testing.F) {
	for _, tc := range matchCases {
		for _, p := range tc.patterns {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		m, err := New([]string{pattern})
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(pattern)) {
				t.Fatalf("New(%q): error %q does not name the pattern", pattern, err)
			}
			return
		}
		for _, p := range []string{"a", "a/b", "a/b/c.txt", pattern, "x/" + pattern} {
			m.Match(p, false)
			m.Match(p, true)
		}
		if !m.Match("d/.lockstep-tmp", false) {
			t.Fatalf("pattern %q un-ignored a lockstep name", pattern)
		}
	})
}

// FuzzMatch compares Match with a naive reference that follows git's
// wildmatch over the whole path string, recursively, instead of the
// compiled per-component matcher.
func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		for _, p := range append(append([]string{}, tc.ignored...), tc.kept...) {
			path, isDir := splitCase(p)
			f.Add(strings.Join(tc.patterns, "\n"), path, isDir)
		}
	}
	f.Fuzz(func(t *testing.T, patterns, path string, isDir bool) {
		ps := strings.Split(patterns, "\n")
		m, err := New(ps)
		if err != nil {
			return
		}
		got := m.Match(path, isDir)
		// The reference is exponential in the stars; keep it to inputs it
		// answers quickly, and to valid UTF-8, where characters are
		// unambiguous.
		if len(patterns) > 64 || len(path) > 64 || strings.Count(patterns, "*") > 8 ||
			!utf8.ValidString(patterns) || !utf8.ValidString(path) || !cleanPath(path) {
			return
		}
		if want := refMatch(ps, path, isDir); got != want {
			t.Fatalf("patterns %q, path %q (dir=%v): Match = %v, reference = %v", ps, path, isDir, got, want)
		}
	})
}

// cleanPath reports whether path is what callers pass: relative, clean,
// slash-separated.
func cleanPath(path string) bool {
	if path == "" || path == "." {
		return true
	}
	for c := range strings.SplitSeq(path, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// refMatch is the reference: gitignore's rules applied naively.
func refMatch(patterns []string, path string, isDir bool) bool {
	if path == "" || path == "." {
		return false
	}
	comps := strings.Split(path, "/")
	for _, c := range comps {
		if strings.HasPrefix(c, ".lockstep") {
			return true
		}
	}
	for d := 1; d <= len(comps); d++ {
		sub := strings.Join(comps[:d], "/")
		dir := d < len(comps) || isDir
		ignored := false
		for _, raw := range patterns {
			p := trimTrailingSpaces(raw)
			if p == "" || p[0] == '#' {
				continue
			}
			neg := false
			if p[0] == '!' {
				neg, p = true, p[1:]
			}
			dirOnly := strings.HasSuffix(p, "/")
			p = strings.TrimRight(p, "/")
			if dirOnly && !dir {
				continue
			}
			var hit bool
			if strings.Contains(p, "/") {
				hit = wild([]rune(strings.TrimPrefix(p, "/")), []rune(sub), true)
			} else {
				hit = wild([]rune(p), []rune(comps[d-1]), true)
			}
			if hit {
				ignored = !neg
			}
		}
		if ignored {
			return true
		}
	}
	return false
}

// wild is git's wildmatch with WM_PATHNAME, written for clarity: '*' and
// '?' never match '/', and "**" between slashes (or at an end) matches
// anything, slashes included.
func wild(p, t []rune, segStart bool) bool {
	for len(p) > 0 {
		switch p[0] {
		case '\\':
			if len(p) < 2 || len(t) == 0 || t[0] != p[1] {
				return false
			}
			p, t, segStart = p[2:], t[1:], false
		case '?':
			if len(t) == 0 || t[0] == '/' {
				return false
			}
			p, t, segStart = p[1:], t[1:], false
		case '[':
			if len(t) == 0 || t[0] == '/' {
				return false
			}
			ok, n := refClass(p, t[0])
			if !ok {
				return false
			}
			p, t, segStart = p[n:], t[1:], false
		case '*':
			n := 0
			for n < len(p) && p[n] == '*' {
				n++
			}
			rest := p[n:]
			if n >= 2 && segStart && (len(rest) == 0 || rest[0] == '/') {
				if len(rest) == 0 {
					return true
				}
				if wild(rest[1:], t, true) {
					return true
				}
				for i := range t {
					if t[i] == '/' && wild(rest, t[i:], false) {
						return true
					}
				}
				return false
			}
			for i := 0; i <= len(t); i++ {
				if wild(rest, t[i:], false) {
					return true
				}
				if i < len(t) && t[i] == '/' {
					return false
				}
			}
			return false
		default:
			if len(t) == 0 || t[0] != p[0] {
				return false
			}
			p, t, segStart = p[1:], t[1:], p[0] == '/'
		}
	}
	return len(t) == 0
}

// refClass matches c against the bracket expression at the start of p and
// returns the expression's length.
func refClass(p []rune, c rune) (bool, int) {
	i := 1
	neg := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		neg = true
		i++
	}
	in := false
	for first := true; i < len(p) && (first || p[i] != ']'); first = false {
		if p[i] == '[' && i+1 < len(p) && p[i+1] == ':' {
			j := i + 2
			for !(p[j] == ':' && p[j+1] == ']') {
				j++
			}
			if namedClasses[string(p[i+2:j])](c) {
				in = true
			}
			i = j + 2
			continue
		}
		lo := p[i]
		if lo == '\\' {
			i++
			lo = p[i]
		}
		i++
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			i++
			hi = p[i]
			if hi == '\\' {
				i++
				hi = p[i]
			}
			i++
		}
		if lo <= c && c <= hi {
			in = true
		}
	}
	return in != neg, i + 1
}
