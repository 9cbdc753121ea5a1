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

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetricsAndHealthz: /metrics parses as the Prometheus text format and
// agrees with status; /healthz is 200 on a healthy node and 503 when a
// peer lags more than asked.
func TestMetricsAndHealthz(t *testing.T) {
	c := newCluster(t, 2)
	n1 := c.nodes[0]
	addr := freeTCPAddr(t)
	cfg, _ := os.ReadFile(n1.config)
	cfg = []byte(strings.Replace(string(cfg), "\n[[peers]]", fmt.Sprintf("metrics = %q\n\n[[peers]]", addr), 1))
	if err := os.WriteFile(n1.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c.start()
	writeAtomic(t, filepath.Join(n1.folders["docroot"], "m.txt"), randomData(5, 300_000), 0o644)
	c.waitInSync(30 * time.Second)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text format: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
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
	_, body = get("/metrics")
	families, err = parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text format: %v", err)
	}
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
