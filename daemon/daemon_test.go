package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"lockstep/config"
	"lockstep/identity"
	"lockstep/index"
)

// newNode prepares a single node with one folder and no peers.
func newNode(t testing.TB) (*config.Config, string) {
	t.Helper()
	root := t.TempDir()
	data := filepath.Join(root, "data")
	folder := filepath.Join(root, "docroot")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := identity.Create(data, "solo"); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[node]
name = "solo"
data_dir = %q
listen = %q

[[folders]]
id = "docroot"
path = %q
`, data, freeUDP(t), folder)), filepath.Join(root, "lockstep.toml"), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, folder
}

func freeUDP(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// start runs a daemon until the returned stop function is called.
func start(t testing.TB, cfg *config.Config) (*Daemon, func()) {
	t.Helper()
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return d, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// waitRecorded polls the index until rel is recorded.
func waitRecorded(t testing.TB, d *Daemon, rel string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, ok, err := d.ix.Get("docroot", rel); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not recorded after %s", rel, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStormRecordedOnce: a deploy of 10k files in 1k directories, written
// as fast as possible by several goroutines into a watched folder, ends
// with every file recorded exactly once.
func TestStormRecordedOnce(t *testing.T) {
	cfg, folder := newNode(t)
	d, stop := start(t, cfg)
	const dirs, perDir = 1000, 10
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < dirs; i += 8 {
				dir := filepath.Join(folder, fmt.Sprintf("site/d%03d", i))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Error(err)
					return
				}
				for j := range perDir {
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.html", j)), []byte(fmt.Sprint(i, j)), 0o644); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := d.ix.Info("docroot")
		if err != nil {
			t.Fatal(err)
		}
		if info.Files == dirs*perDir {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d files recorded after 60 s", info.Files, dirs*perDir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let any duplicate recording show
	stop()
	ix, err := index.Open(cfg.Node.DataDir, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	info, _ := ix.Info("docroot")
	entries := info.Entries()
	if entries != dirs*perDir+dirs+1 { // files, d000…d999, site
		t.Fatalf("%d entries recorded, want %d", entries, dirs*perDir+dirs+1)
	}
	// Each entry got exactly one version: a file whose writer stalls
	// between creating and filling it is left alone while it is open
	// (inotify's IN_CLOSE_WRITE says when it is done), so its empty state
	// is never recorded. Where closes are not reported (fsnotify, other
	// platforms) that may happen to a few files under load.
	extra := int64(info.Sequence) - entries
	if extra > 0 {
		ix.Walk(context.Background(), "docroot", "", func(r index.Record) error {
			if len(r.Version) > 0 && r.Version[0].Value > 1 {
				t.Logf("recorded more than once: %s (size %d)", r.Path, r.Size)
			}
			return nil
		})
	}
	limit := int64(0)
	if runtime.GOOS != "linux" {
		limit = entries / 100
	}
	if extra < 0 || extra > limit {
		t.Fatalf("%d sequences for %d entries", info.Sequence, entries)
	}
}

// BenchmarkRecordLatency measures the time from a small file's rename into
// the folder to its version being in the index (watcher settle + scan +
// index write), with default settings.
func BenchmarkRecordLatency(b *testing.B) {
	cfg, folder := newNode(b)
	d, stop := start(b, cfg)
	defer stop()
	staging := b.TempDir()
	time.Sleep(200 * time.Millisecond) // the initial scan
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 100; j++ {
			name := fmt.Sprintf("f-%d-%d.html", i, j)
			tmp := filepath.Join(staging, name)
			if err := os.WriteFile(tmp, []byte("<p>4 KiB or so</p>"), 0o644); err != nil {
				b.Fatal(err)
			}
			// staging is on the same filesystem (both under the test's
			// temp dir), so this is an atomic rename into the folder.
			start := time.Now()
			if err := os.Rename(tmp, filepath.Join(folder, name)); err != nil {
				b.Fatal(err)
			}
			waitRecorded(b, d, name, 10*time.Second)
			samples = append(samples, time.Since(start))
		}
	}
	b.StopTimer()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	ms := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(0.5), "p50_ms")
	b.ReportMetric(ms(0.99), "p99_ms")
}
