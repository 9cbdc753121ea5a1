package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"lockstep/config"
)

// reloadConfig builds a configuration: node is extra [node] lines, peers
// the [[peers]] tables and folders the [[folders]] tables, as TOML.
func reloadConfig(t *testing.T, node, peers, folders string) *config.Config {
	t.Helper()
	data := fmt.Sprintf("[node]\nname = \"web1\"\ndata_dir = \"/var/lib/lockstep\"\n%s\n%s\n%s", node, peers, folders)
	cfg, err := config.Parse([]byte(data), "/etc/lockstep/lockstep.toml", config.Options{SkipPathChecks: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	return cfg
}

const (
	peer2  = "[[peers]]\nname = \"web2\"\nid = \"ID2\"\naddress = \"10.0.0.2:7400\"\n"
	peer3  = "[[peers]]\nname = \"web3\"\nid = \"ID3\"\naddress = \"10.0.0.3:7400\"\n"
	docs   = "[[folders]]\nid = \"docroot\"\npath = \"/srv/www\"\n"
	upload = "[[folders]]\nid = \"uploads\"\npath = \"/srv/uploads\"\nmode = \"quorum\"\npeers = [\"web2\"]\n"
)

func TestPlanReload(t *testing.T) {
	base := func(t *testing.T) *config.Config { return reloadConfig(t, "", peer2+peer3, docs+upload) }
	tests := []struct {
		name                 string
		node, peers, folders string
		// want lists the changed keys, "live:" or "restart:" first.
		want  []string
		check func(t *testing.T, eff *config.Config)
	}{
		{name: "unchanged", peers: peer2 + peer3, folders: docs + upload},
		{
			name: "peer added", peers: peer2 + peer3 + "[[peers]]\nname = \"web4\"\nid = \"ID4\"\naddress = \"10.0.0.4:7400\"\n", folders: docs + upload,
			// docroot shares with every peer by default.
			want: []string{"live:peers.web4", "live:folders.docroot.peers"},
			check: func(t *testing.T, eff *config.Config) {
				if f, _ := eff.Folder("docroot"); !slices.Equal(f.Peers, []string{"web2", "web3", "web4"}) {
					t.Errorf("docroot peers %v", f.Peers)
				}
			},
		},
		{
			name: "peer removed", peers: peer2, folders: docs + upload,
			want: []string{"live:peers.web3", "live:folders.docroot.peers"},
			check: func(t *testing.T, eff *config.Config) {
				if len(eff.Peers) != 1 || eff.Peers[0].Name != "web2" {
					t.Errorf("peers %+v", eff.Peers)
				}
			},
		},
		{
			name: "peer address and id changed", peers: strings.NewReplacer("10.0.0.2", "10.9.9.2", "ID2", "ID2b").Replace(peer2) + peer3, folders: docs + upload,
			want: []string{"live:peers.web2.id", "live:peers.web2.address"},
		},
		{
			name: "node table needs a restart", node: "listen = \"0.0.0.0:7500\"\nmetrics = \"127.0.0.1:9740\"", peers: peer2 + peer3, folders: docs + upload,
			want: []string{"restart:node.listen", "restart:node.metrics"},
			check: func(t *testing.T, eff *config.Config) {
				if eff.Node.Listen != config.DefaultListen || eff.Node.Metrics != "" {
					t.Errorf("effective node %+v, want the running one", eff.Node)
				}
			},
		},
		{
			name: "thresholds apply live", peers: peer2 + peer3,
			folders: docs + "ignore = [\"*.swp\"]\nsettle = \"2s\"\nrescan = \"10m\"\ntombstone_retention = \"1h\"\ndelete_guard = 0.2\ndelete_guard_min = 10\nowner = \"www-data\"\n" + upload,
			want: []string{"live:folders.docroot.ignore", "live:folders.docroot.owner", "live:folders.docroot.settle", "live:folders.docroot.rescan",
				"live:folders.docroot.tombstone_retention", "live:folders.docroot.delete_guard", "live:folders.docroot.delete_guard_min"},
			check: func(t *testing.T, eff *config.Config) {
				f, _ := eff.Folder("docroot")
				if f.Settle != 2*time.Second || f.Rescan != 10*time.Minute || f.TombstoneRetention != time.Hour ||
					f.DeleteGuard != 0.2 || f.DeleteGuardMin != 10 || !slices.Equal(f.Ignore, []string{"*.swp"}) || f.Owner != "www-data" {
					t.Errorf("effective docroot %+v", f)
				}
			},
		},
		{
			name: "path and mode need a restart", peers: peer2 + peer3,
			folders: strings.Replace(docs, "/srv/www", "/srv/www2", 1) + "mode = \"quorum\"\n" + upload,
			want:    []string{"restart:folders.docroot.path", "restart:folders.docroot.mode"},
			check: func(t *testing.T, eff *config.Config) {
				f, _ := eff.Folder("docroot")
				if f.Path != "/srv/www" || f.Mode != config.ModeAsync || f.Quorum != 0 {
					t.Errorf("effective docroot %+v, want the running path and mode", f)
				}
			},
		},
		{
			name: "quorum applies live", peers: peer2 + peer3, folders: docs + strings.Replace(upload, "peers = [\"web2\"]", "peers = [\"web2\", \"web3\"]\nquorum = 3", 1),
			want: []string{"live:folders.uploads.quorum", "live:folders.uploads.peers"},
		},
		{
			name: "folder added needs a restart", peers: peer2 + peer3, folders: docs + upload + "[[folders]]\nid = \"tmp\"\npath = \"/srv/tmp\"\n",
			want: []string{"restart:folders.tmp"},
			check: func(t *testing.T, eff *config.Config) {
				if _, ok := eff.Folder("tmp"); ok || len(eff.Folders) != 2 {
					t.Errorf("effective folders %+v, want the running two", eff.Folders)
				}
			},
		},
		{
			name: "folder removed keeps running without removed peers", peers: peer3, folders: docs,
			want: []string{"live:peers.web2", "live:folders.docroot.peers", "restart:folders.uploads", "live:folders.uploads.peers"},
			check: func(t *testing.T, eff *config.Config) {
				f, ok := eff.Folder("uploads")
				if !ok || len(f.Peers) != 0 || f.Quorum != 1 {
					t.Errorf("effective uploads %+v (kept: %v), want it kept alone with quorum 1", f, ok)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := base(t)
			plan := planReload(old, reloadConfig(t, tt.node, tt.peers, tt.folders))
			var got []string
			for _, c := range plan.Changes {
				mode := "restart:"
				if c.Live {
					mode = "live:"
				}
				got = append(got, mode+c.Key)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("changes %q, want %q", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, plan.Effective)
			}
			if e := plan.Effective; e.Node != old.Node {
				t.Errorf("effective node %+v, want the running %+v", e.Node, old.Node)
			}
		})
	}
}
