package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes, per the SPEC: every command maps its outcome to one of these,
// and only run does the mapping.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure
	exitUsage   = 2 // a usage or configuration error
)

// usageError marks an error as the caller's fault (bad flags, bad config):
// exit code 2 instead of 1.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// env is what a command gets from main: its output streams. Commands write
// results to stdout and nothing else there; diagnostics go to stderr.
type env struct {
	stdout, stderr io.Writer
}

// command is one verb of the CLI.
type command struct {
	name    string
	args    string // argument synopsis for help, after the flags
	summary string
	// run parses args with fs (already named) and does the work.
	run func(ctx context.Context, e env, fs *flag.FlagSet, args []string) error
}

// commands lists every verb, in the order help shows them.
var commands = []command{
	// one entry per verb, each defined in cmd_<verb>.go
	chunkCommand,
	initCommand,
	idCommand,
	runCommand,
	statusCommand,
	waitCommand,
	conflictsCommand,
	resumeCommand,
	resyncCommand,
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// run executes one CLI invocation and returns its exit code. It is main minus
// the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := env{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printUsage(stdout)
		return exitOK
	}
	switch args[0] {
	case "help":
		return runHelp(ctx, e, args[1:])
	case "version", "--version":
		fmt.Fprintln(stdout, "lockstep", version)
		return exitOK
	case "man":
		// Hidden: writes the manual page, for packaging.
		if len(args) > 1 {
			fmt.Fprintf(stderr, "lockstep man: unexpected argument %q\n", args[1])
			return exitUsage
		}
		writeManPage(ctx, stdout)
		return exitOK
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "lockstep: unknown command %q (see 'lockstep --help')\n", args[0])
		return exitUsage
	}
	fs := newFlagSet(cmd, stderr)
	err := cmd.run(ctx, e, fs, args[1:])
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	fmt.Fprintf(stderr, "lockstep %s: %v\n", cmd.name, err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// newFlagSet returns the flag set cmd.run fills in, with the usage text
// that --help, 'lockstep help' and the manual page all show.
func newFlagSet(cmd command, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lockstep "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: lockstep %s [flags] %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
		if hasFlags(fs) {
			fmt.Fprintln(out, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// helpText returns what 'lockstep <cmd> --help' prints: the command
// registers its flags and stops at --help, doing nothing else.
func helpText(ctx context.Context, cmd command) string {
	var out strings.Builder
	fs := newFlagSet(cmd, io.Discard)
	cmd.run(ctx, env{stdout: &out, stderr: io.Discard}, fs, []string{"--help"})
	return out.String()
}

// runHelp is 'lockstep help [command]'.
func runHelp(ctx context.Context, e env, args []string) int {
	switch len(args) {
	case 0:
		printUsage(e.stdout)
		return exitOK
	case 1:
	default:
		fmt.Fprintf(e.stderr, "lockstep help: unexpected argument %q (usage: lockstep help [command])\n", args[1])
		return exitUsage
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(e.stderr, "lockstep help: unknown command %q (see 'lockstep --help')\n", args[0])
		return exitUsage
	}
	fmt.Fprint(e.stdout, helpText(ctx, cmd))
	return exitOK
}

// parseFlags parses args into fs, sending --help output to stdout as a
// successful answer rather than an error.
func parseFlags(e env, fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return flag.ErrHelp
		}
		if a == "--" {
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	return nil
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "lockstep keeps directories identical across the nodes of a web farm.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: lockstep <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		summary, _, _ := strings.Cut(c.summary, "\n")
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %-*s  %s\n", width, "help", "Show a command's usage and flags: lockstep help <command>.")
	fmt.Fprintf(w, "  %-*s  %s\n", width, "version", "Print lockstep's version.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'lockstep help <command>' or 'lockstep <command> --help' for a command's flags.")
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultConfigPath is where commands look for the configuration when
// neither --config nor $LOCKSTEP_CONFIG names one.
const defaultConfigPath = "/etc/lockstep/lockstep.toml"

// configFlag registers --config on fs with the SPEC's default.
func configFlag(fs *flag.FlagSet) *string {
	def := defaultConfigPath
	if v := os.Getenv("LOCKSTEP_CONFIG"); v != "" {
		def = v
	}
	return fs.String("config", def, "configuration `file` (or $LOCKSTEP_CONFIG)")
}
