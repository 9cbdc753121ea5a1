package main

import (
	"context"
	"flag"
	"fmt"

	"lockstep/identity"
)

var initCommand = command{
	name: "init",
	args: "",
	summary: `Create the data dir and this node's identity (private key and self-signed
certificate) if absent, and print the node ID as the only line on stdout.
An existing identity is never overwritten: its ID is printed instead.`,
	run: runInit,
}

func runInit(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	// --config is accepted like on every command; init needs only the
	// data dir, which it takes from --data-dir so that it can run before a
	// configuration file exists.
	configFlag(fs)
	dataDir := dataDirFlag(fs)
	name := fs.String("name", "", "node `name` written into the certificate (default: the host name)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if err := checkDataDirArgs(fs, *dataDir); err != nil {
		return err
	}
	if *name != "" {
		if err := identity.CheckName(*name); err != nil {
			return usageError{fmt.Errorf("--name: %w", err)}
		}
	}
	id, created, err := identity.Create(*dataDir, *name)
	if err != nil {
		return err
	}
	if !created {
		fmt.Fprintf(e.stderr, "lockstep init: %s already holds the identity of %q; left unchanged\n", *dataDir, id.Name)
	}
	_, err = fmt.Fprintln(e.stdout, id.ID)
	return err
}

// dataDirFlag registers the required --data-dir of init and id.
func dataDirFlag(fs *flag.FlagSet) *string {
	return fs.String("data-dir", "", "data `directory` holding the node identity (required)")
}

func checkDataDirArgs(fs *flag.FlagSet, dataDir string) error {
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if dataDir == "" {
		return usagef("--data-dir is required")
	}
	return nil
}
