package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseID stands in for the identity package: IDs are "id-" and hex
// digits, in either case; the canonical form is lower case.
func parseID(s string) (string, error) {
	hex, ok := strings.CutPrefix(strings.ToLower(s), "id-")
	if !ok || hex == "" || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", errors.New(`want "id-" and hex digits`)
	}
	return "id-" + hex, nil
}

var testOpts = Options{ParseID: parseID}

// tree makes a directory with folders to point configurations at:
// site/ (with site/inner/), uploads/, sessions/, a regular file "plain" and
// a symlink "alias" to site.
func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"site/inner", "uploads", "sessions"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "site"), filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// load writes text, with $D replaced by dir, to dir/lockstep.toml and
// loads it.
func load(t *testing.T, dir, text string, opts Options) (*Config, string, error) {
	t.Helper()
	path := filepath.Join(dir, "lockstep.toml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "$D", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, opts)
	return c, path, err
}

const nodeTable = `[node]
name = "web1"
data_dir = '$D/data'
`

const twoPeers = `
[[peers]]
name = "web2"
id = "id-02"
address = "10.0.0.2:7400"

[[peers]]
name = "web3"
id = "id-03"
address = "10.0.0.3:7400"
`

// TestErrors checks every configuration error: its key, its message, and
// its line — the line holding "# <-" in the case's text, or none.
func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		text string
		key  string
		msg  string
	}{
		// Unknown keys.
		{"unknown top-level key", "verbose = true # <-\n" + nodeTable, "verbose", "unknown key"},
		{"unknown node key", "[node]\nname = 'web1'\nnmae = 'x' # <-\ndata_dir = '/d'\n", "node.nmae", "unknown key"},
		{"keys are case-sensitive", "[node]\nName = 'web1' # <-\ndata_dir = '/d'\n", "node.Name", "unknown key"},
		{"unknown table", nodeTable + "[nodes] # <-\nname = 'x'\n", "nodes", "unknown key"},
		{"unknown key in the second folder", nodeTable + `
[[folders]]
id = "a"
path = '$D/site'
[[folders]]
id = "b"
path = '$D/uploads'
quroum = 2 # <-
`, "folders[1].quroum", "unknown key"},
		{"unknown key in an inline table", `folders = [
  {id = "a", path = '$D/site'},
  {id = "b", path = '$D/uploads', colour = "red"}, # <-
]
` + nodeTable, "folders[1].colour", "unknown key"},
		{"unknown sub-table of an array table", nodeTable + `
[[folders]]
id = "a"
path = '$D/site'
[[folders]]
id = "b"
path = '$D/uploads'
[folders.extra] # <-
`, "folders[1].extra", "unknown key"},
		{"unknown dotted key", "folders = [{id = 'a', path = '$D/site', x.y = 1}] # <-\n" + nodeTable, "folders[0].x", "unknown key"},

		// TOML itself.
		{"syntax error", "[node]\nname = 'web1'\n[folders # <-\n", "", "invalid TOML"},
		{"key defined twice", "[node]\nname = 'web1'\nname = 'web2' # <-\ndata_dir = '/d'\n", "node.name", "defined more than once"},
		{"string for an integer", nodeTable + twoPeers + `
[[folders]]
id = "a"
path = '$D/site'
mode = "quorum"
quorum = "two" # <-
`, "folders[0].quorum", "must be an integer, not a string"},
		{"integer in an array of strings", nodeTable + twoPeers + `
[[folders]]
id = "a"
path = '$D/site'
peers = [
  "web2",
  3, # <-
]
`, "folders[0].peers[1]", "must be a string, not an integer"},
		{"string for an array", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\npeers = 'web2' # <-\n", "folders[0].peers", "must be an array of strings, not a string"},
		{"string for a table", "node = 'web1' # <-\n", "node", "must be a table, not a string"},
		{"integer for a duration", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\nsettle = 5 # <-\n", "folders[0].settle", "must be a string, not an integer"},
		{"float for an integer", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\nquorum = 1.5 # <-\n", "folders[0].quorum", "must be an integer, not a float"},
		{"integer too large", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\nquorum = 99999999999999999999 # <-\n", "folders[0].quorum", "too large"},
		{"array in an array of strings", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\npeers = [['web2']] # <-\n", "folders[0].peers[0]", "must be a string, not an array"},
		{"array of tables for a table", "[[node]] # <-\nname = 'web1'\n", "node", "must be a table, not an array of tables"},
		{"table for an array of tables", nodeTable + "[folders] # <-\nid = 'a'\n", "folders", "must be an array of tables, not a table"},
		{"dotted key through a string", "[node]\nname.first = 'web1' # <-\n", "node.name", "must be a string, not a table"},
		{"table defined twice", "[node]\nname = 'web1'\n[node] # <-\ndata_dir = '/d'\n", "node", "already exists"},
		{"date for a string", "[node]\nname = 'web1'\ndata_dir = 1979-05-27 # <-\n", "node.data_dir", "must be a string, not a date"},
		{"string for a number", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\ndelete_guard = 'half' # <-\n", "folders[0].delete_guard", "must be a number, not a string"},

		// Missing and empty required keys.
		{"no node table", "[[folders]]\nid = 'a'\npath = '/srv'\n", "node", "missing [node] table"},
		{"empty file", "", "node", "missing [node] table"},
		{"node.name missing", "[node] # <-\ndata_dir = '/d'\n", "node.name", "required key is missing"},
		{"node.name empty", "[node]\nname = '' # <-\ndata_dir = '/d'\n", "node.name", "must not be empty"},
		{"node.data_dir missing", "[node] # <-\nname = 'web1'\n", "node.data_dir", "required key is missing"},
		{"folder id missing", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\n[[folders]] # <-\npath = '$D/uploads'\n", "folders[1].id", "required key is missing"},
		{"folder path missing", nodeTable + "[[folders]] # <-\nid = 'a'\n", "folders[0].path", "required key is missing"},
		{"peer name missing", nodeTable + "[[peers]] # <-\nid = 'id-02'\naddress = 'h:1'\n", "peers[0].name", "required key is missing"},
		{"peer id missing", nodeTable + "[[peers]] # <-\nname = 'web2'\naddress = 'h:1'\n", "peers[0].id", "required key is missing"},
		{"peer address missing", nodeTable + "[[peers]] # <-\nname = 'web2'\nid = 'id-02'\n", "peers[0].address", "required key is missing"},

		// Names and ids.
		{"duplicate peer names", nodeTable + `
[[peers]]
name = "web2"
id = "id-02"
address = "10.0.0.2:7400"
[[peers]]
name = "web2" # <-
id = "id-03"
address = "10.0.0.3:7400"
`, "peers[1].name", `"web2" is already the name of peers[0] (line 6)`},
		{"duplicate peer ids, spelt differently", nodeTable + `
[[peers]]
name = "web2"
id = "id-0a"
address = "10.0.0.2:7400"
[[peers]]
name = "web3"
id = "ID-0A" # <-
address = "10.0.0.3:7400"
`, "peers[1].id", "the same node ID as peers[0] (line 7)"},
		{"peer named like this node", nodeTable + "[[peers]]\nname = 'web1' # <-\nid = 'id-02'\naddress = 'h:1'\n", "peers[0].name", "this node's own name"},
		{"unparsable peer id", nodeTable + "[[peers]]\nname = 'web2'\nid = 'web2-key' # <-\naddress = 'h:1'\n", "peers[0].id", `not a valid node ID: want "id-" and hex digits`},
		{"duplicate folder ids in the third table", nodeTable + `
[[folders]]
id = "docroot"
path = '$D/site'
[[folders]]
id = "uploads"
path = '$D/uploads'
[[folders]]
id = "docroot" # <-
path = '$D/sessions'
`, "folders[2].id", `"docroot" is already the id of folders[0] (line 6)`},
		{"invalid node name", "[node]\nname = 'web 1' # <-\ndata_dir = '/d'\n", "node.name", `"web 1" is not a valid name`},
		{"invalid folder id", nodeTable + "[[folders]]\nid = '../x' # <-\npath = '$D/site'\n", "folders[0].id", `"../x" is not a valid name`},
		{"name too long", "[node]\nname = '" + strings.Repeat("w", 65) + "' # <-\ndata_dir = '/d'\n", "node.name", "is not a valid name"},

		// Folder peers.
		{"folder names an unknown peer", nodeTable + twoPeers + `
[[folders]]
id = "a"
path = '$D/site'
peers = [
  "web2",
  "web9", # <-
]
`, "folders[0].peers[1]", `"web9" is not the name of any [[peers]] entry`},
		{"folder names this node", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\npeers = ['web1', 'web2'] # <-\n", "folders[0].peers[0]", `"web1" is this node`},
		{"folder names a peer twice", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\npeers = ['web2', 'web2'] # <-\n", "folders[0].peers[1]", `"web2" is listed twice`},

		// Folder paths.
		{"folder path does not exist", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/nowhere' # <-\n", "folders[0].path", "does not exist"},
		{"folder path is a file", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/plain' # <-\n", "folders[0].path", "is not a directory"},
		{"folder inside another", nodeTable + `
[[folders]]
id = "a"
path = '$D/site'
[[folders]]
id = "b"
path = '$D/site/inner' # <-
`, "folders[1].path", "is inside folders[0].path"},
		{"folder containing another", nodeTable + `
[[folders]]
id = "a"
path = '$D/site/inner'
[[folders]]
id = "b"
path = '$D/site/' # <-
`, "folders[1].path", "contains folders[0].path"},
		{"same folder twice, spelt differently", nodeTable + `
[[folders]]
id = "a"
path = '$D/site'
[[folders]]
id = "b"
path = '$D/uploads/../site' # <-
`, "folders[1].path", "is the same directory as folders[0].path"},
		{"same folder through a symlink", nodeTable + `
[[folders]]
id = "a"
path = '$D/site'
[[folders]]
id = "b"
path = '$D/alias/inner' # <-
`, "folders[1].path", "is inside folders[0].path"},
		{"data dir inside a folder", "[node]\nname = 'web1'\ndata_dir = '$D/site/.lockstep' # <-\n[[folders]]\nid = 'a'\npath = '$D/site'\n", "node.data_dir", "is inside folders[0].path"},
		{"folder inside the data dir", "[node]\nname = 'web1'\ndata_dir = '$D' # <-\n[[folders]]\nid = 'a'\npath = '$D/site'\n", "node.data_dir", "contains folders[0].path"},

		// Mode and quorum.
		{"unknown mode", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'sync' # <-\n", "folders[0].mode", `"sync" is neither "async" nor "quorum"`},
		{"quorum above the node count", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\nquorum = 4 # <-\n", "folders[0].quorum", "4 exceeds the folder's 3 nodes"},
		{"quorum above the folder's own nodes", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\npeers = ['web3']\nquorum = 3 # <-\n", "folders[0].quorum", "3 exceeds the folder's 2 nodes"},
		{"quorum with no peers", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\nquorum = 2 # <-\n", "folders[0].quorum", "2 exceeds the folder's 1 node"},
		{"quorum zero", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\nquorum = 0 # <-\n", "folders[0].quorum", "0 is less than 1"},
		{"quorum negative", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'quorum'\nquorum = -2 # <-\n", "folders[0].quorum", "-2 is less than 1"},
		{"quorum too large in async mode", nodeTable + twoPeers + "[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'async'\nquorum = 4 # <-\n", "folders[0].quorum", "4 exceeds the folder's 3 nodes"},

		// Addresses.
		{"peer address without port", nodeTable + "[[peers]]\nname = 'web2'\nid = 'id-02'\naddress = '10.0.0.2' # <-\n", "peers[0].address", `"10.0.0.2" is not host:port (missing port in address)`},
		{"peer address with a named port", nodeTable + "[[peers]]\nname = 'web2'\nid = 'id-02'\naddress = '10.0.0.2:lockstep' # <-\n", "peers[0].address", `port "lockstep" is not a number from 1 to 65535`},
		{"peer address with port 0", nodeTable + "[[peers]]\nname = 'web2'\nid = 'id-02'\naddress = 'web2:0' # <-\n", "peers[0].address", `port "0" is not a number`},
		{"peer address without host", nodeTable + "[[peers]]\nname = 'web2'\nid = 'id-02'\naddress = ':7400' # <-\n", "peers[0].address", `":7400" has no host`},
		{"bad IPv6 peer address", nodeTable + "[[peers]]\nname = 'web2'\nid = 'id-02'\naddress = '::1:7400' # <-\n", "peers[0].address", "too many colons"},
		{"listen port too large", "[node]\nname = 'web1'\ndata_dir = '/d'\nlisten = '0.0.0.0:70000' # <-\n", "node.listen", `port "70000" is not a number`},
		{"listen empty", "[node]\nname = 'web1'\ndata_dir = '/d'\nlisten = '' # <-\n", "node.listen", "is not host:port"},
		{"metrics without port", "[node]\nname = 'web1'\ndata_dir = '/d'\nmetrics = '127.0.0.1' # <-\n", "node.metrics", "missing port"},
		{"control empty", "[node]\nname = 'web1'\ndata_dir = '/d'\ncontrol = '' # <-\n", "node.control", "must not be empty"},

		// Durations and the delete guard.
		{"bad duration", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\nsettle = 'fast' # <-\n", "folders[0].settle", `"fast" is not a duration`},
		{"days are not a duration unit", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\ntombstone_retention = '30d' # <-\n", "folders[0].tombstone_retention", `"30d" is not a duration`},
		{"settle zero", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\nsettle = '0s' # <-\n", "folders[0].settle", "must be more than 0"},
		{"negative rescan", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\nrescan = '-1h' # <-\n", "folders[0].rescan", `"-1h" is negative`},
		{"delete guard above 1", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\ndelete_guard = 1.5 # <-\n", "folders[0].delete_guard", "1.5 is not a share from 0 to 1"},
		{"delete guard NaN", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\ndelete_guard = nan # <-\n", "folders[0].delete_guard", "NaN is not a share"},
		{"delete guard min negative", nodeTable + "[[folders]]\nid = 'a'\npath = '$D/site'\ndelete_guard_min = -1 # <-\n", "folders[0].delete_guard_min", "-1 is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t)
			_, path, err := load(t, dir, tc.text, testOpts)
			if err == nil {
				t.Fatal("loaded without error")
			}
			t.Log(err)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is a %T, want *Error", err, err)
			}
			line := 0
			for i, l := range strings.Split(tc.text, "\n") {
				if strings.Contains(l, "# <-") {
					line = i + 1
				}
			}
			if ce.File != path || ce.Line != line || ce.Key != tc.key {
				t.Errorf("error at %s:%d key %q, want %s:%d key %q (%v)", ce.File, ce.Line, ce.Key, path, line, tc.key, err)
			}
			if !strings.Contains(ce.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", ce.Msg, tc.msg)
			}
			want := path + ":"
			if line > 0 {
				want += fmt.Sprint(line) + ":"
			}
			if tc.key != "" {
				want += " " + tc.key + ":"
			}
			if s := err.Error(); !strings.HasPrefix(s, want) || strings.ContainsAny(s, "\n\r") {
				t.Errorf("Error() = %q, want one line starting %q", s, want)
			}
		})
	}
}

// TestFirstErrorReported checks that of several errors the one nearest the
// top of the file is reported, whatever order they are checked in.
func TestFirstErrorReported(t *testing.T) {
	dir := tree(t)
	_, _, err := load(t, dir, `[[folders]]
id = "a"
path = '$D/site'
mode = "quorum"
quorum = 9

[node]
name = "web1"
data_dir = '$D/data'
`, testOpts)
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 5 || ce.Key != "folders[0].quorum" {
		t.Fatalf("got %v, want the quorum on line 5", err)
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		err  Error
		want string
	}{
		{Error{File: "lockstep.toml", Line: 12, Key: "folders[2].quorum", Msg: "4 exceeds the folder's 3 nodes"},
			"lockstep.toml:12: folders[2].quorum: 4 exceeds the folder's 3 nodes"},
		{Error{File: "lockstep.toml", Line: 3, Msg: "invalid TOML: x"}, "lockstep.toml:3: invalid TOML: x"},
		{Error{File: "/etc/lockstep/lockstep.toml", Key: "node", Msg: "missing [node] table"},
			"/etc/lockstep/lockstep.toml: node: missing [node] table"},
		{Error{File: "a.toml", Line: 1, Key: "k", Msg: "two\nlines\r"}, `a.toml:1: k: two\nlines\r`},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestUnknownKeyQuoted(t *testing.T) {
	_, err := Parse([]byte("[node]\nname = 'web1'\ndata_dir = '/d'\n\"bad\\nkey\" = 1\n"), "x.toml", Options{})
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != `node."bad\nkey"` || ce.Line != 4 {
		t.Fatalf("got %#v, want node.\"bad\\nkey\" on line 4", err)
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.toml")
	_, err := Load(missing, Options{})
	var ce *Error
	if !errors.As(err, &ce) || ce.File != missing || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an *Error naming %s that is fs.ErrNotExist", err, missing)
	}
	if want := missing + ": cannot read: no such file or directory"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}

	_, err = Load(dir, Options{})
	if !errors.As(err, &ce) || ce.File != dir || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("loading a directory: got %v", err)
	}

	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#\n", maxFileSize/2+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(big, Options{})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("loading an oversized file: got %v", err)
	}
}

func TestDefaults(t *testing.T) {
	dir := tree(t)
	c, _, err := load(t, dir, nodeTable+twoPeers+`
[[folders]]
id = "docroot"
path = '$D/site'

[[folders]]
id = "uploads"
path = '$D/uploads'
mode = "quorum"
`, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantNode := Node{
		Name:    "web1",
		DataDir: filepath.Join(dir, "data"),
		Listen:  "0.0.0.0:7400",
		Control: filepath.Join(dir, "data", "control.sock"),
	}
	if c.Node != wantNode {
		t.Errorf("node = %+v, want %+v", c.Node, wantNode)
	}
	want := Folder{
		ID:                 "docroot",
		Path:               filepath.Join(dir, "site"),
		Mode:               ModeAsync,
		Quorum:             0,
		Peers:              []string{"web2", "web3"},
		Settle:             50 * time.Millisecond,
		Rescan:             time.Hour,
		TombstoneRetention: 720 * time.Hour,
		DeleteGuard:        0.5,
		DeleteGuardMin:     100,
	}
	if !reflect.DeepEqual(c.Folders[0], want) {
		t.Errorf("async folder = %+v\nwant %+v", c.Folders[0], want)
	}
	if f := c.Folders[1]; f.Mode != ModeQuorum || f.Quorum != 2 {
		t.Errorf("quorum folder: mode %q quorum %d, want quorum 2 (majority of 3)", f.Mode, f.Quorum)
	}
}

func TestDefaultQuorum(t *testing.T) {
	for nodes, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4, 32: 17} {
		if got := DefaultQuorum(nodes); got != want {
			t.Errorf("DefaultQuorum(%d) = %d, want %d", nodes, got, want)
		}
	}
	// The default follows the folder's own peers, not every peer.
	dir := tree(t)
	c, _, err := load(t, dir, nodeTable+twoPeers+`
[[folders]]
id = "a"
path = '$D/site'
mode = "quorum"
peers = ["web2"]

[[folders]]
id = "b"
path = '$D/uploads'
mode = "quorum"
peers = []
`, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if n, q := c.FolderNodes(c.Folders[0]), c.Folders[0].Quorum; n != 2 || q != 2 {
		t.Errorf("folder with one peer: %d nodes, quorum %d; want 2 and 2", n, q)
	}
	if f := c.Folders[1]; f.Peers == nil || len(f.Peers) != 0 || c.FolderNodes(f) != 1 || f.Quorum != 1 {
		t.Errorf("folder with peers = []: peers %#v, %d nodes, quorum %d; want none, 1, 1", f.Peers, c.FolderNodes(f), f.Quorum)
	}
	if n := c.FolderNodes(Folder{ID: "by hand"}); n != 3 {
		t.Errorf("FolderNodes of a folder with nil Peers = %d, want every peer and this node, 3", n)
	}
}

func TestLookups(t *testing.T) {
	dir := tree(t)
	c, _, err := load(t, dir, nodeTable+twoPeers+"[[folders]]\nid = 'docroot'\npath = '$D/site'\n", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Peer("web3"); !ok || p.Address != "10.0.0.3:7400" || p.ID != "id-03" {
		t.Errorf("Peer(web3) = %+v, %v", p, ok)
	}
	if _, ok := c.Peer("web1"); ok {
		t.Error("Peer(web1) found this node")
	}
	if f, ok := c.Folder("docroot"); !ok || f.Path != filepath.Join(dir, "site") {
		t.Errorf("Folder(docroot) = %+v, %v", f, ok)
	}
	if _, ok := c.Folder("nope"); ok {
		t.Error("Folder(nope) found")
	}
}

// TestCanonicalID checks that peer IDs are stored as ParseID returns them,
// and as written without a ParseID.
func TestCanonicalID(t *testing.T) {
	dir := tree(t)
	text := nodeTable + "[[peers]]\nname = 'web2'\nid = 'ID-AB'\naddress = 'web2.example.com:7400'\n"
	c, _, err := load(t, dir, text, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Peers[0].ID != "id-ab" {
		t.Errorf("ID = %q, want the canonical id-ab", c.Peers[0].ID)
	}
	c, _, err = load(t, dir, text, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Peers[0].ID != "ID-AB" {
		t.Errorf("without ParseID, ID = %q, want it as written", c.Peers[0].ID)
	}
}

// TestRelativePaths checks that relative paths start at the configuration
// file's directory, wherever the daemon runs.
func TestRelativePaths(t *testing.T) {
	dir := tree(t)
	t.Chdir(t.TempDir())
	c, _, err := load(t, dir, `
[node]
name = "web1"
data_dir = "state"
control = "run/ctl.sock"

[[folders]]
id = "a"
path = "site/"
`, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.DataDir != filepath.Join(dir, "state") || c.Node.Control != filepath.Join(dir, "run", "ctl.sock") || c.Folders[0].Path != filepath.Join(dir, "site") {
		t.Errorf("data_dir %q, control %q, folder %q: want them under %s", c.Node.DataDir, c.Node.Control, c.Folders[0].Path, dir)
	}

	// Without a file name, they start at the working directory.
	t.Chdir(dir)
	c, err = Parse([]byte("[node]\nname = 'web1'\ndata_dir = 'state'\n[[folders]]\nid = 'a'\npath = 'site'\n"), "", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.DataDir != filepath.Join(dir, "state") || c.Folders[0].Path != filepath.Join(dir, "site") {
		t.Errorf("data_dir %q, folder %q: want them under the working directory %s", c.Node.DataDir, c.Folders[0].Path, dir)
	}
}

// TestSymlinkKept checks that a folder given through a symlink keeps the
// symlink in its path.
func TestSymlinkKept(t *testing.T) {
	dir := tree(t)
	c, _, err := load(t, dir, nodeTable+"[[folders]]\nid = 'a'\npath = '$D/alias'\n", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Folders[0].Path != filepath.Join(dir, "alias") {
		t.Errorf("path = %q, want the symlink %q", c.Folders[0].Path, filepath.Join(dir, "alias"))
	}
}

// TestSpecExample parses the SPEC's example with real directories. The
// SPEC's folder sets quorum = 2 and names web3, so this one is in quorum
// mode and has a web3 peer: as printed, the example is rejected.
func TestSpecExample(t *testing.T) {
	dir := tree(t)
	c, _, err := load(t, dir, `[node]
name     = "web1"                  # unique in the cluster
data_dir = '$D/lib'                # identity, index, conflict store
listen   = "0.0.0.0:7400"          # UDP address for QUIC
control  = '$D/run/control.sock'   # optional; default <data_dir>/control.sock
metrics  = "127.0.0.1:9740"        # optional; HTTP /metrics (Prometheus) and /healthz

[[peers]]
name    = "web2"
id      = "id-2222"
address = "10.0.0.2:7400"

[[peers]]
name    = "web3"
id      = "id-3333"
address = "[fd00::3]:7400"

[[folders]]
id     = "docroot"                 # same id on every node that shares it
path   = '$D/site'
mode   = "quorum"                  # "async" (default) or "quorum"
quorum = 2                         # quorum mode only; default: a majority of the folder's nodes
peers  = ["web2", "web3"]          # optional; default: every peer
ignore = ["*.swp", "cache/**"]     # gitignore-style patterns, relative to path
owner  = "www-data"                # optional; owner/group given to files lockstep writes
group  = "www-data"                #   (default: preserve the sender's numeric ids when root)
`, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Node: Node{
			Name:    "web1",
			DataDir: filepath.Join(dir, "lib"),
			Listen:  "0.0.0.0:7400",
			Control: filepath.Join(dir, "run", "control.sock"),
			Metrics: "127.0.0.1:9740",
		},
		Peers: []Peer{
			{Name: "web2", ID: "id-2222", Address: "10.0.0.2:7400"},
			{Name: "web3", ID: "id-3333", Address: "[fd00::3]:7400"},
		},
		Folders: []Folder{{
			ID:                 "docroot",
			Path:               filepath.Join(dir, "site"),
			Mode:               ModeQuorum,
			Quorum:             2,
			Peers:              []string{"web2", "web3"},
			Ignore:             []string{"*.swp", "cache/**"},
			Owner:              "www-data",
			Group:              "www-data",
			Settle:             DefaultSettle,
			Rescan:             DefaultRescan,
			TombstoneRetention: DefaultTombstoneRetention,
			DeleteGuard:        DefaultDeleteGuard,
			DeleteGuardMin:     DefaultDeleteGuardMin,
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// TestExampleFile checks that the commented example shipped for operators
// parses, with its paths taken as written for another machine.
func TestExampleFile(t *testing.T) {
	c, err := Load("testdata/example.toml", Options{SkipPathChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.Name != "web1" || len(c.Peers) != 2 || len(c.Folders) != 3 {
		t.Fatalf("example: node %q, %d peers, %d folders; want web1, 2, 3", c.Node.Name, len(c.Peers), len(c.Folders))
	}
	docroot, _ := c.Folder("docroot")
	if docroot.Path != "/var/www/html" || docroot.Mode != ModeAsync || docroot.Owner != "www-data" {
		t.Errorf("docroot = %+v", docroot)
	}
	uploads, _ := c.Folder("uploads")
	if uploads.Mode != ModeQuorum || uploads.Quorum != 2 {
		t.Errorf("uploads = %+v, want quorum 2", uploads)
	}
	sessions, _ := c.Folder("sessions")
	if sessions.Settle != 20*time.Millisecond || len(sessions.Peers) != 1 || sessions.DeleteGuard != 0 {
		t.Errorf("sessions = %+v", sessions)
	}
}

// TestSkipPathChecks checks that SkipPathChecks accepts missing folders
// but still rejects overlapping ones.
func TestSkipPathChecks(t *testing.T) {
	text := "[node]\nname = 'web1'\ndata_dir = '/nonexistent/lib'\n[[folders]]\nid = 'a'\npath = '/nonexistent/www'\n"
	if _, err := Parse([]byte(text), "x.toml", Options{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("with path checks: got %v, want a missing folder", err)
	}
	if _, err := Parse([]byte(text), "x.toml", Options{SkipPathChecks: true}); err != nil {
		t.Errorf("without path checks: %v", err)
	}
	text += "[[folders]]\nid = 'b'\npath = '/nonexistent/www/uploads'\n"
	if _, err := Parse([]byte(text), "x.toml", Options{SkipPathChecks: true}); err == nil || !strings.Contains(err.Error(), "x.toml:9: folders[1].path:") {
		t.Errorf("overlap without path checks: got %v", err)
	}
}

// TestQuorumIgnoredInAsyncMode: SPEC's example sets quorum beside
// mode = "async"; it is checked but has no effect.
func TestQuorumIgnoredInAsyncMode(t *testing.T) {
	dir := tree(t)
	c, _, err := load(t, dir, nodeTable+twoPeers+"[[folders]]\nid = 'a'\npath = '$D/site'\nmode = 'async'\nquorum = 2\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Folders[0]; f.Mode != ModeAsync || f.Quorum != 0 {
		t.Fatalf("folder = mode %q quorum %d, want async with quorum 0", f.Mode, f.Quorum)
	}
}
