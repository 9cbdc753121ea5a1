package main

import (
	"errors"
	"flag"

	"lockstep/config"
	"lockstep/control"
)

// clientFor finishes a client command's flags, which take no positional
// argument, and returns a client of the daemon its configuration names.
func clientFor(e env, fs *flag.FlagSet, args []string, cfgPath *string) (*control.Client, error) {
	if err := parseFlags(e, fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return nil, err
	}
	return control.NewClient(cfg.Node.Control), nil
}

// loadConfig reads the configuration for a command that talks to the
// daemon: it needs the control socket, not the folders, so a folder whose
// root is missing (the very case status must report) is no error here.
func loadConfig(path string) (*config.Config, error) {
	return load(path, config.Options{ParseID: parseNodeID, SkipPathChecks: true})
}

// loadDaemonConfig reads the configuration `lockstep run` starts from,
// with every check.
func loadDaemonConfig(path string) (*config.Config, error) {
	return load(path, config.Options{ParseID: parseNodeID})
}

// load reads a configuration; a configuration error is a usage error (exit
// 2), as the SPEC requires.
func load(path string, opts config.Options) (*config.Config, error) {
	cfg, err := config.Load(path, opts)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, usageError{err}
		}
		return nil, err
	}
	return cfg, nil
}
