//go:build linux

package e2e

// End-to-end benchmarks of the replication path: real daemons on
// 127.0.0.1, measured from outside through files, the status JSON and
// /proc, each beside rsync pushing the same data to a local rsync daemon in
// the same run, so that a noisy shared machine slows both alike and the
// ratios stay meaningful.
//
// Run them with LOCKSTEP_E2E_NORACE=1: without it TestMain builds lockstep
// with -race, several times slower, and the benchmarks skip themselves.
// scripts/bench-e2e.sh runs them and prints a table:
//
//	LOCKSTEP_E2E_NORACE=1 go test -run '^$' -bench '^Benchmark(Propagation4KiB|InitialSync|SmallFiles|Delta256MiB|IdleCPU)$' \
//	    -benchtime 1x -timeout 4h ./e2e
//
// LOCKSTEP_BENCH_SCALE=small shrinks every size for a quick run;
// LOCKSTEP_BENCH_RSYNC=off leaves rsync out; LOCKSTEP_BENCH_PROFILE=DIR
// writes CPU profiles of the daemons, in 2 s slices, to DIR during the
// transfers of the initial-sync and small-files scenarios (rig.profile).
// TestBenchSmoke runs every scenario once at a tiny size in the ordinary
// test run, so that this code keeps working.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// benchScale sets the sizes of every scenario.
type benchScale struct {
	name          string
	propSamples   int   // 4 KiB writes timed
	bigFile       int64 // initial sync, one file
	manyFiles     int   // initial sync, many files of manyFileSize
	manyFileSize  int
	smallFiles    int // small-file tree: files of smallFileSize, smallPerDir a directory
	smallPerDir   int
	smallFileSize int
	deltaFile     int // the file edited in place
	idleFiles     int // files held by the idle cluster
	idleWindow    time.Duration
	resyncFiles   int // resync of an intact folder: files of resyncFileSize
	resyncSize    int
	timeout       time.Duration // for any one wait
}

var (
	fullScale = benchScale{
		name: "full", propSamples: 200,
		bigFile: 1 << 30, manyFiles: 1000, manyFileSize: 1 << 20,
		smallFiles: 100_000, smallPerDir: 100, smallFileSize: 1 << 10,
		deltaFile: 256 << 20, idleFiles: 1000, idleWindow: 60 * time.Second,
		resyncFiles: 10_000, resyncSize: 100 << 10,
		timeout: 30 * time.Minute,
	}
	smallScale = benchScale{
		name: "small", propSamples: 10,
		bigFile: 64 << 20, manyFiles: 50, manyFileSize: 1 << 20,
		smallFiles: 2000, smallPerDir: 100, smallFileSize: 1 << 10,
		deltaFile: 16 << 20, idleFiles: 1000, idleWindow: 5 * time.Second,
		resyncFiles: 1000, resyncSize: 64 << 10,
		timeout: 5 * time.Minute,
	}
	// tinyScale is for TestBenchSmoke, under a -race binary.
	tinyScale = benchScale{
		name: "tiny", propSamples: 3,
		bigFile: 4 << 20, manyFiles: 5, manyFileSize: 256 << 10,
		smallFiles: 200, smallPerDir: 20, smallFileSize: 1 << 10,
		deltaFile: 4 << 20, idleFiles: 50, idleWindow: time.Second,
		resyncFiles: 40, resyncSize: 64 << 10,
		timeout: 2 * time.Minute,
	}
)

// A benchScenario is the body of one benchmark, shared with the smoke
// test: it checks that the data arrived intact and returns its figures.
type benchScenario struct {
	name string
	run  func(tb testing.TB, sc benchScale) figures
}

var benchScenarios = []benchScenario{
	{"Propagation4KiB", benchPropagation},
	{"InitialSync/OneFile", func(tb testing.TB, sc benchScale) figures { return benchInitialSync(tb, sc, false) }},
	{"InitialSync/ManyFiles", func(tb testing.TB, sc benchScale) figures { return benchInitialSync(tb, sc, true) }},
	{"SmallFiles", benchSmallFiles},
	{"Delta", benchDelta},
	{"IdleCPU", benchIdleCPU},
	{"ResyncIntact", benchResyncIntact},
}

func BenchmarkPropagation4KiB(b *testing.B) { runBench(b, benchPropagation) }

func BenchmarkInitialSync(b *testing.B) {
	b.Run("OneFile", func(b *testing.B) {
		runBench(b, func(tb testing.TB, sc benchScale) figures { return benchInitialSync(tb, sc, false) })
	})
	b.Run("ManyFiles", func(b *testing.B) {
		runBench(b, func(tb testing.TB, sc benchScale) figures { return benchInitialSync(tb, sc, true) })
	})
}

func BenchmarkSmallFiles(b *testing.B) { runBench(b, benchSmallFiles) }

// BenchmarkDelta256MiB edits a synced file of 256 MiB (16 MiB at small
// scale) twice: 100 bytes inserted at offset 0, then 1 MiB overwritten in
// the middle.
func BenchmarkDelta256MiB(b *testing.B) { runBench(b, benchDelta) }

func BenchmarkIdleCPU(b *testing.B) { runBench(b, benchIdleCPU) }

// BenchmarkResyncIntact rebuilds a node whose index was lost but whose
// folder is intact (10k files, 1 GiB): `lockstep resync` hashes and adopts
// every file; rsync pushes onto the intact copy, by quick check and by
// checksum.
func BenchmarkResyncIntact(b *testing.B) { runBench(b, benchResyncIntact) }

// TestBenchSmoke runs every benchmark's scenario once at a tiny size; a
// scenario fails when data does not arrive intact.
func TestBenchSmoke(t *testing.T) {
	for _, s := range benchScenarios {
		t.Run(s.name, func(t *testing.T) {
			m := s.run(t, tinyScale)
			if len(m) == 0 {
				t.Fatal("no figures reported")
			}
			for _, x := range m {
				if math.IsNaN(x.value) || math.IsInf(x.value, 0) || x.value < 0 {
					t.Errorf("figure %s = %v", x.name, x.value)
				}
			}
			t.Log(m)
		})
	}
}

