package watcher

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRenameLatency measures, with the default options, the time from
// a small file's rename into the folder (the way uploads and atomic saves
// land) to the batch that names it. One op is 100 renames; p50_ms and
// p99_ms are over every rename of the run.
func BenchmarkRenameLatency(b *testing.B) {
	base := b.TempDir()
	root, staging := filepath.Join(base, "folder"), filepath.Join(base, "staging")
	mkdirs(b, base, "folder/sub", "staging")
	r := startLive(b, root, Options{}, nil)
	var lat []time.Duration
	n := 0
	for b.Loop() {
		for range 100 {
			n++
			name := fmt.Sprintf("upload-%d.jpg", n)
			src := filepath.Join(staging, name)
			if err := os.WriteFile(src, []byte("jpeg bytes"), 0o644); err != nil {
				b.Fatal(err)
			}
			rel := "sub/" + name
			start := time.Now()
			if err := os.Rename(src, filepath.Join(root, "sub", name)); err != nil {
				b.Fatal(err)
			}
			r.waitSeen(b, rel)
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(ms64(lat[len(lat)/2]), "p50_ms")
	b.ReportMetric(ms64(lat[len(lat)*99/100]), "p99_ms")
}

// BenchmarkStorm measures a deploy: 10,000 files in 1,100 new directories
// written by 8 goroutines as fast as they go, until every file is covered
// by a report. peak_rss_MB is the process's VmHWM, which includes the
// test binary and whatever ran before in it.
func BenchmarkStorm(b *testing.B) {
	i := 0
	var tail time.Duration
	for b.Loop() {
		b.StopTimer()
		i++
		root := filepath.Join(b.TempDir(), strconv.Itoa(i))
		mkdirs(b, root, ".")
		r := startLive(b, root, Options{}, nil)
		b.StartTimer()
		files := storm(b, root, 100, 10, 10)
		written := time.Now()
		r.waitFor(b, "every file covered", func() bool {
			for _, f := range files {
				if !r.covered(f) {
					return false
				}
			}
			return true
		})
		tail += time.Since(written)
		b.StopTimer()
		r.stop(b)
		b.StartTimer()
	}
	b.ReportMetric(ms64(tail)/float64(i), "tail_ms")
	if hwm, err := vmHWM(); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "peak_rss_MB")
	} else {
		b.Logf("no peak RSS: %v", err)
	}
}

// BenchmarkStormUnwatched is BenchmarkStorm's storm with no watcher: the
// ratio of the two is what watching costs a deploy.
func BenchmarkStormUnwatched(b *testing.B) {
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		root := filepath.Join(b.TempDir(), strconv.Itoa(i))
		mkdirs(b, root, ".")
		b.StartTimer()
		storm(b, root, 100, 10, 10)
	}
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// vmHWM returns the process's peak resident set size in bytes.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}
