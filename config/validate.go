package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator turns the decoded file into a Config, filling in defaults and
// collecting every error with the line of the key at fault.
type validator struct {
	file string
	base string // relative paths start here
	ix   *index
	opts Options
	errs []*Error
}

func (v *validator) fail(key string, err error, format string, args ...any) {
	v.errs = append(v.errs, &Error{
		File: v.file,
		Line: v.ix.line(key),
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
		Err:  err,
	})
}

// first returns the error nearest the top of the file, so that fixing
// errors one at a time walks down the file.
func (v *validator) first() error {
	if len(v.errs) == 0 {
		return nil
	}
	return slices.MinFunc(v.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
}

func (v *validator) config(raw *rawConfig) *Config {
	c := &Config{}
	c.Node = v.node(raw.Node)
	c.Peers = v.peers(raw.Peers, c.Node.Name)
	c.Folders = v.folders(raw.Folders, c)
	v.overlaps(c)
	return c
}

func (v *validator) node(r *rawNode) Node {
	if r == nil {
		v.fail("node", nil, "missing [node] table")
		return Node{}
	}
	n := Node{
		Name:    v.name("node.name", r.Name),
		DataDir: v.required("node.data_dir", r.DataDir),
		Listen:  DefaultListen,
	}
	if n.DataDir != "" {
		n.DataDir = v.abs(n.DataDir)
		n.Control = filepath.Join(n.DataDir, DefaultControlName)
	}
	if r.Listen != nil {
		n.Listen = *r.Listen
		v.address("node.listen", n.Listen, false)
	}
	if r.Control != nil {
		if *r.Control == "" {
			v.fail("node.control", nil, "must not be empty; leave it out for <data_dir>/%s", DefaultControlName)
		} else {
			n.Control = v.abs(*r.Control)
		}
	}
	if r.Metrics != nil && *r.Metrics != "" {
		n.Metrics = *r.Metrics
		v.address("node.metrics", n.Metrics, false)
	}
	return n
}

func (v *validator) peers(raw []rawPeer, self string) []Peer {
	peers := make([]Peer, 0, len(raw))
	names := map[string]int{}
	ids := map[string]int{}
	for i, r := range raw {
		key := indexed("peers", i)
		p := Peer{
			Name:    v.name(key+".name", r.Name),
			ID:      v.required(key+".id", r.ID),
			Address: v.required(key+".address", r.Address),
		}
		if p.Name != "" {
			j, dup := names[p.Name]
			switch {
			case dup:
				v.fail(key+".name", nil, "%q is already the name of peers[%d] (line %d)", p.Name, j, v.ix.line(indexed("peers", j)+".name"))
			case p.Name == self:
				v.fail(key+".name", nil, "%q is this node's own name (node.name)", p.Name)
			default:
				names[p.Name] = i
			}
		}
		if p.ID != "" {
			p.ID = v.peerID(i, p.ID, ids)
		}
		if p.Address != "" {
			v.address(key+".address", p.Address, true)
		}
		peers = append(peers, p)
	}
	return peers
}

// peerID checks the ID of peers[i] and returns its canonical form, or ""
// when it is not valid.
func (v *validator) peerID(i int, id string, seen map[string]int) string {
	key := indexed("peers", i)
	if v.opts.ParseID != nil {
		canon, err := v.opts.ParseID(id)
		if err != nil {
			v.fail(key+".id", err, "not a valid node ID: %v", err)
			return ""
		}
		id = canon
	}
	if j, dup := seen[id]; dup {
		v.fail(key+".id", nil, "the same node ID as peers[%d] (line %d)", j, v.ix.line(indexed("peers", j)+".id"))
	} else {
		seen[id] = i
	}
	return id
}

func (v *validator) folders(raw []rawFolder, c *Config) []Folder {
	peerNames := map[string]bool{}
	for _, p := range c.Peers {
		if p.Name != "" {
			peerNames[p.Name] = true
		}
	}
	folders := make([]Folder, 0, len(raw))
	ids := map[string]int{}
	for i, r := range raw {
		key := indexed("folders", i)
		f := Folder{
			ID:             v.name(key+".id", r.ID),
			Mode:           ModeAsync,
			Ignore:         r.Ignore,
			DeleteGuard:    DefaultDeleteGuard,
			DeleteGuardMin: DefaultDeleteGuardMin,
		}
		if f.ID != "" {
			if j, dup := ids[f.ID]; dup {
				v.fail(key+".id", nil, "%q is already the id of folders[%d] (line %d)", f.ID, j, v.ix.line(indexed("folders", j)+".id"))
			} else {
				ids[f.ID] = i
			}
		}
		if p := v.required(key+".path", r.Path); p != "" {
			f.Path = v.abs(p)
			if !v.opts.SkipPathChecks {
				v.isDir(key+".path", f.Path)
			}
		}
		f.Peers = v.folderPeers(key, r.Peers, c, peerNames)
		if r.Mode != nil {
			f.Mode = Mode(*r.Mode)
		}
		nodes := len(f.Peers) + 1
		switch f.Mode {
		case ModeAsync, ModeQuorum:
		default:
			v.fail(key+".mode", nil, `%q is neither "async" nor "quorum"`, *r.Mode)
		}
		// quorum is checked in either mode, so that switching a folder to
		// quorum mode cannot reveal a bad value late; an async folder
		// ignores it (SPEC's example sets it beside mode = "async").
		quorum := DefaultQuorum(nodes)
		if r.Quorum != nil {
			quorum = *r.Quorum
			switch {
			case quorum < 1:
				v.fail(key+".quorum", nil, "%d is less than 1", quorum)
			case quorum > nodes:
				v.fail(key+".quorum", nil, "%d exceeds the folder's %s", quorum, plural(nodes, "node"))
			}
		}
		if f.Mode == ModeQuorum {
			f.Quorum = quorum
		}
		if r.Owner != nil {
			f.Owner = *r.Owner
		}
		if r.Group != nil {
			f.Group = *r.Group
		}
		f.Settle = v.duration(key+".settle", r.Settle, DefaultSettle, false)
		f.Rescan = v.duration(key+".rescan", r.Rescan, DefaultRescan, true)
		f.TombstoneRetention = v.duration(key+".tombstone_retention", r.TombstoneRetention, DefaultTombstoneRetention, true)
		if g := r.DeleteGuard; g != nil {
			f.DeleteGuard = *g
			if !(*g >= 0 && *g <= 1) { // NaN included
				v.fail(key+".delete_guard", nil, "%v is not a share from 0 to 1 (0 disables the guard)", *g)
			}
		}
		if m := r.DeleteGuardMin; m != nil {
			f.DeleteGuardMin = *m
			if *m < 0 {
				v.fail(key+".delete_guard_min", nil, "%d is negative", *m)
			}
		}
		folders = append(folders, f)
	}
	return folders
}

// folderPeers returns the peers the folder at key names, or every peer
// when it names none.
func (v *validator) folderPeers(key string, raw *[]string, c *Config, known map[string]bool) []string {
	if raw == nil {
		names := make([]string, 0, len(c.Peers))
		for _, p := range c.Peers {
			if p.Name != "" {
				names = append(names, p.Name)
			}
		}
		return names
	}
	names := make([]string, 0, len(*raw))
	seen := map[string]bool{}
	for j, name := range *raw {
		k := indexed(key+".peers", j)
		switch {
		case name == c.Node.Name && name != "":
			v.fail(k, nil, "%q is this node; list only its peers", name)
		case !known[name]:
			v.fail(k, nil, "%q is not the name of any [[peers]] entry", name)
		case seen[name]:
			v.fail(k, nil, "%q is listed twice", name)
		default:
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// overlaps rejects folders that share files with each other or with the
// data dir. Two folders syncing one file would fight over it; a data dir
// inside a folder would ship the private key to every peer and to the web.
// Paths are compared after resolving symlinks, so an alias does not hide
// an overlap.
func (v *validator) overlaps(c *Config) {
	type place struct{ key, path, real string }
	var places []place
	for i, f := range c.Folders {
		if f.Path != "" {
			places = append(places, place{indexed("folders", i) + ".path", f.Path, resolve(f.Path)})
		}
	}
	relation := func(a, b place) string {
		var rel string
		switch {
		case a.real == b.real:
			rel = "is the same directory as"
		case within(a.real, b.real):
			rel = "is inside"
		case within(b.real, a.real):
			rel = "contains"
		default:
			return ""
		}
		msg := fmt.Sprintf("%q %s %s %q", a.path, rel, b.key, b.path)
		if a.real != a.path || b.real != b.path {
			msg += fmt.Sprintf(" (resolved: %q and %q)", a.real, b.real)
		}
		return msg
	}
	for i, a := range places {
		for _, b := range places[:i] {
			if msg := relation(a, b); msg != "" {
				v.fail(a.key, nil, "%s; folders must not overlap", msg)
				break
			}
		}
	}
	if c.Node.DataDir == "" {
		return
	}
	data := place{"node.data_dir", c.Node.DataDir, resolve(c.Node.DataDir)}
	for _, p := range places {
		if msg := relation(data, p); msg != "" {
			v.fail(data.key, nil, "%s; the data dir holds the private key and must stay outside synced folders", msg)
			break
		}
	}
}

// within reports whether path a lies strictly inside directory b.
func within(a, b string) bool {
	if !strings.HasSuffix(b, string(filepath.Separator)) {
		b += string(filepath.Separator)
	}
	return strings.HasPrefix(a, b)
}

// resolve returns path with symlinks resolved as far as it exists: the
// data dir may not exist yet, and SkipPathChecks lets folders be missing.
func resolve(path string) string {
	rest := ""
	for dir := path; ; {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return path
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

func (v *validator) isDir(key, path string) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.fail(key, err, "%q does not exist", path)
	case err != nil:
		msg := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err
		}
		v.fail(key, err, "cannot stat %q: %v", path, msg)
	case !fi.IsDir():
		v.fail(key, nil, "%q is not a directory", path)
	}
}

// abs makes a path from the file absolute: relative paths start at the
// directory holding the file, not at the daemon's working directory.
func (v *validator) abs(path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(v.base, path)
}

func (v *validator) required(key string, s *string) string {
	switch {
	case s == nil:
		v.fail(key, nil, "required key is missing")
		return ""
	case *s == "":
		v.fail(key, nil, "must not be empty")
	}
	return *s
}

// name checks a node name or folder id. They appear in logs, status, URLs
// and file names under the data dir, so they stay plain.
func (v *validator) name(key string, s *string) string {
	n := v.required(key, s)
	if n != "" && !validName(n) {
		v.fail(key, nil, "%q is not a valid name: use up to %d letters, digits, '.', '_' or '-', starting with a letter or digit", n, maxNameLen)
		return ""
	}
	return n
}

const maxNameLen = 64

func validName(s string) bool {
	if len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return len(s) > 0
}

// address checks a host:port. The port is required and numeric; so is the
// host of an address to dial (peer) but not of one to listen on.
func (v *validator) address(key, addr string, dial bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			reason = ae.Err
		}
		v.fail(key, nil, "%q is not host:port (%s)", addr, reason)
		return
	}
	if dial && host == "" {
		v.fail(key, nil, "%q has no host", addr)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.fail(key, nil, "%q: port %q is not a number from 1 to 65535", addr, port)
	}
}

// duration parses a duration key, def when absent. Zero is allowed only
// where it means "off".
func (v *validator) duration(key string, s *string, def time.Duration, zeroOK bool) time.Duration {
	if s == nil {
		return def
	}
	d, err := time.ParseDuration(*s)
	switch {
	case err != nil:
		v.fail(key, nil, `%q is not a duration such as "50ms", "30s" or "1h"`, *s)
		return def
	case d < 0:
		v.fail(key, nil, "%q is negative", *s)
	case d == 0 && !zeroOK:
		v.fail(key, nil, "must be more than 0")
	}
	return d
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
