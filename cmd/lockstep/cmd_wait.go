package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"lockstep/control"
)

var waitCommand = command{
	name: "wait",
	args: "PATH...",
	summary: `Block until the current local version of each PATH is committed: held by a
quorum of the folder's nodes in a quorum folder, by every peer in an async
folder. Exit 0 when committed, 1 on timeout, naming what is still missing.`,
	run: runWait,
}

func runWait(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	cfgPath := configFlag(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "give up after `duration`")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("no PATH to wait for")
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	paths := make([]string, fs.NArg())
	for i, p := range fs.Args() {
		abs, err := filepath.Abs(p)
		if err != nil {
			return usagef("path %q: %v", p, err)
		}
		paths[i] = abs
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	// The daemon enforces the timeout; the margin lets its answer arrive.
	ctx, cancel := context.WithTimeout(ctx, *timeout+10*time.Second)
	defer cancel()
	resp, err := control.NewClient(cfg.Node.Control).Wait(ctx, control.WaitRequest{Paths: paths, Timeout: timeout.String()})
	if err != nil {
		return err
	}
	if resp.Committed {
		return nil
	}
	var parts []string
	for _, m := range resp.Missing {
		s := m.Path + ": " + m.Reason
		if len(m.Peers) > 0 {
			s += " (missing on " + strings.Join(m.Peers, ", ") + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return errors.New("not committed before the timeout")
	}
	return fmt.Errorf("not committed after %s: %s", *timeout, strings.Join(parts, "; "))
}