// runBench runs the scenario b.N times (once under -benchtime 1x) and
// reports the mean of each figure. ns/op is suppressed: it would time the
// cluster's setup, not what is measured.
func runBench(b *testing.B, run func(testing.TB, benchScale) figures) {
	if os.Getenv("LOCKSTEP_E2E_NORACE") == "" {
		b.Skip("e2e benchmarks need LOCKSTEP_E2E_NORACE=1 (otherwise the daemon is built with -race); see scripts/bench-e2e.sh")
	}
	sc := fullScale
	switch s := os.Getenv("LOCKSTEP_BENCH_SCALE"); s {
	case "", "full":
	case "small":
		sc = smallScale
	default:
		b.Fatalf("LOCKSTEP_BENCH_SCALE=%q: want small or full", s)
	}
	var names []string
	sums := map[string]float64{}
	for range b.N {
		for _, m := range run(b, sc) {
			if _, ok := sums[m.name]; !ok {
				names = append(names, m.name)
			}
			sums[m.name] += m.value
		}
	}
	b.ReportMetric(0, "ns/op")
	for _, n := range names {
		b.ReportMetric(sums[n]/float64(b.N), n)
	}
}

// figures are what a scenario measured, in the order reported.
type figures []figure

type figure struct {
	name  string
	value float64
}

func (m *figures) add(name string, v float64) { *m = append(*m, figure{name, v}) }

func (m figures) String() string {
	var b strings.Builder
	for _, x := range m {
		fmt.Fprintf(&b, " %s=%.4g", x.name, x.value)
	}
	return strings.TrimSpace(b.String())
}

// ---- scenarios ----

// benchPropagation: three nodes; a 4 KiB file is renamed into node1's
// folder and timed until both other nodes hold it with its full content,
// seen through inotify on their folders.
func benchPropagation(tb testing.TB, sc benchScale) figures {
	r := newRig(tb, 3)
	r.start()
	r.waitSynced(time.Now(), sc.timeout, nil)
	n1 := r.nodes[0]
	w, err := fsnotify.NewWatcher()
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Close()
	for _, nd := range r.nodes[1:] {
		if err := w.Add(nd.folder); err != nil {
			tb.Fatal(err)
		}
	}
	// Fresh files are written just before the rename, as deploy tools
	// do; aged ones keep an mtime a minute old, as when a tool preserves
	// mtimes (rsync -a, tar, cp -p). The two alternate, so that the noise
	// of the machine hits both alike.
	const warmup = 2 // the first writes also pay for connection warm-up
	var fresh, aged []time.Duration
	fallbacks := 0
	for i := range warmup + 2*sc.propSamples {
		name := fmt.Sprintf("p%04d.bin", i)
		data := randomData(uint64(1000+i), 4<<10)
		staged := filepath.Join(n1.staging, name)
		// Not flushed: most tools do not fsync before the rename, and a
		// flush would age the mtime past the scanner's racy window.
		if err := os.WriteFile(staged, data, 0o644); err != nil {
			tb.Fatal(err)
		}
		isAged := i%2 == 1
		if isAged {
			old := time.Now().Add(-time.Minute)
			if err := os.Chtimes(staged, old, old); err != nil {
				tb.Fatal(err)
			}
		}
		want := map[string]bool{}
		for _, nd := range r.nodes[1:] {
			want[filepath.Join(nd.folder, name)] = true
		}
		holds := func(p string) bool {
			b, err := os.ReadFile(p)
			return err == nil && bytes.Equal(b, data)
		}
		t0 := time.Now()
		if err := os.Rename(staged, filepath.Join(n1.folder, name)); err != nil {
			tb.Fatal(err)
		}
		var last time.Duration
		// A slow fallback poll in case an event is missed; it is counted.
		tick := time.NewTicker(100 * time.Millisecond)
		deadline := time.After(30 * time.Second)
		for len(want) > 0 {
			select {
			case ev := <-w.Events:
				if want[ev.Name] && ev.Op&(fsnotify.Create|fsnotify.Write) != 0 && holds(ev.Name) {
					last = time.Since(t0)
					delete(want, ev.Name)
				}
			case err := <-w.Errors:
				tb.Fatalf("watching the receivers: %v", err)
			case <-tick.C:
				for p := range want {
					if holds(p) {
						last = time.Since(t0)
						delete(want, p)
						fallbacks++
					}
				}
			case <-deadline:
				tb.Fatalf("%s did not reach %v within 30 s%s", name, slices.Collect(maps.Keys(want)), r.exited())
			}
		}
		tick.Stop()
		if os.Getenv("LOCKSTEP_BENCH_SLOW") != "" && last > 20*time.Millisecond {
			tb.Logf("slow %s: %v at %s", name, last, t0.Format("15:04:05.000000"))
		}
		switch {
		case i < warmup:
		case isAged:
			aged = append(aged, last)
		default:
			fresh = append(fresh, last)
		}
		time.Sleep(50 * time.Millisecond) // isolated changes, not a pipeline
	}
	r.waitSynced(time.Now(), sc.timeout, nil)
	r.sameTrees()
	if fallbacks > 0 {
		tb.Logf("%d arrivals were seen by the fallback poll, not inotify (timed up to 100 ms late)", fallbacks)
	}
	slices.Sort(fresh)
	slices.Sort(aged)
	var m figures
	m.add("p50_ms", millis(nearestRank(fresh, 50)))
	m.add("p99_ms", millis(nearestRank(fresh, 99)))
	m.add("max_ms", millis(fresh[len(fresh)-1]))
	m.add("aged_p50_ms", millis(nearestRank(aged, 50)))
	m.add("aged_p99_ms", millis(nearestRank(aged, 99)))
	m.add("samples", float64(len(fresh)))
	tb.Logf("propagation of 4 KiB to 2 peers: %s", m)
	return m
}

