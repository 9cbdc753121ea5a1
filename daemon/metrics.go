package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lockstep/control"
)

// collector turns the daemon's state into Prometheus metrics at scrape
// time, from the same source as `lockstep status`, so the two never
// disagree and nothing is kept twice.
type collector struct{ d *Daemon }

var (
	descFolderState = prometheus.NewDesc("lockstep_folder_state", "1 for the folder's current state (scanning, syncing, idle, paused, error).", []string{"folder", "state"}, nil)
	descFiles       = prometheus.NewDesc("lockstep_folder_files", "Files in the folder's index.", []string{"folder"}, nil)
	descBytes       = prometheus.NewDesc("lockstep_folder_bytes", "Bytes of the files in the folder's index.", []string{"folder"}, nil)
	descUncommitted = prometheus.NewDesc("lockstep_folder_uncommitted_files", "Local versions of a quorum folder that a quorum does not hold yet.", []string{"folder"}, nil)
	descConnected   = prometheus.NewDesc("lockstep_peer_connected", "1 when the peer is connected.", []string{"peer"}, nil)
	descPending     = prometheus.NewDesc("lockstep_peer_pending_files", "File versions this node holds that the peer has not confirmed.", []string{"folder", "peer"}, nil)
	descPendingB    = prometheus.NewDesc("lockstep_peer_pending_bytes", "Bytes of the pending file versions.", []string{"folder", "peer"}, nil)
	descLag         = prometheus.NewDesc("lockstep_peer_lag_seconds", "Age of the oldest version the peer has not confirmed.", []string{"folder", "peer"}, nil)
	descSent        = prometheus.NewDesc("lockstep_peer_sent_bytes_total", "Stream bytes sent to the peer (chunk data as compressed).", []string{"peer"}, nil)
	descReceived    = prometheus.NewDesc("lockstep_peer_received_bytes_total", "Stream bytes received from the peer (chunk data as compressed).", []string{"peer"}, nil)
	descChunks      = prometheus.NewDesc("lockstep_chunks_total", "Chunks used to assemble files, by where they came from (local: this node's disk; fetched: a peer).", []string{"folder", "source"}, nil)
	descChunkBytes  = prometheus.NewDesc("lockstep_chunk_bytes_total", "Chunk bytes used to assemble files, by source.", []string{"folder", "source"}, nil)
	descApplied     = prometheus.NewDesc("lockstep_files_applied_total", "Peers' versions put in place.", []string{"folder"}, nil)
	descConflicts   = prometheus.NewDesc("lockstep_conflicts_total", "Losing versions kept in the conflict store since start.", []string{"folder"}, nil)
	descRetries     = prometheus.NewDesc("lockstep_apply_retries_total", "Peers' versions that could not be applied and were queued again (the log says why).", []string{"folder"}, nil)
	descScanErrors  = prometheus.NewDesc("lockstep_scan_errors_total", "Entries the scanner could not read.", []string{"folder"}, nil)
	descHashed      = prometheus.NewDesc("lockstep_scan_hashed_bytes_total", "Bytes read and hashed by the scanner.", []string{"folder"}, nil)
	descWatchErrors = prometheus.NewDesc("lockstep_watch_errors_total", "Watcher errors (including watches that could not be added).", []string{"folder"}, nil)
	descOverflows   = prometheus.NewDesc("lockstep_watch_overflows_total", "Kernel event-queue overflows, each followed by a rescan.", []string{"folder"}, nil)
	descRescans     = prometheus.NewDesc("lockstep_watch_rescans_total", "Full rescans requested by the watcher (start, overflow, periodic, polling).", []string{"folder"}, nil)
	descWatched     = prometheus.NewDesc("lockstep_watch_dirs", "Directories watched.", []string{"folder"}, nil)
)

// commitBuckets are the commit latency histogram's upper bounds, in
// seconds: 1 ms to 10 s.
var commitBuckets = []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}

func newCommitLatency() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lockstep_commit_latency_seconds",
		Help:    "Time from a local version being recorded to it being committed: held durably by a quorum of nodes (quorum folder) or by every peer (async folder).",
		Buckets: commitBuckets,
	}, []string{"folder"})
}

