package scanner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lockstep/chunker"
	"lockstep/conflict"
	"lockstep/index"
)

// The scan benchmarks run each measured scan in a fresh child process (this
// test binary again, see TestMain), so that the peak RSS it reports
// (VmHWM) belongs to that scan alone and the page cache is the only thing
// shared between phases. Test trees are built once and kept under
// $LOCKSTEP_BENCH_DIR (default: the system temp dir), since writing a
// million files takes minutes; delete that directory to rebuild them.
//
//	go test -run '^$' -bench BenchmarkScan ./scanner
//	LOCKSTEP_BENCH_LARGE=1 go test -run '^$' -bench BenchmarkScan ./scanner   # adds 1M files
const (
	benchChildEnv = "LOCKSTEP_BENCH_CHILD"
	benchDirEnv   = "LOCKSTEP_BENCH_DIR"
	benchLargeEnv = "LOCKSTEP_BENCH_LARGE"
	// benchProfileEnv names a directory where each child writes a CPU
	// profile of its scan (cpu-<pid>.prof) and a heap profile after it
	// (heap-<pid>.prof), for finding what to optimise.
	benchProfileEnv = "LOCKSTEP_BENCH_PROFILE"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(benchChildEnv); spec != "" {
		os.Exit(benchChild(spec))
	}
	os.Exit(m.Run())
}

// phase is what a child scans; phaseResult what it measured.
type phase struct {
	Tree, Data string
}

type phaseResult struct {
	Seconds float64
	CPU     float64 // user+system seconds of the whole child
	Stats   Stats
	Retry   int
	HWM     int64 // peak resident set, bytes
	// Peaks of the resident set's anonymous part (heap, stacks, Badger's
	// arenas) and of its file-backed part (mapped index tables), sampled
	// every 10 ms; they need not peak at the same time.
	Anon, File int64
	IndexSize  int64 // bytes on disk after the scan
}

