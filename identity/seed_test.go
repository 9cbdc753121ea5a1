package identity

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// TestFuzzSeedCorpus checks that testdata/fuzz holds seeds for every fuzz
// target, valid inputs among them (rewrite with -update).
func TestFuzzSeedCorpus(t *testing.T) {
	if *updateSeeds {
		var id NodeID
		for i := range id {
			id[i] = byte(i)
		}
		writeSeed(t, "FuzzParse", "valid", "string("+strconv.Quote(id.String())+")")
		writeSeed(t, "FuzzParse", "lowercase-nodashes", "string("+strconv.Quote(strings.ToLower(strings.ReplaceAll(id.String(), "-", "")))+")")
		writeSeed(t, "FuzzParse", "typo", "string("+strconv.Quote("B"+id.String()[1:])+")")
		dir := t.TempDir()
		if _, _, err := Create(dir, "seed"); err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
		cert, _ := os.ReadFile(filepath.Join(dir, CertFile))
		writeSeed(t, "FuzzParseFiles", "valid", "[]byte("+strconv.Quote(string(key))+")", "[]byte("+strconv.Quote(string(cert))+")")
		writeSeed(t, "FuzzParseFiles", "swapped", "[]byte("+strconv.Quote(string(cert))+")", "[]byte("+strconv.Quote(string(key))+")")
	}
	for _, target := range []string{"FuzzParse", "FuzzParseFiles"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
		if err != nil || len(entries) < 2 {
			t.Errorf("%s: seed corpus missing (run go test -run TestFuzzSeedCorpus -update): %v", target, err)
		}
	}
	// The valid seeds must stay valid, or the fuzzer starts from nothing.
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParse", "valid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(s); err != nil {
		t.Fatalf("seed %q no longer parses: %v", s, err)
	}
}

func writeSeed(t *testing.T, target, name string, values ...string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	os.MkdirAll(dir, 0o755)
	body := "go test fuzz v1\n" + strings.Join(values, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