// benchInitialSync: node1 holds the data and has indexed it; node2 starts
// empty and is timed until the cluster is in sync. Then rsync pushes the
// same data to an empty module.
func benchInitialSync(tb testing.TB, sc benchScale, many bool) figures {
	r := newRig(tb, 2)
	n1, n2 := r.nodes[0], r.nodes[1]
	var total int64
	files := 1
	if many {
		files = sc.manyFiles
		for i := range files {
			writeRandomFile(tb, filepath.Join(n1.folder, fmt.Sprintf("f%04d.bin", i)), uint64(i), int64(sc.manyFileSize))
			total += int64(sc.manyFileSize)
		}
	} else {
		writeRandomFile(tb, filepath.Join(n1.folder, "big.bin"), 1, sc.bigFile)
		total = sc.bigFile
	}
	flushFS(tb, n1.folder)
	scan := n1.startIndexed(files, sc.timeout)
	// The link itself, as the same amount of data through one raw quic-go
	// stream between two processes, once before lockstep's transfer and
	// once after it.
	var raw rawTransfer
	raw.add(runRawQUIC(tb, total))
	arrived := watchArrivals(tb, n2.folder)
	cpu0 := cpuOf(tb, n1.cmd.Process.Pid)
	start := time.Now()
	n2.start()
	profiled := r.profile(strings.ReplaceAll(tb.Name(), "/", "_"), n1, n2)
	took := r.waitSynced(start, sc.timeout, arrived.atLeast(files))
	profiled()
	cpu := cpuOf(tb, n1.cmd.Process.Pid) - cpu0 + cpuOf(tb, n2.cmd.Process.Pid)
	sameTree(tb, n1.folder, n2.folder)
	raw.add(runRawQUIC(tb, total))

	var m figures
	mb := float64(total) / 1e6
	m.add("MB/s", mb/took.Seconds())
	m.add("s", took.Seconds())
	m.add("data_s", arrived.last().Sub(start).Seconds())
	m.add("first_file_s", arrived.firstAt().Sub(start).Seconds())
	m.add("scan_s", scan.Seconds())
	m.add("cpu_ms/MB", millis(cpu)/mb)
	rawMBs := float64(raw.bytes) / 1e6 / raw.elapsed.Seconds()
	m.add("raw_quic_MB/s", rawMBs)
	m.add("raw_quic_cpu_ms/MB", millis(raw.cpu)/(float64(raw.bytes)/1e6))
	m.add("vs_raw_quic", mb/took.Seconds()/rawMBs)
	if d := startRsyncd(tb); d != nil {
		run := d.push(tb, n1.folder, "initial")
		sameTree(tb, n1.folder, d.path("initial"))
		synced := run.dur + d.syncfs(tb)
		m.add("rsync_MB/s", mb/run.dur.Seconds())
		m.add("rsync_s", run.dur.Seconds())
		m.add("rsync_synced_MB/s", mb/synced.Seconds())
		m.add("rsync_cpu_ms/MB", millis(run.cpu)/mb)
		m.add("speed_vs_rsync", run.dur.Seconds()/took.Seconds())
		m.add("cpu_vs_rsync", cpu.Seconds()/run.cpu.Seconds())
	}
	tb.Logf("initial sync of %d file(s), %d bytes: %s", files, total, m)
	return m
}

