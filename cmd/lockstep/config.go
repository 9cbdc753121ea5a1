package main

import (
	"errors"

	"lockstep/config"
)

// loadConfig reads the configuration for a command; a configuration error
// is a usage error (exit 2), as the SPEC requires.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path, config.Options{ParseID: parseNodeID})
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, usageError{err}
		}
		return nil, err
	}
	return cfg, nil
}
