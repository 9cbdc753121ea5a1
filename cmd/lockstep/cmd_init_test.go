package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lockstep/identity"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInitAndID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "lockstep")
	code, out, errOut := runCLI(t, "init", "--data-dir", dir, "--name", "web1")
	if code != exitOK {
		t.Fatalf("init exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("init stdout = %q, want exactly one line", out)
	}
	id, err := identity.Parse(lines[0])
	if err != nil {
		t.Fatalf("init printed %q: %v", lines[0], err)
	}
	if st, err := os.Stat(filepath.Join(dir, identity.KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	key, _ := os.ReadFile(filepath.Join(dir, identity.KeyFile))

	// A second init keeps the identity and prints the same ID.
	code, out2, errOut := runCLI(t, "init", "--data-dir", dir, "--name", "other")
	if code != exitOK || out2 != out {
		t.Fatalf("second init: exit %d, stdout %q; want 0 and %q", code, out2, out)
	}
	if !strings.Contains(errOut, "already holds") {
		t.Errorf("second init stderr %q does not say the identity was kept", errOut)
	}
	if key2, _ := os.ReadFile(filepath.Join(dir, identity.KeyFile)); !bytes.Equal(key, key2) {
		t.Fatal("second init rewrote the key")
	}

	code, out3, errOut := runCLI(t, "id", "--data-dir", dir)
	if code != exitOK || out3 != out {
		t.Fatalf("id: exit %d, stdout %q, stderr %q; want 0 and %q", code, out3, errOut, out)
	}
	if loaded, _ := identity.Load(dir); loaded.ID != id || loaded.Name != "web1" {
		t.Fatalf("identity on disk = %v %q, want %v web1", loaded.ID, loaded.Name, id)
	}
}

func TestIDWithoutIdentity(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "id", "--data-dir", dir)
	if code != exitFailure {
		t.Fatalf("id on an empty dir: exit %d, want %d", code, exitFailure)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, dir) || !strings.Contains(errOut, "no node identity") {
		t.Errorf("stderr %q, want one line naming %s", errOut, dir)
	}
}

func TestInitIDUsage(t *testing.T) {
	for _, args := range [][]string{
		{"init"},
		{"id"},
		{"init", "--data-dir", t.TempDir(), "extra"},
		{"id", "--data-dir", t.TempDir(), "extra"},
		{"init", "--no-such-flag"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		if out != "" || errOut == "" {
			t.Errorf("%q: stdout %q stderr %q; want the error on stderr only", args, out, errOut)
		}
	}
	code, _, errOut := runCLI(t, "init")
	if code != exitUsage || !strings.Contains(errOut, "--data-dir is required") {
		t.Errorf("init without --data-dir: %d %q", code, errOut)
	}
	for _, verb := range []string{"init", "id"} {
		code, out, _ := runCLI(t, verb, "--help")
		if code != exitOK || !strings.Contains(out, "-data-dir") {
			t.Errorf("%s --help: exit %d, stdout %q", verb, code, out)
		}
	}
}

func TestInitBadName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	code, out, errOut := runCLI(t, "init", "--data-dir", dir, "--name", strings.Repeat("x", 100))
	if code != exitUsage || out != "" || !strings.Contains(errOut, "longer than") {
		t.Fatalf("init with a long name: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestParseNodeIDCanonical(t *testing.T) {
	dir := t.TempDir()
	id, _, err := identity.Create(dir, "n")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseNodeID(strings.ToLower(strings.ReplaceAll(id.ID.String(), "-", "")))
	if err != nil || got != id.ID.String() {
		t.Fatalf("parseNodeID = %q, %v; want %q", got, err, id.ID.String())
	}
	if _, err := parseNodeID("bogus"); err == nil {
		t.Fatal("parseNodeID(bogus) succeeded")
	}
}
