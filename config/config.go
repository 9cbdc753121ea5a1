package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is a validated configuration: every default is filled in and every
// path is absolute.
type Config struct {
	Node    Node
	Peers   []Peer
	Folders []Folder
}

// Node is this node's own settings, the [node] table.
type Node struct {
	// Name identifies this node to its peers, in status and in conflicts.
	Name string
	// DataDir holds the identity, the index and the conflict store.
	DataDir string
	// Listen is the UDP host:port QUIC listens on.
	Listen string
	// Control is the path of the unix socket the CLI talks to the daemon on.
	Control string
	// Metrics is the TCP host:port serving /metrics and /healthz; empty
	// means no such server.
	Metrics string
}

// Peer is one [[peers]] entry: another node this one talks to.
type Peer struct {
	Name string
	// ID is the peer's node ID, in the canonical form Options.ParseID
	// returned (as written when there is no ParseID).
	ID string
	// Address is the peer's UDP host:port.
	Address string
}

// Mode is how a folder commits a change.
type Mode string

const (
	// ModeAsync commits a change locally and replicates it in the
	// background; a change is fully replicated once every peer holds it.
	ModeAsync Mode = "async"
	// ModeQuorum commits a change once Quorum of the folder's nodes hold it
	// durably.
	ModeQuorum Mode = "quorum"
)

// Folder is one [[folders]] entry: a directory kept identical on this node
// and the folder's peers.
type Folder struct {
	// ID names the folder on the wire; it is the same on every node that
	// shares the folder, whatever its local path.
	ID string
	// Path is absolute and cleaned. Symlinks in it are kept, not resolved:
	// a deploy that swaps a symlinked docroot keeps working.
	Path string
	Mode Mode
	// Quorum is how many of the folder's nodes, this one included, must
	// hold a change durably before it is committed. 0 in async mode.
	Quorum int
	// Peers names the peers that share the folder, in [[peers]] order when
	// defaulted. Never nil; empty keeps the folder on this node only.
	Peers []string
	// Ignore holds gitignore-style patterns relative to Path, unchecked:
	// the package that matches them validates them.
	Ignore []string
	// Owner and Group are given to files lockstep writes; empty preserves
	// the sender's numeric ids (when running as root).
	Owner, Group string
	// Settle is how long a file must stay unchanged before it is announced.
	Settle time.Duration
	// Rescan is the interval of the safety rescan that catches changes the
	// watcher missed; 0 disables it.
	Rescan time.Duration
	// TombstoneRetention is how long a deletion is remembered after every
	// peer has confirmed it.
	TombstoneRetention time.Duration
	// DeleteGuard is the share of the folder's files (0 to 1) that one scan
	// may find deleted before the folder pauses instead of propagating the
	// deletions; 0 disables the guard. The guard trips only when at least
	// DeleteGuardMin files would be deleted, so small folders can be
	// emptied normally.
	DeleteGuard    float64
	DeleteGuardMin int
}

// Defaults, as documented in the package comment.
const (
	DefaultListen             = "0.0.0.0:7400"
	DefaultControlName        = "control.sock" // inside the data dir
	DefaultSettle             = 50 * time.Millisecond
	DefaultRescan             = time.Hour
	DefaultTombstoneRetention = 720 * time.Hour
	DefaultDeleteGuard        = 0.5
	DefaultDeleteGuardMin     = 100
)

// maxFileSize bounds what Load reads: a real configuration is a few
// kilobytes, and a path pointing at a device or a log must not exhaust
// memory.
const maxFileSize = 1 << 20

// Options adjusts how a configuration is validated.
type Options struct {
	// ParseID checks a peer's node ID and returns its canonical text form,
	// which is what Peer.ID holds and what duplicates are detected on, so
	// two spellings of one ID count as a duplicate. nil checks only that
	// the ID is not empty. It lets the caller plug in the identity package
	// without this package depending on it.
	ParseID func(string) (string, error)
	// SkipPathChecks accepts folder paths that do not exist or are not
	// directories, for checking a configuration written for another
	// machine. Overlapping folders are still rejected.
	SkipPathChecks bool
}

// Load reads, parses and validates the configuration file at path. Every
// error is an *Error.
func Load(path string, opts Options) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path, opts)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, "cannot read", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fileError(path, "cannot read", err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes; not a configuration file", maxFileSize)}
	}
	return data, nil
}

// fileError reports an OS error about the file itself, without repeating
// its path, which the Error already names.
func fileError(path, what string, err error) *Error {
	msg := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err
	}
	return &Error{File: path, Msg: fmt.Sprintf("%s: %v", what, msg), Err: err}
}

// Parse parses and validates a configuration held in memory. filename names
// it in errors, and its directory is where relative paths in it start from
// (the working directory when filename is ""). Every error is an *Error.
func Parse(data []byte, filename string, opts Options) (*Config, error) {
	base, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, fileError(filename, "cannot resolve its directory", err)
	}
	ix := buildIndex(data)
	var raw rawConfig
	err = toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&raw)
	if e := ix.firstError(filename, err); e != nil {
		return nil, e
	}
	v := validator{file: filename, base: base, ix: ix, opts: opts}
	cfg := v.config(&raw)
	if err := v.first(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Peer returns the peer called name.
func (c *Config) Peer(name string) (Peer, bool) {
	for _, p := range c.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// Folder returns the folder whose ID is id.
func (c *Config) Folder(id string) (Folder, bool) {
	for _, f := range c.Folders {
		if f.ID == id {
			return f, true
		}
	}
	return Folder{}, false
}

// FolderNodes returns how many nodes share f, this one included. A Folder
// built by hand with nil Peers counts every peer, as Parse would.
func (c *Config) FolderNodes(f Folder) int {
	if f.Peers == nil {
		return len(c.Peers) + 1
	}
	return len(f.Peers) + 1
}

// DefaultQuorum is the quorum of a folder shared by nodes nodes (this one
// included) when its configuration sets none: a strict majority, so two
// quorums always share a node.
func DefaultQuorum(nodes int) int {
	return nodes/2 + 1
}
