package protocol

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPureImports keeps the codec free of I/O: it works on any io.Reader
// and io.Writer and never touches files, sockets or QUIC itself.
func TestPureImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := []string{"os", "net", "syscall", "crypto/tls", "github.com/quic-go/", "lockstep/transport", "lockstep/identity"}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, b := range banned {
				if path == b || strings.HasPrefix(path, b+"/") || strings.HasSuffix(b, "/") && strings.HasPrefix(path, b) {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}
