package identity

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"lockstep/conflict"
)

func testID(seed string) NodeID { return NodeID(sha256.Sum256([]byte(seed))) }

// TestNodeIDGolden pins the text form: changing it would invalidate every
// configuration file in the field. The expected value was computed by an
// independent implementation (Python's base64 and a hand-written Luhn mod 32).
func TestNodeIDGolden(t *testing.T) {
	var id NodeID
	for i := range id {
		id[i] = byte(i)
	}
	const want = "AAAQEAY-EAUDAO5-CAJBIFQ-YDIOB4X-IBCEQTC-QKRMFYM-YDENBWH-A5DYPQS"
	if got := id.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got := id.Abbrev(); got != "AAAQEAY" {
		t.Errorf("Abbrev() = %q", got)
	}
	if got, want := id.Short(), conflict.NodeID(0x0001020304050607); got != want {
		t.Errorf("Short() = %#x, want %#x", got, want)
	}
}

func TestParseForms(t *testing.T) {
	id := testID("a")
	s := id.String()
	forms := map[string]string{
		"printed":    s,
		"lowercase":  strings.ToLower(s),
		"no dashes":  strings.ReplaceAll(s, "-", ""),
		"spaces":     strings.ReplaceAll(s, "-", " "),
		"mixed case": strings.ToUpper(s[:20]) + strings.ToLower(s[20:]),
	}
	for name, in := range forms {
		got, err := Parse(in)
		if err != nil {
			t.Errorf("%s: Parse(%q): %v", name, in, err)
			continue
		}
		if got != id {
			t.Errorf("%s: Parse(%q) = %v, want %v", name, in, got, id)
		}
	}
}

func TestParseErrors(t *testing.T) {
	s := testID("b").String()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "want 56 characters"},
		{"short", s[:len(s)-1], "want 56 characters"},
		{"long", s + "A", "want 56 characters"},
		{"bad char", "1" + s[1:], "invalid character '1'"},
		{"digit 8", s[:5] + "8" + s[6:], "invalid character '8'"},
		{"typo in group 1", flip(s, 0), "group 1"},
		{"typo in group 2", flip(s, 17), "group 2"},
		{"typo in group 3", flip(s, 33), "group 3"},
		{"typo in group 4", flip(s, 60), "group 4"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse(%q) = %v, want error containing %q", tt.name, tt.in, err, tt.want)
		}
	}
}

// flip replaces the character at i with the next alphabet letter.
func flip(s string, i int) string {
	c := alphabet[(strings.IndexByte(alphabet, s[i])+1)%len(alphabet)]
	return s[:i] + string(c) + s[i+1:]
}

// TestParseCatchesEverySubstitution checks the property the check
// characters exist for: any single mistyped character is an error.
func TestParseCatchesEverySubstitution(t *testing.T) {
	for _, seed := range []string{"x", "y", "z"} {
		s := testID(seed).String()
		for i := range len(s) {
			if s[i] == '-' {
				continue
			}
			for _, c := range []byte(alphabet) {
				if c == s[i] {
					continue
				}
				in := s[:i] + string(c) + s[i+1:]
				if _, err := Parse(in); err == nil {
					t.Fatalf("Parse(%q) (offset %d %c→%c) succeeded", in, i, s[i], c)
				}
			}
		}
	}
}

func TestParseRejectsNonCanonical(t *testing.T) {
	// Build a text whose last data character carries nonzero padding bits
	// but a correct check character: it must still be refused.
	s := strings.ReplaceAll(testID("c").String(), "-", "")
	g := []byte(s[3*(groupData+1) : 4*(groupData+1)])
	last := strings.IndexByte(alphabet, g[groupData-1])
	// 256 bits leave 1 data bit and 4 zero bits in the last character.
	if last&0xf != 0 {
		t.Fatalf("canonical last character %q has padding bits set", g[groupData-1])
	}
	g[groupData-1] = alphabet[last|1]
	g[groupData] = luhn32(string(g[:groupData]))
	in := s[:3*(groupData+1)] + string(g)
	if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("Parse(%q) = %v, want non-canonical error", in, err)
	}
}

func TestTextMarshal(t *testing.T) {
	id := testID("d")
	b, err := id.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var got NodeID
	if err := got.UnmarshalText(bytes.ToLower(b)); err != nil || got != id {
		t.Fatalf("UnmarshalText = %v, %v; want %v", got, err, id)
	}
	if err := got.UnmarshalText([]byte("nope")); err == nil {
		t.Fatal("UnmarshalText(nope) succeeded")
	}
}

func TestCompare(t *testing.T) {
	a, b := NodeID{1}, NodeID{2}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Fatal("Compare is not a bytewise order")
	}
	var lo, hi NodeID
	hi[31] = 1
	if lo.Compare(hi) != -1 || !lo.IsZero() || hi.IsZero() {
		t.Fatal("Compare ignores the last byte or IsZero is wrong")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(testID("a").String())
	f.Add(strings.ToLower(testID("b").String()))
	f.Add("")
	f.Add("AAAA-")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("Parse(%q) = %v, but its String %q does not parse back: %v", s, id, id.String(), err)
		}
	})
}
