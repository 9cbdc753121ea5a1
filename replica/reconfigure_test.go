package replica

import (
	"testing"

	"lockstep/config"
)

// A folder started without a peer replicates with it once SetPeers adds
// it, and refuses it again once SetPeers removes it.
func TestSetPeersAddsAndRemoves(t *testing.T) {
	a := newTestNode(t, "a", 0xa, nil)
	b := newTestNode(t, "b", 0xb, []Peer{{Name: "a", ID: 0xa}})
	ctx := runEngines(t, a, b)
	if a.engine.Shares(0xb) {
		t.Fatal("a shares the folder with b before SetPeers")
	}
	if _, err := a.engine.Hello(0xb); err == nil {
		t.Fatal("Hello for a peer the folder is not shared with succeeded")
	}
	if err := a.engine.SetPeers([]Peer{{Name: "b", ID: 0xb}}); err != nil {
		t.Fatal(err)
	}
	if !a.engine.Shares(0xb) {
		t.Fatal("a does not share the folder with b after SetPeers")
	}
	a.write("page.html", []byte("hello"))
	cut := link(t, ctx, a, b)
	eventually(t, "page.html on b", hasContent(b, "page.html", []byte("hello")))
	st, err := a.engine.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].Name != "b" {
		t.Fatalf("status peers %+v, want b", st.Peers)
	}
	cut()

	if err := a.engine.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	if a.engine.Shares(0xb) {
		t.Fatal("a still shares the folder with b after removing it")
	}
	if st, _ := a.engine.Status(ctx); len(st.Peers) != 0 {
		t.Fatalf("status peers %+v after removing b", st.Peers)
	}
	if q := a.engine.quorum(); q != 1 {
		t.Fatalf("async quorum %d without peers, want 1", q)
	}
}

func TestReconfigureKeepsIdentityFields(t *testing.T) {
	a := newTestNode(t, "a", 0xa, nil)
	fc := config.Folder{ID: "other", Path: "/elsewhere", Mode: config.ModeQuorum, Quorum: 3, DeleteGuard: 0.2, DeleteGuardMin: 7, Owner: "www-data"}
	a.engine.Reconfigure(fc)
	got := a.engine.conf()
	if got.ID != "docroot" || got.Path != a.dir || got.Mode != config.ModeAsync {
		t.Fatalf("Reconfigure changed the folder's id, path or mode: %+v", got)
	}
	if got.DeleteGuard != 0.2 || got.DeleteGuardMin != 7 || got.Owner != "www-data" || got.Quorum != 3 {
		t.Fatalf("Reconfigure did not apply the thresholds: %+v", got)
	}
}
