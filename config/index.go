package config

import (
	"cmp"
	"reflect"
	"slices"
	"strconv"

	"github.com/pelletier/go-toml/v2/unstable"
)

// index knows where every key of the document is, and checks each key and
// value against the schema. go-toml decodes the document but reports a line
// only for its own errors, matches keys case-insensitively and names keys
// without array indexes; the index gives a line to every key lockstep
// checks after decoding ("the 3rd [[folders]] table's id"), rejects keys
// outside the schema exactly, and names them with indexes. It is built from
// go-toml's syntax tree, which follows TOML's rules for table headers,
// dotted keys, inline tables and arrays of tables; what TOML itself forbids
// (redefinitions, duplicate keys, out-of-range numbers) is left to the
// decoder to report.
type index struct {
	lineStarts []int          // byte offset at which each line starts
	lines      map[string]int // key path → line of its first mention
	spots      []spot         // keys, values and array elements, by offset
	arrays     map[string]int // array of tables path → elements so far
	bad        *badSpot       // the first key or value outside the schema
}

// spot is a place in the document and the key path it belongs to.
type spot struct {
	off     int
	path    string // with array indexes: folders[1].peers[0]
	pattern string // without: folders.peers[]
}

type badSpot struct {
	spot
	msg string
}

func buildIndex(data []byte) *index {
	ix := &index{
		lineStarts: []int{0},
		lines:      map[string]int{},
		arrays:     map[string]int{},
	}
	for i, c := range data {
		if c == '\n' {
			ix.lineStarts = append(ix.lineStarts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table, pattern string // the current table header's path
	// A syntax error ends the walk; the decoder reports it.
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table, pattern = ix.header(e)
		case unstable.KeyValue:
			ix.keyValue(table, pattern, e)
		}
	}
	// Already in document order; sorting keeps spotAt correct should the
	// walk ever visit a value before its key.
	slices.SortStableFunc(ix.spots, func(a, b spot) int { return cmp.Compare(a.off, b.off) })
	return ix
}

// header handles [a.b] and [[a.b]] and returns the table's path and
// pattern. Each part of a header that names an array of tables refers to
// its last element so far, as in TOML.
func (ix *index) header(e *unstable.Node) (path, pattern string) {
	array := e.Kind == unstable.ArrayTable
	first := -1
	it := e.Key()
	for it.Next() {
		k := it.Node()
		off := int(k.Raw.Offset)
		if first < 0 {
			first = off
		}
		part := keyPart(string(k.Data))
		path, pattern = join(path, part), join(pattern, part)
		last := it.IsLast()
		switch {
		case !last:
			ix.checkParent(spot{off, path, pattern})
		case array:
			ix.check(spot{off, path, pattern}, unstable.ArrayTable)
		default:
			ix.check(spot{off, path, pattern}, unstable.Table)
		}
		n, isArray := ix.arrays[path]
		switch {
		case array && last:
			ix.arrays[path] = n + 1
			path = indexed(path, n)
		case isArray:
			path = indexed(path, n-1)
		}
		ix.mention(path, off)
	}
	ix.spots = append(ix.spots, spot{first, path, pattern})
	return path, pattern
}

// keyValue handles a key = value expression under the table at path.
func (ix *index) keyValue(path, pattern string, e *unstable.Node) {
	first := -1
	it := e.Key()
	for it.Next() {
		k := it.Node()
		off := int(k.Raw.Offset)
		if first < 0 {
			first = off
		}
		part := keyPart(string(k.Data))
		path, pattern = join(path, part), join(pattern, part)
		if !it.IsLast() {
			ix.checkParent(spot{off, path, pattern})
		}
		ix.mention(path, off)
	}
	s := spot{first, path, pattern}
	ix.spots = append(ix.spots, s)
	v := e.Value()
	if _, known := schema[pattern]; known {
		if off, ok := offset(v); ok {
			s.off = off // a wrong type is reported at the value
		}
	}
	ix.check(s, v.Kind)
	ix.value(path, pattern, v)
}

// value records where the parts of a value are, and checks them: the keys
// of an inline table, the elements of an array.
func (ix *index) value(path, pattern string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				ix.keyValue(path, pattern, kv)
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			el := it.Node()
			if el.Kind == unstable.Comment {
				continue
			}
			s := spot{path: indexed(path, i), pattern: pattern + "[]"}
			i++
			if off, ok := offset(el); ok {
				s.off = off
				ix.mention(s.path, off)
				ix.spots = append(ix.spots, s)
				ix.check(s, el.Kind)
			}
			switch el.Kind {
			case unstable.InlineTable:
				// The keys of a table in an array: folders.id.
				ix.value(s.path, pattern, el)
			case unstable.Array:
				ix.value(s.path, s.pattern, el)
			}
		}
	default:
		ix.spots = append(ix.spots, spot{int(v.Raw.Offset), path, pattern})
	}
}