// observeSeconds adapts a histogram to a callback taking durations.
func observeSeconds(o prometheus.Observer) func(time.Duration) {
	return func(d time.Duration) { o.Observe(d.Seconds()) }
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.d.Status(ctx, "")
	if err != nil {
		c.d.log.Warn("metrics: status failed", "err", err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, f := range st.Folders {
		for _, s := range []string{control.StateScanning, control.StateSyncing, control.StateIdle, control.StatePaused, control.StateError} {
			v := 0.0
			if f.State == s {
				v = 1
			}
			gauge(descFolderState, v, f.ID, s)
		}
		gauge(descFiles, float64(f.Files), f.ID)
		gauge(descBytes, float64(f.Bytes), f.ID)
		gauge(descUncommitted, float64(f.Uncommitted), f.ID)
		for _, p := range f.Peers {
			gauge(descPending, float64(p.PendingFiles), f.ID, p.Name)
			gauge(descPendingB, float64(p.PendingBytes), f.ID, p.Name)
			gauge(descLag, p.LagSeconds, f.ID, p.Name)
		}
		fo := c.d.folders[f.ID]
		k := &fo.engine.Counters
		counter(descChunks, float64(k.ChunksLocal.Load()), f.ID, "local")
		counter(descChunks, float64(k.ChunksFetched.Load()), f.ID, "fetched")
		counter(descChunkBytes, float64(k.BytesLocal.Load()), f.ID, "local")
		counter(descChunkBytes, float64(k.BytesFetched.Load()), f.ID, "fetched")
		counter(descApplied, float64(k.FilesApplied.Load()), f.ID)
		counter(descConflicts, float64(k.Conflicts.Load()), f.ID)
		counter(descRetries, float64(k.Retries.Load()), f.ID)
		ss := fo.scanner.Stats()
		counter(descScanErrors, float64(ss.Errors), f.ID)
		counter(descHashed, float64(ss.BytesHashed), f.ID)
		ws := fo.watcher.Stats()
		counter(descWatchErrors, float64(ws.Errors), f.ID)
		counter(descOverflows, float64(ws.Overflows), f.ID)
		counter(descRescans, float64(ws.Rescans), f.ID)
		gauge(descWatched, float64(ws.WatchedDirs), f.ID)
	}
	for _, t := range st.Traffic {
		v := 0.0
		if t.Connected {
			v = 1
		}
		gauge(descConnected, v, t.Name)
		counter(descSent, float64(t.BytesSent), t.Name)
		counter(descReceived, float64(t.BytesReceived), t.Name)
	}
}

// defaultHealthLag is the lag /healthz tolerates when the request names none.
const defaultHealthLag = 5 * time.Minute

// serveMetrics serves /metrics and /healthz on addr until ctx ends.
func (d *Daemon) serveMetrics(ctx context.Context, addr string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d}, d.commitLatency)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", d.healthz)
	if os.Getenv("LOCKSTEP_PPROF") != "" {
		// Profiling for developers; off by default because profiles
		// reveal file paths and cost CPU.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	d.log.Info("metrics listening", "addr", ln.Addr().String())
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// healthz answers 200 when every folder is idle or syncing and no peer lags
// more than ?max_lag= (default 5m), 503 with the reasons otherwise: a check
// for load balancers.
func (d *Daemon) healthz(w http.ResponseWriter, r *http.Request) {
	maxLag := defaultHealthLag
	if s := r.URL.Query().Get("max_lag"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			http.Error(w, fmt.Sprintf("max_lag %q is not a positive duration", s), http.StatusBadRequest)
			return
		}
		maxLag = v
	}
	st, err := d.Status(r.Context(), "")
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var problems []string
	for _, f := range st.Folders {
		if f.State != control.StateIdle && f.State != control.StateSyncing {
			problems = append(problems, fmt.Sprintf("folder %s is %s: %s", f.ID, f.State, f.Error))
		}
		for _, p := range f.Peers {
			if lag := time.Duration(p.LagSeconds * float64(time.Second)); lag > maxLag {
				problems = append(problems, fmt.Sprintf("folder %s: peer %s lags %s", f.ID, p.Name, lag.Round(time.Millisecond)))
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(problems, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}
