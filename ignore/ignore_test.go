package ignore

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// matchCase lists paths that patterns must ignore and paths they must keep.
// A path ending in '/' names a directory.
type matchCase struct {
	name     string
	patterns []string
	ignored  []string
	kept     []string
	// notGit marks a case where lockstep deliberately differs from git:
	// lockstep's '?' and classes match UTF-8 characters, git's bytes.
	notGit bool
}

var matchCases = []matchCase{
	{name: "extension at any depth", patterns: []string{"*.swp"},
		ignored: []string{"a.swp", "x/y/b.swp", "dir.swp/", "dir.swp/inner.txt"},
		kept:    []string{"a.swpx", "swp", "a.txt", "x/a.swp.txt"}},
	{name: "everything inside a directory", patterns: []string{"cache/**"},
		ignored: []string{"cache/a", "cache/a/b", "cache/d/"},
		kept:    []string{"cache/", "cache", "x/cache/a", "cachex/a"}},
	{name: "anchored to the root", patterns: []string{"/build"},
		ignored: []string{"build", "build/", "build/x.o"},
		kept:    []string{"src/build", "src/build/", "src/build/x", "buildx"}},
	{name: "directories only", patterns: []string{"dir/"},
		ignored: []string{"dir/", "dir/x", "a/dir/", "a/dir/y"},
		kept:    []string{"dir", "a/dir", "dirx/"}},
	{name: "anchored directory", patterns: []string{"doc/frotz/"},
		ignored: []string{"doc/frotz/", "doc/frotz/a"},
		kept:    []string{"a/doc/frotz/", "doc/frotz"}},
	{name: "negation re-includes", patterns: []string{"*.log", "!keep.log"},
		ignored: []string{"a.log", "x/b.log"},
		kept:    []string{"keep.log", "x/keep.log", "a.txt"}},
	{name: "negation before the rule loses", patterns: []string{"!keep.log", "*.log"},
		ignored: []string{"keep.log", "a.log"}},
	{name: "no re-include inside an ignored directory", patterns: []string{"logs/", "!logs/keep.txt"},
		ignored: []string{"logs/", "logs/keep.txt", "logs/a"}},
	{name: "re-include through every level", patterns: []string{"/*", "!/foo", "/foo/*", "!/foo/bar"},
		ignored: []string{"x", "y/", "foo/baz", "foo/sub/", "foo/sub/z"},
		kept:    []string{"foo/", "foo/bar", "foo/bar/", "foo/bar/deep"}},
	{name: "leading double star", patterns: []string{"**/tmp"},
		ignored: []string{"tmp", "tmp/", "a/tmp", "a/b/tmp/", "a/tmp/x"},
		kept:    []string{"tmpx", "a/tmpx", "a/xtmp"}},
	{name: "leading double star with path", patterns: []string{"**/foo/bar"},
		ignored: []string{"foo/bar", "a/foo/bar", "a/b/foo/bar/"},
		kept:    []string{"foo/baz", "bar", "foo/x/bar"}},
	{name: "middle double star", patterns: []string{"a/**/b"},
		ignored: []string{"a/b", "a/x/b", "a/x/y/b", "a/b/c"},
		kept:    []string{"b", "x/a/b", "a/bb", "a/xb"}},
	{name: "trailing double star is not the directory", patterns: []string{"abc/**"},
		ignored: []string{"abc/x"},
		kept:    []string{"abc", "abc/"}},
	{name: "three stars are two", patterns: []string{"***/*.tmp", "/a/***"},
		ignored: []string{"x.tmp", "x/y/z.tmp", "a/b", "a/b/c"},
		kept:    []string{"a/", "x/y/z", "a.txt"}},
	{name: "double star inside a name is a star", patterns: []string{"a**b"},
		ignored: []string{"ab", "axxb", "d/axb"},
		kept:    []string{"ba"}},
	{name: "star alone", patterns: []string{"*", "!important"},
		ignored: []string{"x", "dir/", "dir/important"},
		kept:    []string{"important"}},
	{name: "star after a directory", patterns: []string{"foo/*"},
		ignored: []string{"foo/test.json", "foo/bar/", "foo/bar/hello.c"},
		kept:    []string{"foo", "foo/", "x/foo/a"}},
	{name: "question mark", patterns: []string{"?.txt"},
		ignored: []string{"a.txt", "d/b.txt"},
		kept:    []string{"ab.txt", ".txt"}},
	{name: "question mark is a character", patterns: []string{"?.txt"}, notGit: true,
		ignored: []string{"é.txt"}},
	{name: "range", patterns: []string{"file[0-9].txt"},
		ignored: []string{"file1.txt", "d/file9.txt"},
		kept:    []string{"filea.txt", "file10.txt"}},
	{name: "negated class", patterns: []string{"[!a-c]*.md"},
		ignored: []string{"d.md", "zz.md"},
		kept:    []string{"a.md", "b1.md"}},
	{name: "caret negates too", patterns: []string{"[^a]"},
		ignored: []string{"b"},
		kept:    []string{"a"}},
	{name: "set", patterns: []string{"*.[oa]"},
		ignored: []string{"x.o", "lib.a"},
		kept:    []string{"x.c", "x.oa"}},
	{name: "posix class", patterns: []string{"x[[:digit:]]", "y[[:upper:][:space:]]"},
		ignored: []string{"x5", "yA", "y "},
		kept:    []string{"xa", "ya"}},
	{name: "bracket first is literal", patterns: []string{"[]]x"},
		ignored: []string{"]x"},
		kept:    []string{"x"}},
	{name: "dash at the end is literal", patterns: []string{"[a-]z"},
		ignored: []string{"az", "-z"},
		kept:    []string{"bz"}},
	{name: "escaped comment and bang", patterns: []string{`\#notcomment`, `\!bang`},
		ignored: []string{"#notcomment", "!bang"},
		kept:    []string{"notcomment", "bang"}},
	{name: "escaped star and brackets", patterns: []string{`a\*b`, `\[x\]`},
		ignored: []string{"a*b", "[x]"},
		kept:    []string{"axb", "x"}},
	{name: "escaped inside a class", patterns: []string{`[\]]y`},
		ignored: []string{"]y"},
		kept:    []string{`\y`}},
	{name: "trailing spaces", patterns: []string{"sp  ", `trail\ `},
		ignored: []string{"sp", "trail "},
		kept:    []string{"sp ", "trail"}},
	{name: "comments and blanks match nothing", patterns: []string{"#foo", "", "   "},
		kept: []string{"#foo", "foo", "x"}},
	{name: "negated directory rule", patterns: []string{"build*", "!build-keep/"},
		ignored: []string{"build", "build-keep", "builder/"},
		kept:    []string{"build-keep/", "build-keep/a"}},
	{name: "dotfiles are ordinary names", patterns: []string{".*"},
		ignored: []string{".env", "a/.git/", "a/.git/config"},
		kept:    []string{"env"}},
	{name: "lockstep names are always ignored", patterns: nil,
		ignored: []string{".lockstep", ".lockstep-tmp-1234", "a/.lockstep/x", ".lockstepx/", "a/b/.lockstep.part"},
		kept:    []string{"lockstep", "a/x.lockstep", "a/lockstep/"}},
	{name: "negation cannot keep lockstep names", patterns: []string{"!.lockstep*", "!*"},
		ignored: []string{".lockstep-tmp", "d/.lockstep-stage/f"}},
}

