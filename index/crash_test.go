package index

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"lockstep/chunker"
)

const (
	crashDirEnv  = "LOCKSTEP_INDEX_CRASH_DIR"
	crashSeedEnv = "LOCKSTEP_INDEX_CRASH_SEED"
)

// TestCrashConsistency runs a child process (this test binary again) that
// writes batches in a loop, kills it with SIGKILL after a random number of
// batches, reopens the index and checks every invariant, and that every
// batch the child saw committed is there. It repeats on the same index, so
// later rounds start from a crashed one.
func TestCrashConsistency(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashChild(dir, seed)
		return
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set %s to repeat)", seed, crashSeedEnv)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		kill := 1 + rng.IntN(15)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashConsistency$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashSeedEnv, rng.Uint64()))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var committed uint64
		sc := bufio.NewScanner(out)
		n := 0
		for n < kill && sc.Scan() {
			seq, ok := strings.CutPrefix(sc.Text(), "committed ")
			if !ok {
				continue
			}
			committed, _ = strconv.ParseUint(seq, 10, 64)
			n++
		}
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		if n < kill {
			t.Fatalf("round %d: child stopped after %d batches: %v", round, n, sc.Err())
		}
		ix, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		err = consistencyError(ix)
		info, ierr := ix.Info("crash")
		ix.Close()
		if err != nil {
			t.Fatalf("round %d (killed after %d batches): %v", round, kill, err)
		}
		if ierr != nil || info.Sequence < committed {
			t.Fatalf("round %d: folder at sequence %d (%v), but the child had committed %d", round, info.Sequence, ierr, committed)
		}
		t.Logf("round %d: killed after %d batches at sequence ≥ %d: consistent", round, kill, committed)
	}
}

// crashChild writes random batches to the index in dir until it is killed,
// printing the folder's sequence after each commit.
func crashChild(dir string, seed uint64) {
	ix, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	budget := ix.newBudget()
	for batch := 0; ; batch++ {
		var recs []Record
		for range 1 + rng.IntN(400) {
			path := fmt.Sprintf("d%d/f%d", rng.IntN(20), rng.IntN(100))
			switch k := rng.IntN(10); {
			case k < 6:
				recs = append(recs, randomFile(rng, path, 1+rng.IntN(4)))
			case k < 8:
				recs = append(recs, tomb(path))
			case k < 9:
				recs = append(recs, Record{Path: path, Type: Symlink, Target: "t", Version: vec(1, 1)})
			default:
				recs = append(recs, Record{Path: path, Type: Dir, Version: vec(1, 1)})
			}
		}
		if batch%7 == 3 {
			// A file whose locations do not fit in one transaction.
			recs = append(recs, randomFile(rng, fmt.Sprintf("big%d", rng.IntN(3)), int(budget.count)+rng.IntN(500)))
		}
		if err := ix.Put("crash", recs); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", recs[len(recs)-1].Sequence)
	}
}

func randomFile(rng *rand.Rand, path string, chunks int) Record {
	r := Record{Path: path, Type: File, Version: vec(1, 1)}
	r.Manifest.Chunks = make([]chunker.Ref, chunks)
	for i := range r.Manifest.Chunks {
		var h chunker.Hash
		// A small hash space, so files share chunks.
		h[0], h[1] = byte(rng.IntN(256)), byte(rng.IntN(8))
		r.Manifest.Chunks[i] = chunker.Ref{Hash: h, Length: 1 + uint32(rng.IntN(1000))}
		r.Size += int64(r.Manifest.Chunks[i].Length)
	}
	return r
}
