package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: a configuration file is
// untrusted input. Parse must never panic, must fail only with a one-line
// *Error pointing inside the file, and must return only configurations that
// hold the invariants the rest of the daemon relies on.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml", Options{ParseID: parseID, SkipPathChecks: true})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is a %T, want *Error", err, err)
			}
			if c != nil {
				t.Fatal("a configuration returned with an error")
			}
			if s := err.Error(); strings.ContainsAny(s, "\n\r") {
				t.Fatalf("error is not one line: %q", s)
			}
			if lines := bytes.Count(data, []byte("\n")) + 1; ce.Line < 0 || ce.Line > lines {
				t.Fatalf("error on line %d of a %d-line file: %v", ce.Line, lines, err)
			}
			return
		}
		checkInvariants(t, c)
	})
}

func checkInvariants(t *testing.T, c *Config) {
	t.Helper()
	n := c.Node
	if !validName(n.Name) || !filepath.IsAbs(n.DataDir) || !filepath.IsAbs(n.Control) || n.Listen == "" {
		t.Fatalf("invalid node %+v", n)
	}
	peers := map[string]bool{}
	ids := map[string]bool{}
	for _, p := range c.Peers {
		if !validName(p.Name) || p.Name == n.Name || peers[p.Name] || p.ID == "" || ids[p.ID] || p.Address == "" {
			t.Fatalf("invalid or duplicate peer %+v", p)
		}
		peers[p.Name], ids[p.ID] = true, true
	}
	folders := map[string]bool{}
	for _, f := range c.Folders {
		if !validName(f.ID) || folders[f.ID] || !filepath.IsAbs(f.Path) || within(n.DataDir, f.Path) || within(f.Path, n.DataDir) {
			t.Fatalf("invalid or duplicate folder %+v", f)
		}
		folders[f.ID] = true
		if f.Peers == nil {
			t.Fatalf("folder %s: nil peers", f.ID)
		}
		for _, p := range f.Peers {
			if !peers[p] {
				t.Fatalf("folder %s: unknown peer %q", f.ID, p)
			}
		}
		nodes := c.FolderNodes(f)
		switch f.Mode {
		case ModeAsync:
			if f.Quorum != 0 {
				t.Fatalf("async folder %s with quorum %d", f.ID, f.Quorum)
			}
		case ModeQuorum:
			if f.Quorum < 1 || f.Quorum > nodes {
				t.Fatalf("folder %s: quorum %d of %d nodes", f.ID, f.Quorum, nodes)
			}
		default:
			t.Fatalf("folder %s: mode %q", f.ID, f.Mode)
		}
		if f.Settle <= 0 || f.Rescan < 0 || f.TombstoneRetention < 0 || !(f.DeleteGuard >= 0 && f.DeleteGuard <= 1) || f.DeleteGuardMin < 0 {
			t.Fatalf("folder %s: bad settings %+v", f.ID, f)
		}
	}
}
