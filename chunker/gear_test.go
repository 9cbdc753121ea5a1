package chunker

import (
	"encoding/binary"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// TestGearTable re-derives the Gear table from its seed, so that the literal
// in gear.go can be trusted to be what its comment says.
func TestGearTable(t *testing.T) {
	h := blake3.New()
	h.WriteString(gearSeed)
	var out [len(gear) * 8]byte
	h.Digest().Read(out[:])
	for i := range gear {
		if want := binary.LittleEndian.Uint64(out[8*i:]); gear[i] != want {
			t.Fatalf("gear[%d] = %#016x, derivation gives %#016x", i, gear[i], want)
		}
	}
	// A table with repeated entries would make distinct bytes hash alike.
	seen := map[uint64]bool{}
	for _, g := range gear {
		if seen[g] {
			t.Fatalf("gear table repeats %#016x", g)
		}
		seen[g] = true
	}
}

// TestImports keeps the package free of disk and network access: it reads
// an io.Reader and nothing else.
func TestImports(t *testing.T) {
	forbidden := []string{"os", "os/exec", "net", "net/http", "syscall", "io/fs", "path/filepath"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == bad || strings.HasPrefix(path, "github.com/quic-go/") {
					t.Errorf("%s imports %q: chunker must not touch disks or sockets", name, path)
				}
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("checked only %d source files: wrong directory?", checked)
	}
}
