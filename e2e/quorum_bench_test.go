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

// TestQuorumWaitHTTP: the HTTP form of wait, as documented for upload
// handlers, answers committed for files written on a quorum folder. With
// LOCKSTEP_QUORUM_SAMPLES=100 (and LOCKSTEP_E2E_NORACE=1) it is the wait
// latency benchmark: it logs p50 and p99.
func TestQuorumWaitHTTP(t *testing.T) {
	n := 5
	if v, err := strconv.Atoi(os.Getenv("LOCKSTEP_QUORUM_SAMPLES")); err == nil && v > 0 {
		n = v
	}
	c := newCluster(t, 3, folderSpec{ID: "uploads", Mode: "quorum"})
	c.start()
	c.waitInSync(30 * time.Second)
	s := quorumWaitSamples(t, c, n, "u", false)
	t.Logf("wait latency over %d writes: p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(s), waitPct(s, 0.5), waitPct(s, 0.99), waitPct(s, 1))
	if os.Getenv("LOCKSTEP_QUORUM_SAMPLES") != "" {
		s := quorumWaitSamples(t, c, n, "a", true)
		t.Logf("wait latency over %d writes with an old mtime (recorded at once): p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(s), waitPct(s, 0.5), waitPct(s, 0.99), waitPct(s, 1))
	}
}