// benchSmallFiles: like the initial sync, with a tree of many small files;
// it also reports what node2 received on the wire per byte of file data.
func benchSmallFiles(tb testing.TB, sc benchScale) figures {
	r := newRig(tb, 2)
	n1, n2 := r.nodes[0], r.nodes[1]
	data := randomData(77, sc.smallFiles*sc.smallFileSize)
	for i := range sc.smallFiles {
		p := filepath.Join(n1.folder, fmt.Sprintf("d%04d/f%06d.txt", i/sc.smallPerDir, i))
		if i%sc.smallPerDir == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		if err := os.WriteFile(p, data[i*sc.smallFileSize:(i+1)*sc.smallFileSize], 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	total := float64(len(data))
	flushFS(tb, n1.folder)
	scan := n1.startIndexed(sc.smallFiles, sc.timeout)
	arrived := watchArrivals(tb, n2.folder)
	cpu0 := cpuOf(tb, n1.cmd.Process.Pid)
	start := time.Now()
	n2.start()
	profiled := r.profile("smallfiles", n1, n2)
	took := r.waitSynced(start, sc.timeout, arrived.atLeast(sc.smallFiles))
	cpu := cpuOf(tb, n1.cmd.Process.Pid) - cpu0 + cpuOf(tb, n2.cmd.Process.Pid)
	profiled()
	st := n2.status()
	wire, _ := st.received()
	sent := sentBytes(st)
	sameTree(tb, n1.folder, n2.folder)

	var m figures
	m.add("files/s", float64(sc.smallFiles)/took.Seconds())
	m.add("s", took.Seconds())
	m.add("data_s", arrived.last().Sub(start).Seconds())
	m.add("scan_s", scan.Seconds())
	m.add("wire_ratio", float64(wire)/total)
	m.add("wire_sent_ratio", float64(sent)/total)
	m.add("cpu_us/file", float64(cpu.Microseconds())/float64(sc.smallFiles))
	if d := startRsyncd(tb); d != nil {
		run := d.push(tb, n1.folder, "small")
		sameTree(tb, n1.folder, d.path("small"))
		synced := run.dur + d.syncfs(tb)
		m.add("rsync_files/s", float64(sc.smallFiles)/run.dur.Seconds())
		m.add("rsync_s", run.dur.Seconds())
		m.add("rsync_synced_s", synced.Seconds())
		m.add("rsync_wire_ratio", float64(run.sent)/total)
		m.add("rsync_recv_ratio", float64(run.received)/total)
		m.add("rsync_cpu_us/file", float64(run.cpu.Microseconds())/float64(sc.smallFiles))
		m.add("speed_vs_rsync", run.dur.Seconds()/took.Seconds())
		m.add("cpu_vs_rsync", cpu.Seconds()/run.cpu.Seconds())
	}
	tb.Logf("%d files of %d bytes: %s", sc.smallFiles, sc.smallFileSize, m)
	return m
}

// benchResyncIntact: both nodes hold the same files; node2 has no index
// and is resynced, timed from its start until the cluster is in sync, with
// the bytes it received on the wire.
func benchResyncIntact(tb testing.TB, sc benchScale) figures {
	r := newRig(tb, 2)
	n1, n2 := r.nodes[0], r.nodes[1]
	for i := range sc.resyncFiles {
		writeRandomFile(tb, filepath.Join(n1.folder, fmt.Sprintf("d%03d/f%05d.bin", i/100, i)), uint64(i)+500, int64(sc.resyncSize))
	}
	total := float64(sc.resyncFiles) * float64(sc.resyncSize)
	if out, err := exec.Command("cp", "-a", n1.folder+"/.", n2.folder).CombinedOutput(); err != nil {
		tb.Fatalf("cp: %v: %s", err, out)
	}
	flushFS(tb, n1.folder)
	n1.startIndexed(sc.resyncFiles, sc.timeout)
	if out, err := clientCmd("resync", "--no-wait", "--config", n2.config).CombinedOutput(); err != nil {
		tb.Fatalf("lockstep resync: %v: %s", exitDetail(err), out)
	}
	cpu0 := cpuOf(tb, n1.cmd.Process.Pid)
	start := time.Now()
	n2.start()
	took := r.waitSynced(start, sc.timeout, nil)
	cpu := cpuOf(tb, n1.cmd.Process.Pid) - cpu0 + cpuOf(tb, n2.cmd.Process.Pid)
	st := n2.status()
	wire, chunks := st.received()
	sameTree(tb, n1.folder, n2.folder)

	var m figures
	mb := total / 1e6
	m.add("s", took.Seconds())
	m.add("MB/s", mb/took.Seconds())
	m.add("wire_bytes", float64(wire))
	m.add("wire_ratio", float64(wire)/total)
	m.add("chunk_bytes", float64(chunks))
	m.add("cpu_ms/MB", millis(cpu)/mb)
	if d := startRsyncd(tb); d != nil {
		for _, variant := range []struct {
			name  string
			extra []string
		}{{"rsync", nil}, {"rsync_checksum", []string{"--checksum"}}} {
			dst := d.path(variant.name)
			if err := os.MkdirAll(dst, 0o755); err != nil {
				tb.Fatal(err)
			}
			if out, err := exec.Command("cp", "-a", n1.folder+"/.", dst).CombinedOutput(); err != nil {
				tb.Fatalf("cp: %v: %s", err, out)
			}
			flushFS(tb, dst)
			run := d.push(tb, n1.folder, variant.name, variant.extra...)
			m.add(variant.name+"_s", run.dur.Seconds())
			m.add(variant.name+"_wire_bytes", float64(run.sent+run.received))
		}
	}
	tb.Logf("resync of an intact folder, %d files, %d bytes: %s", sc.resyncFiles, int64(total), m)
	return m
}

// benchDelta: two nodes hold a large random file; it is edited twice on
// node1, and each edit is timed until in sync and its bytes on the wire
// counted from node2's traffic, beside rsync sending the same edits.
func benchDelta(tb testing.TB, sc benchScale) figures {
	r := newRig(tb, 2)
	r.start()
	n1, n2 := r.nodes[0], r.nodes[1]
	const name = "big.bin"
	data := randomData(99, sc.deltaFile)
	n1.place(tb, name, data)
	r.waitSynced(time.Now(), sc.timeout, sameFile(n1, n2, name))
	d := startRsyncd(tb)
	if d != nil {
		d.push(tb, n1.folder, "delta")
		d.syncfs(tb)
	}
	edits := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"insert", func(b []byte) []byte { return append(randomData(100, 100), b...) }},
		{"overwrite", func(b []byte) []byte {
			b = bytes.Clone(b)
			copy(b[len(b)/2:], randomData(101, 1<<20))
			return b
		}},
	}
	var m figures
	for _, e := range edits {
		before := n2.status()
		wire0, chunk0 := before.received()
		sent0 := sentBytes(before)
		data = e.edit(data)
		start := n1.place(tb, name, data)
		took := r.waitSynced(start, sc.timeout, sameFile(n1, n2, name))
		if got, err := os.ReadFile(filepath.Join(n2.folder, name)); err != nil || !bytes.Equal(got, data) {
			tb.Fatalf("%s: node2 holds %d bytes that differ from node1's (%v)", e.name, len(got), err)
		}
		after := n2.status()
		wire1, chunk1 := after.received()
		m.add(e.name+"_wire_B", float64(wire1-wire0))
		m.add(e.name+"_chunk_B", float64(chunk1-chunk0))
		m.add(e.name+"_sent_B", float64(sentBytes(after)-sent0))
		m.add(e.name+"_s", took.Seconds())
		if d != nil {
			// -I: two edits within a second keep size and mtime
			// (to the second), which rsync's quick check would skip.
			run := d.push(tb, n1.folder, "delta", "--ignore-times")
			if got, err := os.ReadFile(filepath.Join(d.path("delta"), name)); err != nil || !bytes.Equal(got, data) {
				tb.Fatalf("%s: rsync's copy differs (%v)", e.name, err)
			}
			m.add(e.name+"_rsync_sent_B", float64(run.sent))
			m.add(e.name+"_rsync_recv_B", float64(run.received))
			m.add(e.name+"_rsync_s", run.dur.Seconds())
			// Flushed outside the timing, so that lockstep's next syncfs
			// does not pay for rsync's writes.
			d.syncfs(tb)
		}
	}
	tb.Logf("edits of a %d-byte file: %s", sc.deltaFile, m)
	return m
}

// benchIdleCPU: three nodes in sync on idleFiles files; each daemon's CPU
// time over a quiet window, as a percentage of one core.
func benchIdleCPU(tb testing.TB, sc benchScale) figures {
	r := newRig(tb, 3)
	n1 := r.nodes[0]
	for i := range sc.idleFiles {
		writeRandomFile(tb, filepath.Join(n1.folder, fmt.Sprintf("d%02d/f%04d.html", i%10, i)), uint64(i), 4<<10)
	}
	flushFS(tb, n1.folder)
	a2, a3 := watchArrivals(tb, r.nodes[1].folder), watchArrivals(tb, r.nodes[2].folder)
	r.start()
	ready2, ready3 := a2.atLeast(sc.idleFiles), a3.atLeast(sc.idleFiles)
	r.waitSynced(time.Now(), sc.timeout, func() (bool, string) {
		if ok, why := ready2(); !ok {
			return false, why
		}
		return ready3()
	})
	r.sameTrees()
	time.Sleep(min(sc.idleWindow/10, 3*time.Second)) // let the last confirmations and index flushes pass
	type sample struct{ ticks, ns int64 }
	read := func() []sample {
		out := make([]sample, len(r.nodes))
		for i, nd := range r.nodes {
			out[i].ticks, out[i].ns = procCPU(tb, nd.cmd.Process.Pid)
		}
		return out
	}
	a, t0 := read(), time.Now()
	time.Sleep(sc.idleWindow)
	b, window := read(), time.Since(t0)
	var m figures
	var maxPct, sumPct, maxNs float64
	for i, nd := range r.nodes {
		// utime+stime are in clock ticks of 1/100 s (USER_HZ on Linux).
		pct := float64(b[i].ticks-a[i].ticks) / 100 / window.Seconds() * 100
		pctNs := float64(b[i].ns-a[i].ns) / float64(window.Nanoseconds()) * 100
		m.add(nd.name+"_cpu%", pct)
		maxPct, sumPct, maxNs = max(maxPct, pct), sumPct+pct, max(maxNs, pctNs)
	}
	m.add("max_cpu%", maxPct)
	m.add("mean_cpu%", sumPct/float64(len(r.nodes)))
	m.add("max_cpu%_ns", maxNs)
	m.add("window_s", window.Seconds())
	tb.Logf("idle CPU over %s: %s", window.Round(time.Millisecond), m)
	return m
}

