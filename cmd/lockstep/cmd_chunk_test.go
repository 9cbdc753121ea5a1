package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lockstep/chunker"
)

func chunkCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"chunk"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// writeRandom writes n pseudo-random bytes (fixed seed) to a new file.
func writeRandom(t *testing.T, name string, seed uint64, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(data)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestChunkText(t *testing.T) {
	path, data := writeRandom(t, "site.tar", 1, 3<<20+123)
	want, err := chunker.Split(bytes.NewReader(data), chunker.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := chunkCLI(t, path)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != path {
		t.Fatalf("first line %q, want the path %q", lines[0], path)
	}
	// One line per chunk: offset, length, hash.
	var off int64
	i := 0
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) != 3 || !strings.HasPrefix(f[2], "blake3-") {
			break
		}
		c := want.Chunks[i]
		if f[0] != strconv.FormatInt(off, 10) || f[1] != strconv.Itoa(int(c.Length)) || f[2] != c.Hash.String() {
			t.Fatalf("chunk line %q, want %d %d %s", l, off, c.Length, c.Hash)
		}
		off += int64(c.Length)
		i++
	}
	if i != len(want.Chunks) {
		t.Fatalf("printed %d chunk lines, want %d:\n%s", i, len(want.Chunks), out)
	}
	manifest := want.Hash().String() + "  " + strconv.Itoa(len(want.Chunks)) + " chunks  " + strconv.Itoa(len(data)) + " bytes"
	if !strings.Contains(out, "manifest "+manifest) {
		t.Fatalf("output lacks %q:\n%s", manifest, out)
	}
	total := "total: 1 files, " + strconv.Itoa(len(want.Chunks)) + " chunks (" + strconv.Itoa(len(want.Chunks)) + " distinct)"
	if !strings.HasPrefix(lines[len(lines)-1], total) {
		t.Fatalf("last line %q, want it to start with %q", lines[len(lines)-1], total)
	}
}

// TestChunkJSON chunks a file and an edited copy (100 bytes inserted in the
// middle): the JSON matches the library, and the totals show that the copy
// adds only one or two distinct chunks.
func TestChunkJSON(t *testing.T) {
	path, data := writeRandom(t, "a.bin", 2, 4<<20)
	edited := slices.Concat(data[:2<<20], bytes.Repeat([]byte("x"), 100), data[2<<20:])
	path2 := filepath.Join(filepath.Dir(path), "b.bin")
	if err := os.WriteFile(path2, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := chunkCLI(t, "--json", "--avg", "32K", path, path2)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var rep chunkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	p := chunker.Params{Min: 8 << 10, Avg: 32 << 10, Max: 128 << 10}
	if rep.Params != (chunkParamsJSON{p.Min, p.Avg, p.Max}) {
		t.Fatalf("params %+v, want %v (min and max derived from avg)", rep.Params, p)
	}
	if len(rep.Files) != 2 {
		t.Fatalf("%d files in the report, want 2", len(rep.Files))
	}
	for i, content := range [][]byte{data, edited} {
		want, _ := chunker.Split(bytes.NewReader(content), p)
		f := rep.Files[i]
		if f.Size != int64(len(content)) || f.Manifest != want.Hash() || len(f.Chunks) != len(want.Chunks) {
			t.Fatalf("file %d: size %d manifest %s, %d chunks; want %d %s %d", i, f.Size, f.Manifest, len(f.Chunks), len(content), want.Hash(), len(want.Chunks))
		}
		var off int64
		for j, c := range f.Chunks {
			if c.Offset != off || c.Length != want.Chunks[j].Length || c.Hash != want.Chunks[j].Hash {
				t.Fatalf("file %d chunk %d = %+v, want offset %d and %+v", i, j, c, off, want.Chunks[j])
			}
			off += int64(c.Length)
		}
	}
	tot := rep.Total
	if tot.Files != 2 || tot.Chunks != len(rep.Files[0].Chunks)+len(rep.Files[1].Chunks) || tot.Bytes != int64(len(data)+len(edited)) {
		t.Fatalf("totals %+v do not add up", tot)
	}
	if extra := tot.DistinctChunks - len(rep.Files[0].Chunks); extra < 1 || extra > 2 {
		t.Fatalf("the edited copy adds %d distinct chunks, want 1 or 2 (totals %+v)", extra, tot)
	}
}

func TestChunkEmptyFile(t *testing.T) {
	path, _ := writeRandom(t, "empty", 3, 0)
	code, out, errOut := chunkCLI(t, "--json", path)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var rep chunkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if f := rep.Files[0]; f.Size != 0 || len(f.Chunks) != 0 || f.Manifest != (chunker.Manifest{}).Hash() {
		t.Fatalf("empty file reported as %+v", f)
	}
}

func TestChunkErrors(t *testing.T) {
	path, _ := writeRandom(t, "f", 4, 1000)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tt := range []struct {
		args     []string
		code     int
		contains string
	}{
		{nil, exitUsage, "no FILE"},
		{[]string{"--avg", "1000", path}, exitUsage, "power of two"},
		{[]string{"--min", "64K", path}, exitUsage, "min must be less than avg"},
		{[]string{"--max", "12x", path}, exitUsage, "invalid size"},
		{[]string{"--bogus", path}, exitUsage, "bogus"},
		{[]string{path, missing}, exitFailure, missing},
		{[]string{filepath.Dir(path)}, exitFailure, filepath.Dir(path)},
	} {
		code, _, errOut := chunkCLI(t, tt.args...)
		// The flag package follows its own errors with the usage text; the
		// error itself is the last line either way.
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if last := lines[len(lines)-1]; code != tt.code || !strings.HasPrefix(last, "lockstep chunk: ") || !strings.Contains(last, tt.contains) {
			t.Errorf("chunk %q: exit %d, stderr %q; want exit %d and a last line containing %q", tt.args, code, errOut, tt.code, tt.contains)
		}
	}
	code, out, _ := chunkCLI(t, "--help")
	if code != exitOK || !strings.Contains(out, "usage: lockstep chunk") || !strings.Contains(out, "-avg") {
		t.Errorf("--help: exit %d, stdout %q", code, out)
	}
}

func TestParseChunkSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"65536", 65536, true},
		{"64K", 64 << 10, true},
		{"64KiB", 64 << 10, true},
		{"1M", 1 << 20, true},
		{"2MiB", 2 << 20, true},
		{"0", 0, false},
		{"-5", 0, false},
		{"K", 0, false},
		{"1.5M", 0, false},
		{"64kb", 0, false},
		{"4096M", 0, false},
	} {
		got, err := parseChunkSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
