package daemon

import (
	"context"
	"log/slog"
	"time"

	"lockstep/config"
	"lockstep/conflict"
	"lockstep/ignore"
	"lockstep/index"
	"lockstep/replica"
	"lockstep/scanner"
)

// scanAdapter presents a scanner.Scanner as the engine's Scanner.
type scanAdapter struct{ s *scanner.Scanner }

func (a scanAdapter) Scan(ctx context.Context) ([]string, error) {
	res, err := a.s.Scan(ctx)
	return res.Retry, err
}

func (a scanAdapter) ScanPaths(ctx context.Context, paths []string) ([]string, error) {
	res, err := a.s.ScanPaths(ctx, paths)
	return res.Retry, err
}

func (a scanAdapter) Racy(path string) bool { return a.s.Racy(path) }

// clockFunc is a scanner.Clock made of a function.
type clockFunc func(now time.Time) conflict.Stamp

func (c clockFunc) Now(now time.Time) conflict.Stamp { return c(now) }

func (a scanAdapter) ScanPathsComplete(ctx context.Context, paths []string, complete []bool) ([]string, error) {
	res, err := a.s.ScanPathsComplete(ctx, paths, complete)
	return res.Retry, err
}

func (a scanAdapter) ScanPathsDone(ctx context.Context, paths []string) ([]string, error) {
	res, err := a.s.ScanPathsDone(ctx, paths)
	return res.Retry, err
}

func newScanner(fc config.Folder, ix *index.Index, self conflict.NodeID, clock scanner.Clock, match *ignore.Matcher, guard scanner.DeleteGuard, writing func(string, time.Time) bool, log *slog.Logger) (replica.Scanner, error) {
	s, err := scanner.New(ix, scanner.Config{
		Folder:      fc.ID,
		Dir:         fc.Path,
		Local:       self,
		Clock:       clock,
		Ignore:      match,
		Logger:      log,
		DeleteGuard: guard,
		Writing:     writing,
	})
	if err != nil {
		return nil, err
	}
	return scanAdapter{s}, nil
}