func splitCase(p string) (path string, isDir bool) {
	if strings.HasSuffix(p, "/") {
		return strings.TrimSuffix(p, "/"), true
	}
	return p, false
}

func TestMatch(t *testing.T) {
	for _, tc := range matchCases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.patterns)
			if err != nil {
				t.Fatalf("New(%q): %v", tc.patterns, err)
			}
			for _, p := range tc.ignored {
				path, dir := splitCase(p)
				if !m.Match(path, dir) {
					t.Errorf("patterns %q: Match(%q, dir=%v) = false, want true", tc.patterns, path, dir)
				}
			}
			for _, p := range tc.kept {
				path, dir := splitCase(p)
				if m.Match(path, dir) {
					t.Errorf("patterns %q: Match(%q, dir=%v) = true, want false", tc.patterns, path, dir)
				}
			}
		})
	}
}

// TestMatchAgreesWithGit checks the table above against git itself, so the
// table cannot drift from gitignore semantics.
func TestMatchAgreesWithGit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed; the table is checked by TestMatch only")
	}
	for _, tc := range matchCases {
		if tc.notGit {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			want := map[string]bool{}
			var groups []*fsGroup
			for _, list := range []struct {
				ps      []string
				ignored bool
			}{{tc.ignored, true}, {tc.kept, false}} {
				for _, p := range list.ps {
					path, isDir := splitCase(p)
					if strings.HasPrefix(path, ".lockstep") || strings.Contains(path, "/.lockstep") {
						continue // git knows nothing of lockstep's own names
					}
					want[p] = list.ignored
					placed := false
					for _, g := range groups {
						if g.add(path, isDir) {
							placed = true
							break
						}
					}
					if !placed {
						g := &fsGroup{files: map[string]bool{}, dirs: map[string]bool{}}
						g.add(path, isDir)
						groups = append(groups, g)
					}
				}
			}
			for _, g := range groups {
				for path, ignored := range checkIgnore(t, git, tc.patterns, g) {
					if g.dirs[path] {
						path += "/"
					}
					if ignored != want[path] {
						t.Errorf("patterns %q, path %q: git says ignored=%v, the table says %v", tc.patterns, path, ignored, want[path])
					}
				}
			}
		})
	}
}