// ---- a cluster for benchmarks ----

// rig is a cluster of daemons sharing the folder "docroot", configured as
// newCluster does, for a testing.TB (newCluster takes a *testing.T). Each
// node also has a staging directory beside its folder, on the same
// filesystem, where files are written before being renamed in.
type rig struct {
	tb    testing.TB
	nodes []*benchNode
}

type benchNode struct {
	tb      testing.TB
	name    string
	dir     string
	config  string
	logPath string
	folder  string
	staging string
	cmd     *exec.Cmd
	waitErr chan error
	metrics string // metrics address, set under LOCKSTEP_BENCH_PROFILE
}

func newRig(tb testing.TB, n int) *rig {
	tb.Helper()
	root := tb.TempDir()
	r := &rig{tb: tb}
	ids := make([]string, n)
	addrs := make([]string, n)
	for i := range n {
		nd := &benchNode{tb: tb, name: fmt.Sprintf("node%d", i+1)}
		nd.dir = filepath.Join(root, nd.name)
		nd.config = filepath.Join(nd.dir, "lockstep.toml")
		nd.logPath = filepath.Join(nd.dir, "lockstep.log")
		nd.folder = filepath.Join(nd.dir, "docroot")
		nd.staging = filepath.Join(nd.dir, "staging")
		for _, d := range []string{nd.folder, nd.staging} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		out, err := clientCmd("init", "--data-dir", filepath.Join(nd.dir, "data"), "--name", nd.name).Output()
		if err != nil {
			tb.Fatalf("lockstep init for %s: %v", nd.name, exitDetail(err))
		}
		ids[i] = strings.TrimSpace(string(out))
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addrs[i] = pc.LocalAddr().String()
		pc.Close()
		r.nodes = append(r.nodes, nd)
	}
	for i, nd := range r.nodes {
		var b strings.Builder
		fmt.Fprintf(&b, "[node]\nname = %q\ndata_dir = %q\nlisten = %q\n", nd.name, filepath.Join(nd.dir, "data"), addrs[i])
		if profileDir != "" {
			nd.metrics = freeTCPAddr(tb)
			fmt.Fprintf(&b, "metrics = %q\n", nd.metrics)
		}
		for j, p := range r.nodes {
			if j != i {
				fmt.Fprintf(&b, "\n[[peers]]\nname = %q\nid = %q\naddress = %q\n", p.name, ids[j], addrs[j])
			}
		}
		fmt.Fprintf(&b, "\n[[folders]]\nid = \"docroot\"\npath = %q\nmode = \"async\"\n", nd.folder)
		if err := os.WriteFile(nd.config, []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		for _, nd := range r.nodes {
			nd.kill()
		}
		r.noteDisturbances()
		if tb.Failed() {
			for _, nd := range r.nodes {
				if data, err := os.ReadFile(nd.logPath); err == nil {
					if len(data) > 32<<10 {
						data = data[len(data)-32<<10:]
					}
					tb.Logf("=== log of %s (tail) ===\n%s", nd.name, data)
				}
			}
		}
	})
	return r
}

// profileDir, from LOCKSTEP_BENCH_PROFILE, is where benchmarks that
// support it write CPU profiles of their daemons (rig.profile); the nodes
// then serve pprof on their metrics address. Empty: no profiles.
var profileDir = os.Getenv("LOCKSTEP_BENCH_PROFILE")

// cli returns a lockstep client command. A -race binary sleeps 1 s at exit
// by default (GORACE atexit_sleep_ms), which would make every status query
// take a second; the client commands are told not to.
func clientCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// noteDisturbances logs what in the daemons' logs explains an outlier:
// connections replaced by a duplicate and applies retried after a backoff.
// Only informative: nothing is asserted on log text.
func (r *rig) noteDisturbances() {
	for _, nd := range r.nodes {
		data, err := os.ReadFile(nd.logPath)
		if err != nil {
			continue
		}
		dup := bytes.Count(data, []byte("duplicate connection"))
		retry := bytes.Count(data, []byte("will retry"))
		if dup+retry > 0 {
			r.tb.Logf("%s: %d log lines on duplicate connections, %d applies retried after a backoff", nd.name, dup, retry)
		}
	}
}

