package ignore

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// rule is one compiled pattern.
type rule struct {
	text    string // as written, for error messages and String
	negate  bool
	dirOnly bool
	// anchored rules match the whole path, component by component; the
	// others match the last component only, with base.
	anchored bool
	base     glob
	segs     []segment
}

// segment matches one path component, or with deep set any number of them.
type segment struct {
	deep bool
	glob glob
}

// globKind selects a fast path for the common shapes of a component
// pattern; general covers the rest.
type globKind uint8

const (
	literal globKind = iota // "name"
	suffix                  // "*.ext"
	prefix                  // "name*"
	anyName                 // "*"
	general
)

type glob struct {
	kind globKind
	lit  string  // for literal, suffix and prefix
	toks []token // for general
}

type tokenKind uint8

const (
	tokRune  tokenKind = iota
	tokAny             // ?
	tokStar            // *
	tokClass           // [...]
)

type token struct {
	kind  tokenKind
	r     rune
	class *class
}

// class is a bracket expression: a set of ranges and named classes,
// possibly negated.
type class struct {
	negate bool
	ranges []runeRange
	named  []func(rune) bool
}

type runeRange struct{ lo, hi rune }

func (c *class) match(r rune) bool {
	in := false
	for _, rr := range c.ranges {
		if rr.lo <= r && r <= rr.hi {
			in = true
			break
		}
	}
	if !in {
		for _, f := range c.named {
			if f(r) {
				in = true
				break
			}
		}
	}
	return in != c.negate
}

// The POSIX classes, as git's wildmatch knows them.
var namedClasses = map[string]func(rune) bool{
	"alnum":  func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) },
	"alpha":  unicode.IsLetter,
	"blank":  func(r rune) bool { return r == ' ' || r == '\t' },
	"cntrl":  unicode.IsControl,
	"digit":  func(r rune) bool { return '0' <= r && r <= '9' },
	"graph":  func(r rune) bool { return unicode.IsGraphic(r) && !unicode.IsSpace(r) },
	"lower":  unicode.IsLower,
	"print":  unicode.IsPrint,
	"punct":  unicode.IsPunct,
	"space":  unicode.IsSpace,
	"upper":  unicode.IsUpper,
	"xdigit": func(r rune) bool { return '0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F' },
}

// parse compiles one pattern. It returns ok=false for a blank pattern or a
// comment, which match nothing and are not errors.
func parse(text string) (r rule, ok bool, err error) {
	r.text = text
	p := trimTrailingSpaces(text)
	if p == "" || p[0] == '#' {
		return r, false, nil
	}
	if p[0] == '!' {
		r.negate = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if strings.Contains(p, "/") {
		r.anchored = true
		p = strings.TrimPrefix(p, "/")
	}
	if p == "" {
		return r, false, errors.New("matches nothing")
	}
	if !r.anchored {
		g, err := compileGlob(p)
		if err != nil {
			return r, false, err
		}
		r.base = g
		return r, true, nil
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		deep := len(part) >= 2 && strings.Trim(part, "*") == ""
		switch {
		case part == "":
			return r, false, errors.New("empty path component")
		case deep && i == len(parts)-1:
			// A trailing "/**" matches everything inside, not the
			// directory itself: one component, then any number.
			r.segs = append(r.segs, segment{glob: glob{kind: anyName}}, segment{deep: true})
		case deep:
			if len(r.segs) == 0 || !r.segs[len(r.segs)-1].deep {
				r.segs = append(r.segs, segment{deep: true})
			}
		default:
			g, err := compileGlob(part)
			if err != nil {
				return r, false, err
			}
			r.segs = append(r.segs, segment{glob: g})
		}
	}
	return r, true, nil
}

// trimTrailingSpaces drops trailing spaces that are not escaped by a
// backslash (which itself may be escaped).
func trimTrailingSpaces(p string) string {
	for strings.HasSuffix(p, " ") {
		// Count the backslashes before the last space: an odd number
		// escapes it.
		n := 0
		for i := len(p) - 2; i >= 0 && p[i] == '\\'; i-- {
			n++
		}
		if n%2 == 1 {
			break
		}
		p = p[:len(p)-1]
	}
	return p
}

// compileGlob compiles one component pattern (no '/').
func compileGlob(p string) (glob, error) {
	var toks []token
	for i := 0; i < len(p); {
		switch c := p[i]; c {
		case '\\':
			if i+1 == len(p) {
				return glob{}, errors.New("trailing backslash")
			}
			r, n := utf8.DecodeRuneInString(p[i+1:])
			toks = append(toks, token{kind: tokRune, r: r})
			i += 1 + n
		case '*':
			for i < len(p) && p[i] == '*' {
				i++
			}
			toks = append(toks, token{kind: tokStar})
		case '?':
			toks = append(toks, token{kind: tokAny})
			i++
		case '[':
			cl, n, err := parseClass(p[i:])
			if err != nil {
				return glob{}, err
			}
			toks = append(toks, token{kind: tokClass, class: cl})
			i += n
		default:
			r, n := utf8.DecodeRuneInString(p[i:])
			toks = append(toks, token{kind: tokRune, r: r})
			i += n
		}
	}
	return simplify(toks), nil
}

// simplify picks a fast path when the tokens have one of the common shapes.
func simplify(toks []token) glob {
	lits := func(ts []token) (string, bool) {
		var b strings.Builder
		for _, t := range ts {
			if t.kind != tokRune {
				return "", false
			}
			b.WriteRune(t.r)
		}
		return b.String(), true
	}
	if s, ok := lits(toks); ok {
		return glob{kind: literal, lit: s}
	}
	if len(toks) == 1 && toks[0].kind == tokStar {
		return glob{kind: anyName}
	}
	if toks[0].kind == tokStar {
		if s, ok := lits(toks[1:]); ok {
			return glob{kind: suffix, lit: s}
		}
	}
	if toks[len(toks)-1].kind == tokStar {
		if s, ok := lits(toks[:len(toks)-1]); ok {
			return glob{kind: prefix, lit: s}
		}
	}
	return glob{kind: general, toks: toks}
}

// parseClass parses a bracket expression at the start of p and returns it
// with the number of bytes it spans.
func parseClass(p string) (*class, int, error) {
	cl := &class{}
	i := 1
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		cl.negate = true
		i++
	}
	first := true
	for {
		if i >= len(p) {
			return nil, 0, errors.New("unterminated character class")
		}
		if p[i] == ']' && !first {
			return cl, i + 1, nil
		}
		first = false
		if strings.HasPrefix(p[i:], "[:") {
			end := strings.Index(p[i+2:], ":]")
			if end < 0 {
				return nil, 0, errors.New("unterminated character class")
			}
			name := p[i+2 : i+2+end]
			f, ok := namedClasses[name]
			if !ok {
				return nil, 0, errors.New("unknown character class [:" + name + ":]")
			}
			cl.named = append(cl.named, f)
			i += 2 + end + 2
			continue
		}
		lo, n, err := classRune(p[i:])
		if err != nil {
			return nil, 0, err
		}
		i += n
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi, n, err = classRune(p[i+1:])
			if err != nil {
				return nil, 0, err
			}
			if hi < lo {
				return nil, 0, errors.New("character range out of order")
			}
			i += 1 + n
		}
		cl.ranges = append(cl.ranges, runeRange{lo, hi})
	}
}

