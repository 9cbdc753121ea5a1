package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"lockstep/control"
)

var statusCommand = command{
	name: "status",
	args: "",
	summary: `Show each folder's state and, per peer, connection and sync lag.
With --max-lag, also exit 1 when a folder is not idle or syncing, or a peer
lags more than the given duration: a health check for monitoring.`,
	run: runStatus,
}

func runStatus(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	folder := fs.String("folder", "", "show only the folder with this `id`")
	maxLag := fs.Duration("max-lag", 0, "exit 1 if a folder is not idle/syncing or a peer lags more than `duration`")
	client, err := clientFor(e, fs, args, cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := client.Status(ctx, *folder)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		printStatus(e.stdout, st, time.Now())
	}
	if *maxLag > 0 {
		if problems := healthProblems(st, *maxLag); len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
	}
	return nil
}

// healthProblems lists why a status fails a --max-lag health check.
func healthProblems(st control.Status, maxLag time.Duration) []string {
	var out []string
	for _, f := range st.Folders {
		if f.State != control.StateIdle && f.State != control.StateSyncing {
			msg := fmt.Sprintf("folder %s is %s", f.ID, f.State)
			if f.Error != "" {
				msg += ": " + f.Error
			}
			out = append(out, msg)
		}
		for _, p := range f.Peers {
			if lag := time.Duration(p.LagSeconds * float64(time.Second)); lag > maxLag {
				out = append(out, fmt.Sprintf("folder %s: peer %s lags %s (more than %s)", f.ID, p.Name, lag.Round(time.Millisecond), maxLag))
			}
		}
	}
	return out
}

func printStatus(w io.Writer, st control.Status, now time.Time) {
	fmt.Fprintf(w, "node %s  %s\n", st.Node, st.ID)
	for _, f := range st.Folders {
		fmt.Fprintf(w, "\nfolder %s  %s  (%s)\n", f.ID, f.Path, f.Mode)
		line := fmt.Sprintf("  state %s, %d files, %s", f.State, f.Files, humanBytes(f.Bytes))
		if f.Mode == "quorum" {
			line += fmt.Sprintf(", %d uncommitted", f.Uncommitted)
		}
		fmt.Fprintln(w, line)
		if f.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", f.Error)
		}
		if f.Warning != "" {
			fmt.Fprintf(w, "  warning: %s\n", f.Warning)
		}
		if len(f.Peers) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PEER\tCONNECTED\tPENDING\tLAG\tLAST SEEN")
		for _, p := range f.Peers {
			conn := "no"
			if p.Connected {
				conn = "yes"
			}
			seen := "never"
			if !p.LastSeen.IsZero() {
				seen = now.Sub(p.LastSeen).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d files, %s\t%s\t%s\n", p.Name, conn, p.PendingFiles, humanBytes(p.PendingBytes),
				time.Duration(p.LagSeconds*float64(time.Second)).Round(time.Millisecond), seen)
		}
		tw.Flush()
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
