package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// controlClient talks HTTP to a node's control socket, as an upload
// handler would.
func controlClient(nd *node) *http.Client {
	sock := filepath.Join(nd.dir, "data", "control.sock")
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

// quorumWaitSamples writes n 4 KiB files atomically on node1 of a quorum
// folder and times each from the rename to `wait` answering committed.
// With aged, each file's mtime is set a second back before the rename, so
// that the scanner records it at once instead of waiting out its
// racy-mtime window: the time is then mostly record → commit.
func quorumWaitSamples(t *testing.T, c *cluster, n int, prefix string, aged bool) []time.Duration {
	n1 := c.nodes[0]
	client := controlClient(n1)
	staging := filepath.Join(n1.dir, "staging")
	var samples []time.Duration
	for i := range n {
		dst := filepath.Join(n1.folders["uploads"], fmt.Sprintf("%s%04d.jpg", prefix, i))
		tmp := filepath.Join(staging, fmt.Sprintf("%s%04d.jpg", prefix, i))
		writeAtomic(t, tmp, randomData(uint64(i), 4096), 0o644)
		if aged {
			past := time.Now().Add(-time.Second)
			if err := os.Chtimes(tmp, past, past); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		if err := os.Rename(tmp, dst); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(`{"paths":[%q],"timeout":"10s"}`, dst)
		resp, err := client.Post("http://lockstep/v1/wait", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("wait: %d %s", resp.StatusCode, b)
		}
		samples = append(samples, time.Since(start))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return samples
}

func waitPct(s []time.Duration, q float64) float64 {
	return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
}

// commitHistogram reads lockstep_commit_latency_seconds of a folder from a
// node's /metrics: the sample count and sum, and the cumulative count per
// upper bound. ok is false when the node has no such histogram.
func commitHistogram(t *testing.T, addr, folder string) (count uint64, sum float64, buckets map[float64]uint64, ok bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	fam, found := families["lockstep_commit_latency_seconds"]
	if !found {
		return 0, 0, nil, false
	}
	for _, m := range fam.Metric {
		for _, lp := range m.Label {
			if lp.GetName() == "folder" && lp.GetValue() == folder {
				h := m.GetHistogram()
				buckets = map[float64]uint64{}
				for _, b := range h.GetBucket() {
					buckets[b.GetUpperBound()] = b.GetCumulativeCount()
				}
				return h.GetSampleCount(), h.GetSampleSum(), buckets, true
			}
		}
	}
	return 0, 0, nil, false
}

// TestQuorumWaitHTTP: the HTTP form of wait, as documented for upload
// handlers, answers committed for files written on a quorum folder, and
// each write is timed from recorded to committed in the metrics. With
// LOCKSTEP_QUORUM_SAMPLES=100 (and LOCKSTEP_E2E_NORACE=1) it is the wait
// latency benchmark: it logs p50 and p99, and the record → commit part
// from the metrics.
func TestQuorumWaitHTTP(t *testing.T) {
	n := 5
	bench := false
	if v, err := strconv.Atoi(os.Getenv("LOCKSTEP_QUORUM_SAMPLES")); err == nil && v > 0 {
		n, bench = v, true
	}
	c := newCluster(t, 3, folderSpec{ID: "uploads", Mode: "quorum"})
	n1 := c.nodes[0]
	addr := freeTCPAddr(t)
	cfg, _ := os.ReadFile(n1.config)
	cfg = []byte(strings.Replace(string(cfg), "\n[[peers]]", fmt.Sprintf("metrics = %q\n\n[[peers]]", addr), 1))
	if err := os.WriteFile(n1.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c.start()
	c.waitInSync(30 * time.Second)
	// committed checks that the histogram counted every write so far and
	// logs the record → commit part of the last phase.
	var seen uint64
	var seenSum float64
	var seenBuckets map[float64]uint64
	committed := func(writes uint64) {
		var count uint64
		var sum float64
		var buckets map[float64]uint64
		var ok bool
		eventually(t, 10*time.Second, func() (bool, string) {
			count, sum, buckets, ok = commitHistogram(t, addr, "uploads")
			return (!ok && bench) || count >= seen+writes, fmt.Sprintf("lockstep_commit_latency_seconds{folder=uploads} count %d (found %v), want %d", count, ok, seen+writes)
		})
		if !ok {
			t.Logf("record → commit: the binary has no lockstep_commit_latency_seconds")
			return
		}
		if bench && count > seen {
			d := float64(count - seen)
			frac := func(le float64) float64 { return 100 * float64(buckets[le]-seenBuckets[le]) / d }
			t.Logf("record → commit (lockstep_commit_latency_seconds) over %d versions: mean %.1f ms; ≤ 5 ms %.0f%%, ≤ 10 ms %.0f%%, ≤ 20 ms %.0f%%",
				count-seen, 1000*(sum-seenSum)/d, frac(0.005), frac(0.01), frac(0.02))
		}
		seen, seenSum, seenBuckets = count, sum, buckets
	}
	committed(0)
	s := quorumWaitSamples(t, c, n, "u", false)
	t.Logf("wait latency over %d writes: p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(s), waitPct(s, 0.5), waitPct(s, 0.99), waitPct(s, 1))
	committed(uint64(n))
	if bench {
		s := quorumWaitSamples(t, c, n, "a", true)
		t.Logf("wait latency over %d writes with an old mtime (recorded at once): p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(s), waitPct(s, 0.5), waitPct(s, 0.99), waitPct(s, 1))
		committed(uint64(n))
	}
}
