package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"lockstep/identity"
)

var idCommand = command{
	name: "id",
	args: "",
	summary: `Print the node ID of the identity in the data dir, the value peers put in
their [[peers]] id.`,
	run: runID,
}

func runID(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	configFlag(fs) // accepted like on every command; id reads only --data-dir
	dataDir := dataDirFlag(fs)
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if err := checkDataDirArgs(fs, *dataDir); err != nil {
		return err
	}
	id, err := identity.Load(*dataDir)
	if errors.Is(err, identity.ErrNotFound) {
		return fmt.Errorf("no node identity in %s (create one with 'lockstep init --data-dir %s')", *dataDir, *dataDir)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, id.ID)
	return err
}

// parseNodeID checks a peer's node ID from the configuration and returns
// its canonical text form, so that two spellings of one ID compare equal.
func parseNodeID(s string) (string, error) {
	id, err := identity.Parse(s)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}