// check records the first key outside the schema, or the first key or
// element whose value is not of the kind the schema wants. Keys are
// compared exactly: TOML keys are case-sensitive, and so is lockstep.
func (ix *index) check(s spot, got unstable.Kind) {
	if ix.bad != nil {
		return
	}
	want, ok := schema[s.pattern]
	switch {
	case !ok:
		ix.bad = &badSpot{s, "unknown key"}
	case !fits(want, got):
		ix.bad = &badSpot{s, "must be " + describe(want) + ", not " + describeKind(got)}
	}
}

// checkParent checks a key that a header or a dotted key goes through on
// the way to another key: a table, or an array of tables whose last
// element a header refers to.
func (ix *index) checkParent(s spot) {
	if want, ok := schema[s.pattern]; ok && want.Kind() == reflect.Slice && want.Elem().Kind() == reflect.Struct {
		return
	}
	ix.check(s, unstable.Table)
}

// fits reports whether a TOML value, table or array of tables of kind k
// decodes into t, as go-toml would decode it.
func fits(t reflect.Type, k unstable.Kind) bool {
	switch t.Kind() {
	case reflect.String:
		return k == unstable.String
	case reflect.Int:
		return k == unstable.Integer
	case reflect.Float64:
		return k == unstable.Float || k == unstable.Integer
	case reflect.Struct:
		return k == unstable.Table || k == unstable.InlineTable
	case reflect.Slice:
		return k == unstable.Array || k == unstable.ArrayTable && t.Elem().Kind() == reflect.Struct
	}
	return false
}

func describeKind(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.Table, unstable.InlineTable:
		return "a table"
	case unstable.ArrayTable:
		return "an array of tables"
	case unstable.LocalDate:
		return "a date"
	case unstable.LocalTime:
		return "a time"
	}
	return "a date-time"
}

// offset returns where a value starts. Array nodes carry no range; their
// first element stands in for them.
func offset(v *unstable.Node) (int, bool) {
	if v.Kind != unstable.Array {
		return int(v.Raw.Offset), true
	}
	it := v.Children()
	for it.Next() {
		if el := it.Node(); el.Kind != unstable.Comment {
			return offset(el)
		}
	}
	return 0, false
}

func indexed(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func (ix *index) mention(path string, off int) {
	if _, ok := ix.lines[path]; !ok {
		ix.lines[path] = ix.lineOf(off)
	}
}

// lineOf returns the 1-based line holding byte offset off.
func (ix *index) lineOf(off int) int {
	i, found := slices.BinarySearch(ix.lineStarts, off)
	if found {
		return i + 1
	}
	return i
}

// line returns the line where key is first defined or, when the file lacks
// it, the line of its nearest enclosing table that it has ("folders[2]" for
// a missing "folders[2].id"); 0 when none of them is in the file.
func (ix *index) line(key string) int {
	for key != "" {
		if l, ok := ix.lines[key]; ok {
			return l
		}
		cut := 0
		for i := len(key) - 1; i >= 0; i-- {
			if key[i] == '.' || key[i] == '[' {
				cut = i
				break
			}
		}
		key = key[:cut]
	}
	return 0
}

// spotAt returns the key, value or element at or just before line:col
// (as go-toml reports positions: 1-based, columns in bytes) on that line.
func (ix *index) spotAt(line, col int) (spot, bool) {
	if line < 1 || line > len(ix.lineStarts) || col < 1 {
		return spot{}, false
	}
	off := ix.lineStarts[line-1] + col - 1
	// The first spot after off, then the one before it.
	i, _ := slices.BinarySearchFunc(ix.spots, off+1, func(s spot, t int) int { return cmp.Compare(s.off, t) })
	i--
	if i < 0 || ix.lineOf(ix.spots[i].off) != line {
		return spot{}, false
	}
	return ix.spots[i], true
}

// schemaError returns the first key or value outside the schema, if any.
func (ix *index) schemaError(file string) *Error {
	if ix.bad == nil {
		return nil
	}
	return &Error{File: file, Line: ix.lineOf(ix.bad.off), Key: ix.bad.path, Msg: ix.bad.msg}
}