// benchChild runs one scan in this process and prints its phaseResult.
func benchChild(spec string) int {
	var p phase
	if err := json.Unmarshal([]byte(spec), &p); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	index.TuneRuntime() // as the daemon does
	ix, err := index.Open(p.Data, index.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	s, err := New(ix, Config{Folder: "bench", Dir: p.Tree, Local: 1, Clock: &conflict.Clock{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	if dir := os.Getenv(benchProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.prof", os.Getpid())))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	stopRSS := sampleRSS()
	start := time.Now()
	res, err := s.Scan(context.Background())
	if err == nil {
		err = ix.Sync()
	}
	elapsed := time.Since(start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	if dir := os.Getenv(benchProfileEnv); dir != "" {
		runtime.GC()
		if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d.prof", os.Getpid()))); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	ix.Close()
	anon, file := stopRSS()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out := phaseResult{Seconds: elapsed.Seconds(), Stats: res.Stats, Retry: len(res.Retry), HWM: vmHWM(),
		Anon: anon, File: file, CPU: float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9}
	out.IndexSize, _ = dirBytes(filepath.Join(p.Data, index.Subdir))
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// vmHWM returns the process's peak resident set size from /proc.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// sampleRSS samples the process's anonymous and file-backed resident
// memory every 10 ms until the returned function is called, which returns
// the peak of each.
func sampleRSS() (stop func() (anon, file int64)) {
	done, result := make(chan struct{}), make(chan [2]int64)
	go func() {
		var peak [2]int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if a, f, ok := statm(); ok {
				peak[0], peak[1] = max(peak[0], a), max(peak[1], f)
			}
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		p := <-result
		return p[0], p[1]
	}
}

// statm returns the resident anonymous and file-backed (with shared
// memory) bytes from /proc/self/statm.
func statm() (anon, file int64, ok bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	var size, resident, shared int64
	if _, err := fmt.Sscan(string(b), &size, &resident, &shared); err != nil {
		return 0, 0, false
	}
	page := int64(os.Getpagesize())
	return (resident - shared) * page, shared * page, true
}

func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// runPhase runs one scan in a child process.
func runPhase(b *testing.B, p phase) phaseResult {
	b.Helper()
	spec, _ := json.Marshal(p)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+string(spec))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bench child: %v\n%s", err, stderr.String())
	}
	var r phaseResult
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("bench child output %q: %v", out, err)
	}
	if r.Retry > 0 || r.Stats.Errors > 0 {
		b.Fatalf("bench scan: %d retries, %d errors", r.Retry, r.Stats.Errors)
	}
	return r
}

func report(b *testing.B, rs []phaseResult, files bool) {
	var secs, cpu, hwm, anon, file, idx float64
	var st Stats
	for _, r := range rs {
		secs += r.Seconds
		cpu += r.CPU
		hwm = max(hwm, float64(r.HWM))
		anon, file = max(anon, float64(r.Anon)), max(file, float64(r.File))
		idx = max(idx, float64(r.IndexSize))
		st = r.Stats
	}
	secs /= float64(len(rs))
	b.ReportMetric(secs, "scan_s")
	b.ReportMetric(cpu/float64(len(rs)), "cpu_s")
	if files {
		b.ReportMetric(float64(st.Scanned)/secs, "files/s")
	} else {
		b.ReportMetric(float64(st.BytesHashed)/secs/1e6, "MB/s")
	}
	b.ReportMetric(hwm/(1<<20), "rss_MiB")
	b.ReportMetric(anon/(1<<20), "rss_anon_MiB")
	b.ReportMetric(file/(1<<20), "rss_file_MiB")
	b.ReportMetric(idx/(1<<20), "index_MiB")
	b.ReportMetric(float64(st.Hashed), "hashed")
}

func benchRoot(b *testing.B) string {
	dir := os.Getenv(benchDirEnv)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "lockstep-bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// smallTree returns a tree of n files of 1 KiB, 100 per directory, in two
// levels of directories, building it if absent.
func smallTree(b *testing.B, n int) string {
	dir := filepath.Join(benchRoot(b), fmt.Sprintf("files-%d", n))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return filepath.Join(dir, "tree")
	}
	b.Logf("building %d files in %s (kept for later runs)", n, dir)
	os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	buf := make([]byte, 1024)
	old := time.Now().Add(-time.Hour)
	for i := range n {
		p := filepath.Join(dir, "tree", smallPath(i))
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, "tree")
}

func smallPath(i int) string {
	d := i / 100
	return fmt.Sprintf("d%03d/s%03d/file%07d.html", d/100, d%100, i)
}

// largeTree returns a tree of 8 random files of 128 MiB.
func largeTree(b *testing.B) string {
	dir := filepath.Join(benchRoot(b), "large-1GiB")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return filepath.Join(dir, "tree")
	}
	b.Logf("building 1 GiB of large files in %s (kept for later runs)", dir)
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "tree"), 0o755); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 128<<20)
	for i := range 8 {
		for j := 0; j+8 <= len(buf); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "tree", fmt.Sprintf("video%d.mp4", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, "tree")
}

// BenchmarkScan measures scans of many small files (first scan, rescan
// with nothing changed, rescan with 1% changed) and of large files, each
// in a child process; see the top of this file.
func BenchmarkScan(b *testing.B) {
	sizes := []int{100_000}
	if os.Getenv(benchLargeEnv) == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		tree := smallTree(b, n)
		name := fmt.Sprintf("files=%dk", n/1000)
		b.Run(name+"/first", func(b *testing.B) {
			var rs []phaseResult
			for b.Loop() {
				rs = append(rs, runPhase(b, phase{Tree: tree, Data: b.TempDir()}))
			}
			report(b, rs, true)
		})
		data := b.TempDir() // an index of the tree, shared by the rescans
		b.Run(name+"/rescan", func(b *testing.B) {
			b.StopTimer()
			runPhase(b, phase{Tree: tree, Data: data})
			b.StartTimer()
			var rs []phaseResult
			for b.Loop() {
				rs = append(rs, runPhase(b, phase{Tree: tree, Data: data}))
			}
			report(b, rs, true)
		})
		b.Run(name+"/rescan-1pct", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			buf := make([]byte, 1024)
			var rs []phaseResult
			for b.Loop() {
				b.StopTimer()
				when := time.Now().Add(-time.Second)
				for range n / 100 {
					p := filepath.Join(tree, smallPath(rng.IntN(n)))
					for j := range buf {
						buf[j] = byte(rng.Uint32())
					}
					if err := os.WriteFile(p, buf, 0o644); err != nil {
						b.Fatal(err)
					}
					os.Chtimes(p, when, when)
				}
				b.StartTimer()
				rs = append(rs, runPhase(b, phase{Tree: tree, Data: data}))
			}
			report(b, rs, true)
		})
	}

	tree := largeTree(b)
	var splitMBs float64
	b.Run("large=1GiB/split", func(b *testing.B) {
		// The chunker alone, one goroutine, reading the same files.
		var total int64
		ch := chunker.New(nil, chunker.DefaultParams)
		for b.Loop() {
			total = 0
			ents, _ := os.ReadDir(tree)
			for _, e := range ents {
				f, err := os.Open(filepath.Join(tree, e.Name()))
				if err != nil {
					b.Fatal(err)
				}
				ch.Reset(f)
				for {
					c, err := ch.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					total += int64(c.Length)
				}
				f.Close()
			}
		}
		splitMBs = float64(total) * float64(b.N) / b.Elapsed().Seconds() / 1e6
		b.ReportMetric(splitMBs, "MB/s")
	})
	var parallelMBs float64
	b.Run("large=1GiB/split-parallel", func(b *testing.B) {
		var total int64
		for b.Loop() {
			total = 0
			ents, _ := os.ReadDir(tree)
			for _, e := range ents {
				f, err := os.Open(filepath.Join(tree, e.Name()))
				if err != nil {
					b.Fatal(err)
				}
				m, err := chunker.SplitParallel(context.Background(), f, chunker.DefaultParams, 0)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				total += m.Size()
			}
		}
		parallelMBs = float64(total) * float64(b.N) / b.Elapsed().Seconds() / 1e6
		b.ReportMetric(parallelMBs, "MB/s")
	})
	b.Run("large=1GiB/first", func(b *testing.B) {
		var rs []phaseResult
		for b.Loop() {
			rs = append(rs, runPhase(b, phase{Tree: tree, Data: b.TempDir()}))
		}
		report(b, rs, false)
		var secs float64
		for _, r := range rs {
			secs += r.Seconds
		}
		mbs := float64(rs[0].Stats.BytesHashed) * float64(len(rs)) / secs / 1e6
		if splitMBs > 0 {
			b.ReportMetric(mbs/splitMBs, "x_split")
		}
		if parallelMBs > 0 {
			b.ReportMetric(mbs/parallelMBs, "x_split_parallel")
		}
	})
}
