package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func runHelpCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String(), code
}

// unroff undoes the escapes writeManPage uses.
func unroff(s string) string {
	return strings.NewReplacer(`\&`, "", `\-`, "-", `\e`, `\`).Replace(s)
}

// TestHelpAndManPage: 'lockstep help <command>' and the manual page show
// exactly what '<command> --help' does.
func TestHelpAndManPage(t *testing.T) {
	man, code := runHelpCLI(t, "man")
	if code != exitOK || !strings.HasPrefix(man, ".TH LOCKSTEP 1 ") {
		t.Fatalf("lockstep man: exit %d, output starts %.40q", code, man)
	}
	plain := unroff(man)
	for _, c := range commands {
		help, code := runHelpCLI(t, c.name, "--help")
		if code != exitOK || !strings.HasPrefix(help, "usage: lockstep "+c.name) {
			t.Errorf("%s --help: exit %d, output %q", c.name, code, help)
			continue
		}
		if got, code := runHelpCLI(t, "help", c.name); code != exitOK || got != help {
			t.Errorf("help %s: exit %d, output\n%s\nwant\n%s", c.name, code, got, help)
		}
		if !strings.Contains(plain, ".nf\n"+help+".fi\n") {
			t.Errorf("the manual page does not hold %s's --help text:\n%s", c.name, help)
		}
	}
	if _, code := runHelpCLI(t, "help", "nonesuch"); code != exitUsage {
		t.Errorf("help nonesuch: exit %d, want %d", code, exitUsage)
	}
	if _, code := runHelpCLI(t, "help", "run", "extra"); code != exitUsage {
		t.Errorf("help run extra: exit %d, want %d", code, exitUsage)
	}
	usage, _ := runHelpCLI(t, "help")
	top, _ := runHelpCLI(t)
	if usage != top || !strings.Contains(usage, "help") {
		t.Errorf("'lockstep help' differs from 'lockstep' or does not mention help:\n%s", usage)
	}
	for _, line := range strings.Split(man, "\n") {
		if strings.HasPrefix(line, ".") && !regexp.MustCompile(`^\.(TH|SH|SS|B|BR|I|IR|TP|nf|fi|br)( |$)`).MatchString(line) {
			t.Errorf("manual page line %q starts with an unknown request", line)
		}
	}
}

// flagsOf returns the flags a command registers, as --name.
func flagsOf(c command) []string {
	fs := newFlagSet(c, io.Discard)
	c.run(context.Background(), env{stdout: io.Discard, stderr: io.Discard}, fs, []string{"--help"})
	var out []string
	fs.VisitAll(func(f *flag.Flag) { out = append(out, "--"+f.Name) })
	return out
}

// TestBashCompletion: the completion script offers every command, and
// every flag of each.
func TestBashCompletion(t *testing.T) {
	data, err := os.ReadFile("../../packaging/bash-completion/lockstep")
	if err != nil {
		t.Fatal(err)
	}
	script := string(data)
	m := regexp.MustCompile(`if \[\[ -z \$verb \]\]; then\s+COMPREPLY=\(\$\(compgen -W '([^']*)'`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("cannot find the list of commands in the completion script")
	}
	verbs := strings.Fields(m[1])
	helpList := regexp.MustCompile(`help\)\s+\(\(n == 2\)\) && COMPREPLY=\(\$\(compgen -W '([^']*)'`).FindStringSubmatch(script)
	if helpList == nil {
		t.Fatal("cannot find the commands completed after 'help'")
	}
	common := regexp.MustCompile(`local common='([^']*)'`).FindStringSubmatch(script)
	if common == nil {
		t.Fatal("cannot find the common flags")
	}
	for _, c := range commands {
		if !slices.Contains(verbs, c.name) {
			t.Errorf("completion does not offer command %s", c.name)
		}
		if !slices.Contains(strings.Fields(helpList[1]), c.name) {
			t.Errorf("completion does not offer %s after 'help'", c.name)
		}
		offered := strings.Fields(common[1])
		if line := regexp.MustCompile(`\n\s*` + c.name + `\) echo "\$common ([^"]*)"`).FindStringSubmatch(script); line != nil {
			offered = append(offered, strings.Fields(line[1])...)
		}
		for _, f := range flagsOf(c) {
			if !slices.Contains(offered, f) {
				t.Errorf("completion does not offer %s for %s", f, c.name)
			}
		}
	}
	for _, v := range []string{"help", "version"} {
		if !slices.Contains(verbs, v) {
			t.Errorf("completion does not offer %s", v)
		}
	}
}
