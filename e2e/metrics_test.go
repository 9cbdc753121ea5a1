package e2e

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func freeTCPAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// withMetrics gives the node a metrics address in its configuration and
// returns it; call before the node starts.
func (nd *node) withMetrics(t *testing.T) string {
	t.Helper()
	addr := freeTCPAddr(t)
	cfg, err := os.ReadFile(nd.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "\n[[peers]]", fmt.Sprintf("metrics = %q\n\n[[peers]]", addr), 1))
	if err := os.WriteFile(nd.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return addr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads /metrics at addr, failing the test unless it parses as the
// Prometheus text format.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text format: %v", err)
	}
	return families
}

// metricValue is the value of the gauge or counter name whose labels
// include the given ones.
func metricValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	fam, ok := families[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// TestMetricsAndHealthz: /metrics parses as the Prometheus text format and
// agrees with status; /healthz is 200 on a healthy node and 503 when a
// peer lags more than asked.
func TestMetricsAndHealthz(t *testing.T) {
	c := newCluster(t, 2)
	n1 := c.nodes[0]
	addr := n1.withMetrics(t)
	c.start()
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "m.txt"), randomData(5, 300_000), 0o644)
	c.waitInSync(30 * time.Second)

	get := func(path string) (int, string) { return httpGet(t, "http://"+addr+path) }
	families := scrape(t, addr)
	value := func(name string, labels map[string]string) (float64, bool) {
		return metricValue(families, name, labels)
	}
	st, err := n1.status()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := value("lockstep_folder_files", map[string]string{"folder": "docroot"}); !ok || v != float64(st.Folders[0].Files) {
		t.Errorf("lockstep_folder_files = %v (%v), status says %d", v, ok, st.Folders[0].Files)
	}
	if v, ok := value("lockstep_folder_state", map[string]string{"folder": "docroot", "state": "idle"}); !ok || v != 1 {
		t.Errorf("lockstep_folder_state{idle} = %v (%v)", v, ok)
	}
	if v, ok := value("lockstep_peer_lag_seconds", map[string]string{"folder": "docroot", "peer": "node2"}); !ok || v != st.Folders[0].Peers[0].LagSeconds {
		t.Errorf("lockstep_peer_lag_seconds = %v (%v), status says %v", v, ok, st.Folders[0].Peers[0].LagSeconds)
	}
	if v, ok := value("lockstep_peer_connected", map[string]string{"peer": "node2"}); !ok || v != 1 {
		t.Errorf("lockstep_peer_connected = %v (%v)", v, ok)
	}
	if v, ok := value("lockstep_peer_sent_bytes_total", map[string]string{"peer": "node2"}); !ok || v < 300_000*0.9 {
		t.Errorf("lockstep_peer_sent_bytes_total = %v (%v), want about the file's size", v, ok)
	}
	// A write that was waited on is timed from recorded to committed.
	waited := filepath.Join(n1.folders["docroot"], "waited.txt")
	writeAtomic(t, waited, []byte("waited"), 0o644)
	if _, err := n1.lockstep("wait", "--timeout", "20s", waited); err != nil {
		t.Fatalf("wait: %v", err)
	}
	families = scrape(t, addr)
	fam, ok := families["lockstep_commit_latency_seconds"]
	switch {
	case !ok:
		t.Errorf("no lockstep_commit_latency_seconds in /metrics")
	case fam.GetType().String() != "HISTOGRAM" || len(fam.Metric) != 1:
		t.Errorf("lockstep_commit_latency_seconds: type %v, %d series; want one histogram", fam.GetType(), len(fam.Metric))
	default:
		m := fam.Metric[0]
		if len(m.Label) != 1 || m.Label[0].GetName() != "folder" || m.Label[0].GetValue() != "docroot" {
			t.Errorf("lockstep_commit_latency_seconds labels = %v, want folder=docroot", m.Label)
		}
		h := m.GetHistogram()
		if h.GetSampleCount() == 0 || h.GetSampleSum() <= 0 {
			t.Errorf("lockstep_commit_latency_seconds: count %d sum %v after a waited write, want > 0", h.GetSampleCount(), h.GetSampleSum())
		}
		var bounds []float64
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				bounds = append(bounds, b.GetUpperBound())
			}
		}
		if len(bounds) == 0 || bounds[0] != 0.001 || bounds[len(bounds)-1] != 10 {
			t.Errorf("lockstep_commit_latency_seconds bounds = %v, want 1 ms … 10 s", bounds)
		}
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz on a synced node: %d %q", code, body)
	}
	// With node2 down, a new version stays pending and lags.
	c.nodes[1].stop()
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "late.txt"), []byte("late"), 0o644)
	eventually(t, 10*time.Second, func() (bool, string) {
		code, body := get("/healthz?max_lag=1ms")
		return code == 503 && strings.Contains(body, "node2"), fmt.Sprintf("/healthz = %d %q", code, body)
	})
}

// TestNoEcho: a version a node received and put in place is recognised by
// its scanner as already recorded: it is not read again and does not come
// back to its origin as a new version.
func TestNoEcho(t *testing.T) {
	c := newCluster(t, 3)
	addrs := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		addrs[i] = nd.withMetrics(t)
	}
	c.start()
	c.waitInSync(30 * time.Second)
	d1 := c.nodes[0].folders["docroot"]
	for i := range 40 {
		writeAtomic(t, filepath.Join(d1, fmt.Sprintf("d%d/f%d.bin", i%4, i)), randomData(uint64(100+i), 1000+i*7000), 0o644)
	}
	if err := os.Symlink("d0/f0.bin", filepath.Join(d1, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d1, "d1/f1.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.waitInSync(60 * time.Second)
	// Past the watcher's settle and hold times, so an echo would have been
	// scanned and announced by now.
	time.Sleep(3 * time.Second)
	c.waitInSync(30 * time.Second)
	folder := map[string]string{"folder": "docroot"}
	for i, nd := range c.nodes {
		fams := scrape(t, addrs[i])
		applied, _ := metricValue(fams, "lockstep_files_applied_total", folder)
		hashed, _ := metricValue(fams, "lockstep_scan_hashed_bytes_total", folder)
		if i == 0 {
			if applied != 0 {
				t.Errorf("%s (the origin) applied %v versions from its peers: the copies came back as new versions", nd.name, applied)
			}
			continue
		}
		if applied < 41 {
			t.Errorf("%s applied %v versions, want at least the 41 written", nd.name, applied)
		}
		if hashed != 0 {
			t.Errorf("%s's scanner read %v bytes of files it had itself put in place", nd.name, hashed)
		}
	}
}