// exited names the daemons that are no longer running, for a failure
// message: a daemon stopped from outside explains a missed deadline.
func (r *rig) exited() string {
	var out []string
	for _, nd := range r.nodes {
		if nd.cmd == nil {
			continue
		}
		select {
		case err := <-nd.waitErr:
			nd.waitErr <- err
			out = append(out, fmt.Sprintf("%s exited (%v)", nd.name, err))
		default:
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, ", ")
}

func (r *rig) start() {
	for _, nd := range r.nodes {
		nd.start()
	}
}

// profile takes CPU profiles of the given nodes, one after the other
// in 2 s slices, until the returned function is called, when
// LOCKSTEP_BENCH_PROFILE names a directory: each slice is written there as
// NAME-NODE-I.pprof (`go tool pprof` merges them). The returned function
// waits for the last slices.
func (r *rig) profile(name string, nodes ...*benchNode) (stop func()) {
	dir := profileDir
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.tb.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=2", nd.metrics)
			for i, failed := 0, 0; ; {
				select {
				case <-done:
					return
				default:
				}
				resp, err := http.Get(url)
				if err != nil {
					// The node may still be starting.
					if failed++; failed > 100 {
						r.tb.Logf("profile of %s: %v", nd.name, err)
						return
					}
					time.Sleep(20 * time.Millisecond)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: %s", resp.Status, b)
				}
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s-%02d.pprof", name, nd.name, i)), b, 0o644)
				}
				if err != nil {
					r.tb.Logf("profile of %s: %v", nd.name, err)
					return
				}
				i++
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

func (nd *benchNode) start() {
	nd.tb.Helper()
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		nd.tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(binary, "run", "--config", nd.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if nd.metrics != "" {
		cmd.Env = append(os.Environ(), "LOCKSTEP_PPROF=1")
	}
	if err := cmd.Start(); err != nil {
		nd.tb.Fatalf("start %s: %v", nd.name, err)
	}
	nd.cmd = cmd
	nd.waitErr = make(chan error, 1)
	go func() { nd.waitErr <- cmd.Wait() }()
}

func (nd *benchNode) kill() {
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Kill()
	<-nd.waitErr
	nd.cmd = nil
}

// status asks the daemon through the CLI, as a script would.
func (nd *benchNode) status() status {
	nd.tb.Helper()
	st, err := nd.tryStatus()
	if err != nil {
		nd.tb.Fatal(err)
	}
	return st
}

func (nd *benchNode) tryStatus() (status, error) {
	var st status
	cmd := clientCmd("status", "--json", "--config", nd.config)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return st, fmt.Errorf("status of %s: %w: %s", nd.name, err, strings.TrimSpace(errb.String()))
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return st, fmt.Errorf("status of %s: %w", nd.name, err)
	}
	if len(st.Folders) != 1 {
		return st, fmt.Errorf("status of %s lists %d folders", nd.name, len(st.Folders))
	}
	return st, nil
}

// startIndexed starts a node alone and waits until it has recorded files
// files; it returns how long that took.
func (nd *benchNode) startIndexed(files int, timeout time.Duration) time.Duration {
	nd.tb.Helper()
	start := time.Now()
	nd.start()
	var why string
	for time.Since(start) < timeout {
		st, err := nd.tryStatus()
		switch {
		case err != nil:
			why = err.Error()
		case st.Folders[0].Files == int64(files) && st.Folders[0].State == "idle":
			return time.Since(start)
		default:
			why = fmt.Sprintf("%s has recorded %d of %d files (%s)", nd.name, st.Folders[0].Files, files, st.Folders[0].State)
		}
		time.Sleep(max(pollEvery(time.Since(start)), 50*time.Millisecond))
	}
	nd.tb.Fatalf("not indexed after %s: %s", timeout, why)
	return 0
}

// place writes data to the staging directory and renames it into the
// folder as rel, the way deploy tools replace a file; it returns the
// moment of the rename. The data is flushed first: on one machine the
// receiver's syncfs would otherwise flush the sender's write too, which on
// a real cluster happens on another host.
func (nd *benchNode) place(tb testing.TB, rel string, data []byte) time.Time {
	tb.Helper()
	staged := filepath.Join(nd.staging, filepath.Base(rel))
	writeSynced(tb, staged, data)
	target := filepath.Join(nd.folder, rel)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		tb.Fatal(err)
	}
	t := time.Now()
	if err := os.Rename(staged, target); err != nil {
		tb.Fatal(err)
	}
	return t
}

// waitSynced waits until ready holds — a cheap check on the files, polled
// every millisecond, so that status is not asked (and the CPU the daemons
// need is not taken) before the data has even arrived; nil for none — and
// then every node reports the SPEC's "in sync" with the same number of
// files. It returns the time from start to the end of the successful
// check, status queries included.
func (r *rig) waitSynced(start time.Time, timeout time.Duration, ready func() (bool, string)) time.Duration {
	r.tb.Helper()
	var why string
	for time.Since(start) < timeout {
		if ready != nil {
			ok, w := ready()
			if !ok {
				why = w
				time.Sleep(time.Millisecond)
				continue
			}
		}
		ok, w := r.inSync()
		if ok {
			return time.Since(start)
		}
		why = w
		time.Sleep(pollEvery(time.Since(start)))
	}
	r.tb.Fatalf("not in sync after %s: %s%s", timeout, why, r.exited())
	return 0
}

// pollEvery is the pause between two status queries: each runs the CLI,
// about 10 ms of CPU, so polls are spaced by 1 % of the time already
// waited, at least 10 ms.
func pollEvery(waited time.Duration) time.Duration {
	return min(max(waited/100, 10*time.Millisecond), 500*time.Millisecond)
}

func (r *rig) inSync() (bool, string) {
	files := int64(-1)
	for _, nd := range r.nodes {
		st, err := nd.tryStatus()
		if err != nil {
			return false, err.Error()
		}
		if ok, why := st.inSync(); !ok {
			return false, why
		}
		if len(st.Folders[0].Peers) != len(r.nodes)-1 {
			return false, fmt.Sprintf("%s lists %d peers", nd.name, len(st.Folders[0].Peers))
		}
		if files >= 0 && st.Folders[0].Files != files {
			return false, fmt.Sprintf("%s holds %d files, node1 %d", nd.name, st.Folders[0].Files, files)
		}
		files = st.Folders[0].Files
	}
	return true, ""
}

// sameTrees fails unless every node's folder equals node1's.
func (r *rig) sameTrees() {
	for _, nd := range r.nodes[1:] {
		sameTree(r.tb, r.nodes[0].folder, nd.folder)
	}
}

// sameFile reports whether b's copy of rel has a's size and mtime, which
// lockstep gives every file it writes.
func sameFile(a, b *benchNode, rel string) func() (bool, string) {
	return func() (bool, string) {
		sa, errA := os.Stat(filepath.Join(a.folder, rel))
		sb, errB := os.Stat(filepath.Join(b.folder, rel))
		if errA != nil || errB != nil {
			return false, fmt.Sprintf("%s: %v, %v", rel, errA, errB)
		}
		if sa.Size() != sb.Size() || !sa.ModTime().Equal(sb.ModTime()) {
			return false, fmt.Sprintf("%s on %s is %d bytes of %s, on %s %d bytes of %s", rel, a.name, sa.Size(), sa.ModTime(), b.name, sb.Size(), sb.ModTime())
		}
		return true, ""
	}
}

func sentBytes(st status) (n uint64) {
	for _, t := range st.Traffic {
		n += t.BytesSent
	}
	return n
}

// ---- rsync ----

// rsyncd is an rsync daemon on 127.0.0.1 serving one writable module,
// "mod", from a temporary directory; it is stopped at cleanup.
type rsyncd struct {
	addr string
	root string
	cmd  *exec.Cmd
	done chan error
}

// rawTransfer adds up raw quic-go transfers (runRawQUIC).
type rawTransfer struct {
	bytes        int64
	elapsed, cpu time.Duration
}

func (t *rawTransfer) add(x rawTransfer) {
	t.bytes += x.bytes
	t.elapsed += x.elapsed
	t.cpu += x.cpu
}

var rawQUIC struct {
	once sync.Once
	exe  string
	err  error
}

// runRawQUIC sends n bytes through one raw quic-go stream between two
// processes on loopback, with the transport's TLS and QUIC settings: the
// test binary of package transport in its LOCKSTEP_RAWQUIC=link mode
// (transport/rawproc_test.go), built once. This is the link lockstep's
// throughput is set against: two processes, as two daemons are, on the
// same cores.
func runRawQUIC(tb testing.TB, n int64) rawTransfer {
	tb.Helper()
	rawQUIC.once.Do(func() {
		rawQUIC.exe = filepath.Join(binDir, "transport.test")
		build := exec.Command("go", "test", "-c", "-o", rawQUIC.exe, "../transport")
		if os.Getenv("LOCKSTEP_E2E_NORACE") == "" {
			build.Args = slices.Insert(build.Args, 3, "-race")
		}
		if out, err := build.CombinedOutput(); err != nil {
			rawQUIC.err = fmt.Errorf("building the transport test binary: %v\n%s", err, out)
		}
	})
	if rawQUIC.err != nil {
		tb.Fatal(rawQUIC.err)
	}
	cmd := exec.Command(rawQUIC.exe)
	cmd.Env = append(os.Environ(), "LOCKSTEP_RAWQUIC=link", fmt.Sprintf("LOCKSTEP_RAWQUIC_BYTES=%d", n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("raw quic-go transfer of %d bytes: %v", n, err)
	}
	var elapsed, cpu float64
	if _, err := fmt.Sscanf(string(out), "elapsed %g cpu %g", &elapsed, &cpu); err != nil {
		tb.Fatalf("raw quic-go transfer said %q: %v", out, err)
	}
	return rawTransfer{bytes: n, elapsed: time.Duration(elapsed * 1e9), cpu: time.Duration(cpu * 1e9)}
}

// startRsyncd starts the daemon, or returns nil when rsync is not installed
// and tb is a test (a benchmark fails instead: its ratios need rsync).
func startRsyncd(tb testing.TB) *rsyncd {
	tb.Helper()
	if os.Getenv("LOCKSTEP_BENCH_RSYNC") == "off" {
		return nil // a quicker run, for comparing two builds of lockstep
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		if _, isBench := tb.(*testing.B); isBench {
			tb.Fatalf("rsync is needed for the comparison (apt-get install -y rsync): %v", err)
		}
		tb.Logf("rsync not installed; comparison left out: %v", err)
		return nil
	}
	dir := tb.TempDir()
	d := &rsyncd{root: filepath.Join(dir, "mod")}
	if err := os.MkdirAll(d.root, 0o755); err != nil {
		tb.Fatal(err)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "use chroot = no\nreverse lookup = no\nlog file = %s\n", filepath.Join(dir, "rsyncd.log"))
	if os.Geteuid() == 0 {
		conf.WriteString("uid = 0\ngid = 0\n") // root's daemon would otherwise write as nobody
	}
	fmt.Fprintf(&conf, "[mod]\npath = %s\nread only = no\n", d.root)
	confPath := filepath.Join(dir, "rsyncd.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	var lastErr error
	for range 3 { // the free port may be taken before the daemon binds it
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		d.addr = l.Addr().String()
		l.Close()
		_, port, _ := net.SplitHostPort(d.addr)
		cmd := exec.Command("rsync", "--daemon", "--no-detach", "--config="+confPath, "--port="+port, "--address=127.0.0.1")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		// Its own process group, so that stopping it reaches the
		// children it forks per connection too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start rsync daemon: %v", err)
		}
		d.cmd, d.done = cmd, make(chan error, 1)
		go func() { d.done <- cmd.Wait() }()
		if lastErr = d.waitListening(); lastErr == nil {
			tb.Cleanup(d.stop)
			return d
		}
		d.stop()
		lastErr = fmt.Errorf("%w: %s", lastErr, bytes.TrimSpace(stderr.Bytes()))
	}
	tb.Fatalf("rsync daemon on %s: %v", d.addr, lastErr)
	return nil
}

func (d *rsyncd) waitListening() error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("rsync daemon exited: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", d.addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("rsync daemon not listening after 10 s")
}

// stop ends the daemon's process group and waits for the daemon.
func (d *rsyncd) stop() {
	if d.cmd == nil {
		return
	}
	pgid := d.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-d.done
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // any child still exiting
	d.cmd = nil
}

func (d *rsyncd) path(sub string) string { return filepath.Join(d.root, sub) }

type rsyncRun struct {
	dur            time.Duration
	sent, received int64         // rsync --stats "Total bytes sent/received" of the pushing side
	cpu            time.Duration // of the client and of the daemon's process for the connection
}

// push runs `rsync -a` from src to the module's sub directory, which
// rsync's delta algorithm updates when it already holds older files.
func (d *rsyncd) push(tb testing.TB, src, sub string, extra ...string) rsyncRun {
	tb.Helper()
	args := append([]string{"-a", "--stats", "--no-human-readable", "--exclude=.lockstep*"}, extra...)
	cmd := exec.Command("rsync", append(args, src+"/", "rsync://"+d.addr+"/mod/"+sub+"/")...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_, _, cu0, cs0 := procTicks(tb, d.cmd.Process.Pid)
	start := time.Now()
	err := cmd.Run()
	run := rsyncRun{dur: time.Since(start)}
	if err != nil {
		tb.Fatalf("rsync to %s: %v: %s", d.addr, err, strings.TrimSpace(errb.String()))
	}
	// The daemon's process for this connection counts in its children's
	// time once it has exited and been reaped.
	children := fmt.Sprintf("/proc/%d/task/%d/children", d.cmd.Process.Pid, d.cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(children); err != nil || len(bytes.TrimSpace(b)) == 0 {
			break
		}
	}
	_, _, cu1, cs1 := procTicks(tb, d.cmd.Process.Pid)
	run.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() + time.Duration(cu1-cu0+cs1-cs0)*tick
	sc := bufio.NewScanner(&out)
	found := 0
	for sc.Scan() {
		line := sc.Text()
		for prefix, dst := range map[string]*int64{"Total bytes sent:": &run.sent, "Total bytes received:": &run.received} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(rest), ",", ""), 10, 64)
				if err != nil {
					tb.Fatalf("rsync --stats: %q: %v", line, err)
				}
				*dst = n
				found++
			}
		}
	}
	if found != 2 {
		tb.Fatalf("rsync --stats printed no byte totals:\n%s", out.String())
	}
	return run
}

