package main

import (
	"errors"

	"lockstep/config"
)

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
