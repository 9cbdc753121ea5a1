package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchTable: the table of scripts/bench-e2e.sh gives one row per
// figure, the median of several runs with their range, and judges the
// targets on the median, both "at most" and "at least" ones.
func TestBenchTable(t *testing.T) {
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Skip("no awk on this machine: the benchmark table is not checked")
	}
	out := `goos: linux
BenchmarkSmallFiles-2   	       1	       150.0 cpu_us/file	      9.5 s	        1.047 wire_ratio
BenchmarkSmallFiles-2   	       1	       130.0 cpu_us/file	     11.0 s	        1.047 wire_ratio
BenchmarkSmallFiles-2   	       1	       140.0 cpu_us/file	      9.9 s	        1.20 wire_ratio
BenchmarkInitialSync/OneFile-2         	       1	 164.53 MB/s	  0.60 vs_raw_quic
BenchmarkInitialSync/OneFile-2         	       1	 200.00 MB/s	  0.75 vs_raw_quic
PASS
`
	in := filepath.Join(t.TempDir(), "bench.out")
	if err := os.WriteFile(in, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command(awk, "-f", "../scripts/bench-table.awk", in).CombinedOutput()
	if err != nil {
		t.Fatalf("awk: %v: %s", err, got)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(got), "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
		}
	}
	for key, want := range map[string]string{
		"SmallFiles s":                    "9.9 <= 10 ok median of 3, 9.5-11",
		"SmallFiles cpu_us/file":          "140 median of 3, 130-150",
		"SmallFiles wire_ratio":           "1.047 <= 1.1 ok median of 3, 1.047-1.2",
		"InitialSync/OneFile vs_raw_quic": "0.675 >= 0.7 MISSED (x0.96) median of 2, 0.6-0.75",
		"InitialSync/OneFile MB/s":        "182.265 median of 2, 164.5-200",
	} {
		if rows[key] != want {
			t.Errorf("%s: %q, want %q\n%s", key, rows[key], want, got)
		}
	}
}