// syncfs flushes the module's filesystem, as lockstep does before a file
// counts as held, and returns how long that took.
func (d *rsyncd) syncfs(tb testing.TB) time.Duration {
	tb.Helper()
	f, err := os.Open(d.root)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		tb.Fatalf("syncfs %s: %v", d.root, err)
	}
	return time.Since(start)
}

// ---- data and measurement helpers ----

// writeSynced writes data to path and flushes it.
func writeSynced(tb testing.TB, path string, data []byte) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// flushFS flushes the filesystem holding dir, so that data a benchmark
// prepared is not flushed by the first syncfs of what it measures.
func flushFS(tb testing.TB, dir string) {
	tb.Helper()
	f, err := os.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		tb.Fatalf("syncfs %s: %v", dir, err)
	}
}

// writeRandomFile writes size reproducible random bytes, streamed.
func writeRandomFile(tb testing.TB, path string, seed uint64, size int64) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0xbe})
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// sameTree fails unless the trees under a and b are equal, entry by entry
// (lockstep's temporary names aside), hashing files as streams.
func sameTree(tb testing.TB, a, b string) {
	tb.Helper()
	if d := diffTrees(digestTree(tb, a), digestTree(tb, b)); d != "" {
		tb.Fatalf("%s and %s differ: %s", a, b, d)
	}
}

