package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// writeManPage writes the lockstep(1) manual page in roff. Every command's
// section is its --help text, so the page and the CLI never disagree.
func writeManPage(ctx context.Context, w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p(`.TH LOCKSTEP 1 "" "lockstep %s" "User Commands"`, roffEscape(version))
	p(".SH NAME")
	p(`lockstep \- keep directories identical across the nodes of a web farm`)
	p(".SH SYNOPSIS")
	p(`.B lockstep`)
	p(`.I command`)
	p(`[\fIflags\fR] [\fIargs\fR]`)
	p(".br")
	p(`.B lockstep help`)
	p(`[\fIcommand\fR]`)
	p(".SH DESCRIPTION")
	p("lockstep keeps the document roots, upload and session directories of a web farm")
	p("identical on every node. A daemon,")
	p(`.BR "lockstep run" ,`)
	p("runs on each node: it watches the configured folders, cuts changed files into")
	p("content-defined chunks and streams the chunks peers lack over QUIC, authenticated")
	p("by pinned node IDs. A folder replicates asynchronously or commits a change once a")
	p("quorum of its nodes hold it. The other commands set a node up, or ask the running")
	p("daemon over its control socket.")
	p(".SH COMMANDS")
	for _, c := range commands {
		p(`.SS "lockstep %s"`, c.name)
		p(".nf")
		for _, line := range strings.Split(strings.TrimRight(helpText(ctx, c), "\n"), "\n") {
			p("%s", roffLine(line))
		}
		p(".fi")
	}
	p(`.SS "lockstep help [command]"`)
	p("Print the usage and flags of a command, as its --help flag does.")
	p(`.SS "lockstep version"`)
	p("Print lockstep's version.")
	p(".SH ENVIRONMENT")
	p(".TP")
	p(".B LOCKSTEP_CONFIG")
	p("The configuration file commands read when --config is not given.")
	p(".SH FILES")
	p(".TP")
	p(".I %s", defaultConfigPath)
	p("The configuration: this node, its peers and the synced folders (TOML).")
	p(".TP")
	p(".I /var/lib/lockstep")
	p("The data dir: the node's identity, the index and the conflict store.")
	p(".TP")
	p(".I /usr/lib/sysctl.d/60-lockstep.conf")
	p("Kernel limits for inotify and UDP buffers; override in /etc/sysctl.d/60-lockstep.conf.")
	p(".SH EXIT STATUS")
	p("0 on success, 1 on a runtime failure (for wait: a timeout; for status --max-lag:")
	p("a folder or peer out of bounds), 2 on a usage or configuration error.")
	p(".SH SIGNALS")
	p("SIGINT and SIGTERM stop the daemon cleanly. SIGHUP reloads the configuration:")
	p("peers and per-folder settings apply at once; the log names every change that")
	p("needs a restart instead.")
	p(".SH SEE ALSO")
	p(".BR systemctl (1),")
	p(".BR sysctl (8);")
	p("the guides in")
	p(".IR /usr/share/doc/lockstep/ .")
}

// roffEscape makes text safe inside a roff line.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// roffLine escapes one line of text, including a leading control
// character.
func roffLine(s string) string {
	s = roffEscape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
