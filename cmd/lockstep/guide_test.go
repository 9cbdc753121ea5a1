package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"lockstep/config"
)

// specOnly lists the commands of the SPEC that documents may name before
// this binary has them, with their SPEC flags.
var specOnly = map[string][]string{"resync": {"--config", "--help", "--folder", "--no-wait"}}

// TestOpsGuide checks docs/ops/guide.md against the CLI: every lockstep
// command it shows exists and takes the flags shown, and every TOML block
// is a valid configuration.
func TestOpsGuide(t *testing.T) {
	data, err := os.ReadFile("../../docs/ops/guide.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	var snippets []string // one command line each
	fence := regexp.MustCompile("(?ms)^[ \t]*```([a-z]*)\n(.*?)^[ \t]*```")
	for _, m := range fence.FindAllStringSubmatch(doc, -1) {
		if m[1] == "toml" {
			if _, err := config.Parse([]byte(m[2]), "guide.toml", config.Options{SkipPathChecks: true}); err != nil {
				t.Errorf("a TOML block of the guide is not a valid configuration: %v", err)
			}
		}
		snippets = append(snippets, strings.Split(m[2], "\n")...)
	}
	prose := fence.ReplaceAllString(doc, "")
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(prose, -1) {
		snippets = append(snippets, strings.Join(strings.Fields(m[1]), " "))
	}
	invocation := regexp.MustCompile(`\blockstep ([a-z]+)((?: +[^ #'"*]+)*)`)
	seen := 0
	for _, s := range snippets {
		for _, m := range invocation.FindAllStringSubmatch(s, -1) {
			verb := m[1]
			var flags []string
			if c, ok := findCommand(verb); ok {
				flags = flagsOf(c)
			} else if f, ok := specOnly[verb]; ok {
				flags = f
			} else if verb != "help" && verb != "version" {
				t.Errorf("the guide shows %q: no command %q", m[0], verb)
				continue
			}
			seen++
			for _, tok := range strings.Fields(m[2]) {
				name, _, _ := strings.Cut(tok, "=")
				if strings.HasPrefix(name, "--") && name != "--" && !slices.Contains(flags, name) {
					t.Errorf("the guide shows %q: %s takes no %s", m[0], verb, name)
				}
			}
		}
	}
	if seen < 10 {
		t.Errorf("found only %d lockstep invocations in the guide; is the pattern broken?", seen)
	}
}
