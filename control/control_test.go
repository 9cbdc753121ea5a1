package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeBackend struct{}

func (fakeBackend) Status(_ context.Context, folder string) (Status, error) {
	if folder != "" && folder != "docroot" {
		return Status{}, fmt.Errorf("%w: unknown folder %q", ErrBadRequest, folder)
	}
	return Status{Node: "web1", ID: "ID", Folders: []FolderStatus{{
		ID: "docroot", Path: "/var/www", Mode: "async", State: StateIdle, Files: 3,
		Peers: []PeerStatus{{Name: "web2", Connected: true, LastSeen: time.Unix(100, 0).UTC()}},
	}}}, nil
}

func (fakeBackend) Conflicts(context.Context, string) ([]Conflict, error) { return nil, nil }

func (fakeBackend) Resume(_ context.Context, folder string, _ bool) error {
	if folder != "" && folder != "docroot" {
		return fmt.Errorf("%w: unknown folder %q", ErrBadRequest, folder)
	}
	return nil
}

func (fakeBackend) Resync(_ context.Context, folder string) ([]string, error) {
	if folder != "" && folder != "docroot" {
		return nil, fmt.Errorf("%w: unknown folder %q", ErrBadRequest, folder)
	}
	return []string{"docroot"}, nil
}

func (fakeBackend) Wait(ctx context.Context, paths []string) (WaitResponse, error) {
	if paths[0] == "/slow" {
		<-ctx.Done()
		return WaitResponse{Missing: []WaitMissing{{Path: "/slow", Peers: []string{"web3"}, Reason: "not held"}}}, nil
	}
	return WaitResponse{Committed: true}, nil
}

func serve(t *testing.T) (string, func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv := NewServer(sock, fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control server did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sock, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	sock, stop := serve(t)
	defer stop()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	c := NewClient(sock)
	ctx := context.Background()
	st, err := c.Status(ctx, "")
	if err != nil || st.Node != "web1" || len(st.Folders) != 1 || st.Folders[0].Peers[0].Name != "web2" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if _, err := c.Status(ctx, "nope"); err == nil || !strings.Contains(err.Error(), `unknown folder "nope"`) {
		t.Fatalf("unknown folder error = %v", err)
	}
	if err := c.Resume(ctx, ResumeRequest{Folder: "docroot", AcceptDeletes: true}); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := c.Resume(ctx, ResumeRequest{Folder: "nope"}); err == nil {
		t.Fatal("Resume of an unknown folder succeeded")
	}
	if r, err := c.Resync(ctx, ResyncRequest{}); err != nil || len(r.Folders) != 1 || r.Folders[0] != "docroot" {
		t.Fatalf("Resync = %+v, %v", r, err)
	}
	if _, err := c.Resync(ctx, ResyncRequest{Folder: "nope"}); err == nil || !strings.Contains(err.Error(), `unknown folder "nope"`) {
		t.Fatalf("Resync of an unknown folder: %v", err)
	}
	list, err := c.Conflicts(ctx, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("Conflicts = %v, %v", list, err)
	}
	resp, err := c.Wait(ctx, WaitRequest{Paths: []string{"/fast"}})
	if err != nil || !resp.Committed {
		t.Fatalf("Wait fast = %+v, %v", resp, err)
	}
	resp, err = c.Wait(ctx, WaitRequest{Paths: []string{"/slow"}, Timeout: "20ms"})
	if err != nil || resp.Committed || len(resp.Missing) != 1 || resp.Missing[0].Peers[0] != "web3" {
		t.Fatalf("Wait slow = %+v, %v", resp, err)
	}
	if _, err := c.Wait(ctx, WaitRequest{Paths: []string{"/x"}, Timeout: "soon"}); err == nil || !strings.Contains(err.Error(), `timeout "soon"`) {
		t.Fatalf("bad timeout error = %v", err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	sock, stop := serve(t)
	defer stop()
	srv := NewServer(sock, fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err := srv.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another lockstep daemon") {
		t.Fatalf("second server on a live socket: %v", err)
	}
}

func TestStaleSocketReplacedAndNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	_, err := NewClient(sock).Status(context.Background(), "")
	if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("no daemon: error = %v, want ErrNoDaemon naming the socket", err)
	}
	// A socket file nobody listens on, as a killed daemon leaves behind.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewClient(sock).Status(context.Background(), ""); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("stale socket: error = %v, want ErrNoDaemon", err)
	}
	srv := NewServer(sock, fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := NewClient(sock).Status(context.Background(), ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not replace the stale socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
}
