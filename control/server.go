package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Backend is what the daemon provides to the control API. Its methods are
// called concurrently, one call per request.
type Backend interface {
	// Status returns the node's current status; folder, when not empty,
	// restricts it to one folder (an unknown folder is an error).
	Status(ctx context.Context, folder string) (Status, error)
	// Conflicts lists the versions that lost a conflict.
	Conflicts(ctx context.Context, folder string) ([]Conflict, error)
	// Wait blocks until every path's current version is committed, or ctx
	// ends; it answers with what is still missing then.
	Wait(ctx context.Context, paths []string) (WaitResponse, error)
	// Resume re-checks a paused folder (all folders when folder is empty)
	// and rescans it; acceptDeletes lets held-back deletions through.
	Resume(ctx context.Context, folder string, acceptDeletes bool) error
	// Resync starts a resync of a folder (all folders when folder is
	// empty) and returns the folders it started; progress shows in Status.
	Resync(ctx context.Context, folder string) ([]string, error)
}

// ErrBadRequest marks a Backend error as the caller's fault (an unknown
// folder, a path outside every folder): it is answered with 400.
var ErrBadRequest = errors.New("bad request")

// DefaultWaitTimeout applies when a WaitRequest names none.
const DefaultWaitTimeout = 30 * time.Second

// Server serves the control API on a unix socket.
type Server struct {
	socket  string
	backend Backend
	log     *slog.Logger
}

// NewServer returns a server for the socket path. It starts nothing.
func NewServer(socket string, b Backend, log *slog.Logger) *Server {
	return &Server{socket: socket, backend: b, log: log}
}

// Handler returns the HTTP handler, for tests and for serving elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/conflicts", s.conflicts)
	mux.HandleFunc("POST /v1/wait", s.wait)
	mux.HandleFunc("GET /v1/wait", s.wait)
	mux.HandleFunc("POST /v1/resume", s.resume)
	mux.HandleFunc("POST /v1/resync", s.resync)
	return mux
}

// Run listens on the socket and serves until ctx ends, then removes the
// socket. A socket left behind by a dead daemon is replaced; one that a
// live daemon answers on is an error.
func (s *Server) Run(ctx context.Context) error {
	ln, err := listen(s.socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
		os.Remove(s.socket)
		return fmt.Errorf("control socket %s: %w", s.socket, err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Waiters block for up to their timeout: do not hold shutdown for them.
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	<-errc
	os.Remove(s.socket)
	return nil
}

func listen(socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o750); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	if _, err := os.Lstat(socket); err == nil {
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another lockstep daemon is answering on it", socket)
		}
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", socket, err)
		}
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	return ln, nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.backend.Status(r.Context(), r.URL.Query().Get("folder"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) conflicts(w http.ResponseWriter, r *http.Request) {
	list, err := s.backend.Conflicts(r.Context(), r.URL.Query().Get("folder"))
	if err != nil {
		writeError(w, err)
		return
	}
	if list == nil {
		list = []Conflict{}
	}
	writeJSON(w, http.StatusOK, list)
}

// wait answers 200 when every path is committed and 504 when the timeout
// passed first; both carry a WaitResponse. GET takes ?path=...&timeout=...,
// handy for curl from an upload handler.
func (s *Server) wait(w http.ResponseWriter, r *http.Request) {
	var req WaitRequest
	if r.Method == http.MethodGet {
		req.Paths = r.URL.Query()["path"]
		req.Timeout = r.URL.Query().Get("timeout")
	} else if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: wait request: %v", ErrBadRequest, err))
		return
	}
	timeout := DefaultWaitTimeout
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			writeError(w, fmt.Errorf("%w: timeout %q is not a positive duration", ErrBadRequest, req.Timeout))
			return
		}
		timeout = d
	}
	if len(req.Paths) == 0 {
		writeError(w, fmt.Errorf("%w: no path to wait for", ErrBadRequest))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp, err := s.backend.Wait(ctx, req.Paths)
	if err != nil {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if !resp.Committed {
		code = http.StatusGatewayTimeout
	}
	writeJSON(w, code, resp)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	var req ResumeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: resume request: %v", ErrBadRequest, err))
		return
	}
	if err := s.backend.Resume(r.Context(), req.Folder, req.AcceptDeletes); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) resync(w http.ResponseWriter, r *http.Request) {
	var req ResyncRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: resync request: %v", ErrBadRequest, err))
		return
	}
	folders, err := s.backend.Resync(r.Context(), req.Folder)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ResyncResponse{Folders: folders})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrBadRequest) {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, ErrorBody{Error: err.Error()})
}