// classRune reads one possibly escaped character inside a bracket
// expression.
func classRune(p string) (rune, int, error) {
	if p[0] == '\\' {
		if len(p) == 1 {
			return 0, 0, errors.New("unterminated character class")
		}
		r, n := utf8.DecodeRuneInString(p[1:])
		return r, 1 + n, nil
	}
	r, n := utf8.DecodeRuneInString(p)
	return r, n, nil
}

// match reports whether name, one path component, matches g.
func (g *glob) match(name string) bool {
	switch g.kind {
	case literal:
		return name == g.lit
	case suffix:
		return strings.HasSuffix(name, g.lit)
	case prefix:
		return strings.HasPrefix(name, g.lit)
	case anyName:
		return true
	}
	return matchTokens(g.toks, name)
}

// matchTokens is the classic wildcard match with backtracking to the last
// star: a later star can absorb whatever an earlier one would have, so
// only the most recent star needs to be retried, and the cost stays
// O(len(toks)·len(s)).
func matchTokens(toks []token, s string) bool {
	ti, si := 0, 0
	starTi, starSi := -1, 0
	for si < len(s) {
		if ti < len(toks) {
			t := &toks[ti]
			if t.kind == tokStar {
				starTi, starSi = ti, si
				ti++
				continue
			}
			r, n := utf8.DecodeRuneInString(s[si:])
			if t.kind == tokAny || t.kind == tokRune && t.r == r || t.kind == tokClass && t.class.match(r) {
				ti++
				si += n
				continue
			}
		}
		if starTi < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starSi:])
		starSi += n
		si, ti = starSi, starTi+1
	}
	for ti < len(toks) && toks[ti].kind == tokStar {
		ti++
	}
	return ti == len(toks)
}

// matchSegments matches path components against segments, where a deep
// segment takes any number of components: the same last-star backtracking
// as matchTokens, one level up.
func matchSegments(segs []segment, comps []string) bool {
	si, ci := 0, 0
	starSi, starCi := -1, 0
	for ci < len(comps) {
		if si < len(segs) {
			if segs[si].deep {
				starSi, starCi = si, ci
				si++
				continue
			}
			if segs[si].glob.match(comps[ci]) {
				si++
				ci++
				continue
			}
		}
		if starSi < 0 {
			return false
		}
		starCi++
		ci, si = starCi, starSi+1
	}
	for si < len(segs) && segs[si].deep {
		si++
	}
	return si == len(segs)
}