// fsGroup is a set of paths that can coexist in one directory tree: no
// path is both a file and a directory.
type fsGroup struct {
	files, dirs map[string]bool
	paths       []string
}

func (g *fsGroup) add(path string, isDir bool) bool {
	if isDir && g.files[path] || !isDir && g.dirs[path] {
		return false
	}
	for i := range len(path) {
		if path[i] == '/' && g.files[path[:i]] {
			return false
		}
	}
	if isDir {
		g.dirs[path] = true
	} else {
		g.files[path] = true
	}
	for i := range len(path) {
		if path[i] == '/' {
			g.dirs[path[:i]] = true
		}
	}
	g.paths = append(g.paths, path)
	return true
}

// checkIgnore builds g's tree in a fresh repository with patterns as its
// .gitignore and asks git check-ignore about every path.
func checkIgnore(t *testing.T, git string, patterns []string, g *fsGroup) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	run := func(stdin string, args ...string) string {
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			// check-ignore exits 1 when nothing is ignored.
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("git %v: %v: %s", args, err, errb.String())
			}
		}
		return out.String()
	}
	run("", "init", "-q")
	if err := os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(strings.Join(patterns, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for d := range g.dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f := range g.files {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := run(strings.Join(g.paths, "\n")+"\n", "check-ignore", "--no-index", "-v", "-n", "--stdin")
	got := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		src, path, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("unexpected git output %q", sc.Text())
		}
		// "source:line:pattern": a negated pattern or none means kept.
		parts := strings.SplitN(src, ":", 3)
		got[path] = len(parts) == 3 && parts[2] != "" && !strings.HasPrefix(parts[2], "!")
	}
	if len(got) != len(g.paths) {
		t.Fatalf("git answered for %d paths, asked %d:\n%s", len(got), len(g.paths), out)
	}
	return got
}

func TestNewErrors(t *testing.T) {
	for _, p := range []string{
		"[abc",      // unterminated class
		"abc\\",     // trailing backslash
		"!",         // nothing left
		"/",         // nothing left
		"a//b",      // empty component
		"[z-a]",     // range out of order
		"[[:foo:]]", // unknown class
		"[[:alpha:]",
		"x[\\",
	} {
		_, err := New([]string{"*.ok", p})
		if err == nil {
			t.Errorf("New(%q) = nil error, want one", p)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(p)) {
			t.Errorf("New(%q) error %q does not name the pattern", p, err)
		}
	}
}

func TestNilMatcher(t *testing.T) {
	var m *Matcher
	if m.Match("a/b", false) {
		t.Error("nil matcher ignored a/b")
	}
	if !m.Match("a/.lockstep-tmp", false) {
		t.Error("nil matcher kept a lockstep name")
	}
	if m.Match("", true) || m.Match(".", true) {
		t.Error("the root was ignored")
	}
	if m.Patterns() != nil {
		t.Error("nil matcher has patterns")
	}
}

func TestPatterns(t *testing.T) {
	m, err := New([]string{"# c", "a", "", "!b/"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(m.Patterns(), ",")
	if got != "a,!b/" {
		t.Errorf("Patterns() = %q, want %q", got, "a,!b/")
	}
}

// TestDeepPath covers paths deeper than the stack buffer.
func TestDeepPath(t *testing.T) {
	m, err := New([]string{"/a/**/z", "!keep"})
	if err != nil {
		t.Fatal(err)
	}
	deep := "a/" + strings.Repeat("d/", 2*maxDepth) + "z"
	if !m.Match(deep, false) {
		t.Errorf("Match(%q) = false", deep)
	}
	if m.Match(strings.Repeat("d/", 2*maxDepth)+"keep", false) {
		t.Error("deep keep was ignored")
	}
}

func BenchmarkMatch(b *testing.B) {
	m, err := New([]string{"*.swp", "cache/**", "/build", "node_modules/", "!keep.swp", "**/tmp/*.log"})
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"www/html/index.php", "www/html/assets/img/logo.png", "cache/x", "a/b/c/d/e.swp", "a/tmp/x.log"}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			m.Match(p, false)
		}
	}
}
