package config

import (
	"errors"
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Error is a configuration error: the file, the line and the key at fault.
// Its text is one line, "lockstep.toml:12: folders[2].quorum: 4 exceeds the
// folder's 3 nodes", so the CLI can print it as is and exit 2.
type Error struct {
	File string
	// Line is 1-based; 0 when the error concerns no line (the file cannot
	// be read, or a required table is missing altogether).
	Line int
	// Key is the path of the key at fault, with 0-based indexes into arrays
	// ("folders[2].quorum", "folders[0].peers[1]"); empty for syntax errors
	// and errors about the whole file.
	Key string
	Msg string
	// Err is the underlying error, if any (an OS error, or the node ID
	// parser's), for errors.Is and errors.As.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File == "" {
		b.WriteString("<config>")
	}
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// oneLine escapes line breaks, so that an error always prints as one line
// whatever bytes the file held.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace

// firstError picks what to report among the index's schema error and the
// decoder's error. The index names keys with array indexes and compares
// them exactly (go-toml matches field names case-insensitively), so its
// error wins over go-toml's for wrong keys and types, which strict mode and
// go-toml's type checks only back up; go-toml's other errors (syntax,
// duplicate keys) win when they come first in the file.
func (ix *index) firstError(file string, decodeErr error) *Error {
	schemaErr := ix.schemaError(file)
	if decodeErr == nil {
		return schemaErr
	}
	e, schemaKind := ix.decodeError(file, decodeErr)
	if schemaErr != nil && (schemaKind || schemaErr.Line <= e.Line) {
		return schemaErr
	}
	return e
}

// decodeError turns an error from go-toml into an *Error, naming the key
// through the index: go-toml's own key paths carry no array indexes and,
// inside inline tables, no prefix. schemaKind tells an unknown key or a
// wrong type from other errors.
func (ix *index) decodeError(file string, err error) (e *Error, schemaKind bool) {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		return ix.fromDecode(file, &strict.Errors[0], "unknown key"), true
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		return ix.fromDecode(file, de, ""), isTypeMismatch(strings.TrimPrefix(de.Error(), "toml: "))
	}
	return &Error{File: file, Msg: err.Error(), Err: err}, false
}

func (ix *index) fromDecode(file string, de *toml.DecodeError, msg string) *Error {
	line, col := de.Position()
	e := &Error{File: file, Line: line}
	raw := strings.TrimPrefix(de.Error(), "toml: ")
	if len(de.Key()) == 0 {
		// Only syntax errors come without a key.
		e.Msg = "invalid TOML: " + raw
		return e
	}
	s, ok := ix.spotAt(line, col)
	if ok {
		e.Key = s.path
	} else {
		e.Key = renderKey(de.Key())
	}
	switch {
	case msg != "":
		e.Msg = msg
	case ok && isTypeMismatch(raw) && schema[s.pattern] != nil:
		e.Msg = "must be " + describe(schema[s.pattern])
	case strings.HasPrefix(raw, "key ") && strings.HasSuffix(raw, " is already defined"):
		e.Msg = "defined more than once"
	default:
		e.Msg = raw
	}
	return e
}

// isTypeMismatch recognises go-toml's messages for a value or table of the
// wrong type, whose wording names Go types a user has no use for.
func isTypeMismatch(msg string) bool {
	return strings.HasPrefix(msg, "cannot decode TOML ") || strings.HasPrefix(msg, "cannot store ")
}

// describe names the TOML type that decodes into t.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Struct:
		return "a table"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "an array of tables"
		}
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describe(t.Elem()), "a "), "an ") + "s"
	}
	return t.String()
}

// renderKey writes a key path as TOML would, quoting parts that are not
// bare keys.
func renderKey(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(keyPart(p))
	}
	return b.String()
}

func keyPart(p string) string {
	if p == "" {
		return `""`
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return strconv.Quote(p)
		}
	}
	return p
}