func digestTree(tb testing.TB, dir string) map[string]entry {
	tb.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if strings.HasPrefix(d.Name(), ".lockstep") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		e := entry{Mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Kind = "symlink"
			e.Digest, _ = os.Readlink(p)
		case fi.IsDir():
			e.Kind = "dir"
		default:
			e.Kind, e.Size = "file", fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			e.Digest = hex.EncodeToString(h.Sum(nil))
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		tb.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// procTicks returns fields 14 to 17 of /proc/<pid>/stat: the CPU time of
// the process, user and system, then that of its reaped children, in clock
// ticks of 1/100 s (USER_HZ on Linux).
func procTicks(tb testing.TB, pid int) (utime, stime, cutime, cstime int64) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name may hold spaces; fields are counted after its ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		tb.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	var v [4]int64
	for k := range v {
		if v[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil { // f[0] is field 3
			tb.Fatalf("/proc/%d/stat: %q", pid, b)
		}
	}
	return v[0], v[1], v[2], v[3]
}

const tick = 10 * time.Millisecond // USER_HZ = 100

// cpuOf returns the CPU time a process used so far.
func cpuOf(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	u, s, _, _ := procTicks(tb, pid)
	return time.Duration(u+s) * tick
}

// procCPU returns a process's CPU time, user and system, in clock ticks
// from /proc/<pid>/stat, and in nanoseconds summed over its threads'
// schedstat (finer; threads that exited are not counted).
func procCPU(tb testing.TB, pid int) (ticks, ns int64) {
	tb.Helper()
	utime, stime, _, _ := procTicks(tb, pid)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		s, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		if fields := strings.Fields(string(s)); len(fields) > 0 {
			n, _ := strconv.ParseInt(fields[0], 10, 64)
			ns += n
		}
	}
	return utime + stime, ns
}

// nearestRank returns the nearest-rank p-th percentile of sorted samples.
func nearestRank(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// arrivals counts the files (and symlinks) that appear under a folder by
// their final names — lockstep links or renames each whole file into place — watching
// new directories as they appear. It is how a benchmark learns that data
// has arrived without polling the daemons. It asks inotify for creations
// and moves into place alone (fsnotify would also ask for every write and
// metadata change, four events per file arriving, whose reading would take
// CPU from the daemons being measured).
type arrivals struct {
	tb   testing.TB
	in   *os.File // the inotify instance, non-blocking, so Close ends a Read
	fd   int      // in's descriptor (File.Fd would make it blocking)
	root string
	done chan struct{}

	mu     sync.Mutex
	wds    map[int32]string // watched directories
	seen   map[string]bool
	first  time.Time // the first arrival
	at     time.Time // the latest arrival
	errMsg string
}

func watchArrivals(tb testing.TB, dir string) *arrivals {
	tb.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		tb.Fatal(err)
	}
	a := &arrivals{tb: tb, in: os.NewFile(uintptr(fd), "inotify"), fd: fd, root: dir, done: make(chan struct{}), wds: map[int32]string{}, seen: map[string]bool{}}
	a.addTree(dir)
	go a.loop()
	tb.Cleanup(func() {
		a.in.Close()
		<-a.done
	})
	return a
}

func (a *arrivals) loop() {
	defer close(a.done)
	buf := make([]byte, 256<<10)
	for {
		n, err := a.in.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				a.mu.Lock()
				a.errMsg = err.Error()
				a.mu.Unlock()
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				// The events are lost: walk the tree instead.
				a.addTree(a.root)
				continue
			}
			name = name[:max(0, bytes.IndexByte(name, 0))]
			a.mu.Lock()
			dir, ok := a.wds[ev.Wd]
			a.mu.Unlock()
			if !ok || len(name) == 0 || bytes.HasPrefix(name, []byte(".lockstep")) {
				continue
			}
			p := filepath.Join(dir, string(name))
			if ev.Mask&unix.IN_ISDIR != 0 {
				a.addTree(p)
			} else {
				// No lstat to tell a file from a symlink: the benchmarks
				// make none, and it would cost a path walk per file.
				a.record(p)
			}
		}
	}
}

// addTree watches dir and its subdirectories and records the files already
// there, which may have arrived before the watch.
func (a *arrivals) addTree(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".lockstep") && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			wd, err := unix.InotifyAddWatch(a.fd, p, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR)
			if err == nil {
				a.mu.Lock()
				a.wds[int32(wd)] = p
				a.mu.Unlock()
			}
		} else if d.Type().IsRegular() {
			a.record(p)
		}
		return nil
	})
}

func (a *arrivals) record(p string) {
	a.mu.Lock()
	if !a.seen[p] {
		a.seen[p] = true
		a.at = time.Now()
		if a.first.IsZero() {
			a.first = a.at
		}
	}
	a.mu.Unlock()
}

// atLeast returns a check that n files have arrived.
func (a *arrivals) atLeast(n int) func() (bool, string) {
	return func() (bool, string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.errMsg != "" {
			a.tb.Errorf("watching %s: %s", a.root, a.errMsg)
			a.errMsg = ""
		}
		return len(a.seen) >= n, fmt.Sprintf("%d of %d files arrived in %s", len(a.seen), n, a.root)
	}
}

// last returns when the latest file arrived.
func (a *arrivals) last() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at
}

func (a *arrivals) firstAt() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.first
}
