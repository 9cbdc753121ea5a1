package replica

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"lockstep/control"
)

// conflictLog is the record of conflict losers: one JSON object per line in
// <ConflictDir>.jsonl, beside the directory holding the copies. A text file
// an operator can read and grep, appended and flushed per entry.
type conflictLog struct {
	mu   sync.Mutex
	path string
}

func openConflictLog(dir string) (*conflictLog, error) {
	if dir == "" {
		return nil, errors.New("no conflict store directory configured")
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("conflict store: %w", err)
	}
	return &conflictLog{path: filepath.Clean(dir) + ".jsonl"}, nil
}

func (l *conflictLog) add(c control.Conflict) error {
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("conflict log: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("conflict log %s: %w", l.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("conflict log %s: %w", l.path, err)
	}
	return f.Close()
}

// list returns every recorded conflict, oldest first. A line that does not
// parse (a torn write at a crash) is skipped.
func (l *conflictLog) list() ([]control.Conflict, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []control.Conflict
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var c control.Conflict
		if json.Unmarshal(sc.Bytes(), &c) == nil {
			out = append(out, c)
		}
	}
	return out, sc.Err()
}
