package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"lockstep/chunker"
)

var chunkCommand = command{
	name: "chunk",
	args: "FILE...",
	summary: `Cut files into content-defined chunks as lockstep does and print each chunk's
offset, length and BLAKE3 hash, each file's manifest hash, and totals (with the
chunks and bytes counted once per distinct hash, which is what a peer that holds
none of them would receive). Reads the files only; no daemon needed.`,
	run: runChunk,
}

// chunkReport is the --json output of `lockstep chunk`.
type chunkReport struct {
	Params chunkParamsJSON `json:"params"`
	Files  []chunkFileJSON `json:"files"`
	Total  chunkTotalJSON  `json:"total"`
}

type chunkParamsJSON struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

type chunkFileJSON struct {
	Path     string          `json:"path"`
	Size     int64           `json:"size"`
	Manifest chunker.Hash    `json:"manifest"`
	Chunks   []chunkItemJSON `json:"chunks"`
}

type chunkItemJSON struct {
	Offset int64        `json:"offset"`
	Length uint32       `json:"length"`
	Hash   chunker.Hash `json:"hash"`
}

type chunkTotalJSON struct {
	Files          int   `json:"files"`
	Chunks         int   `json:"chunks"`
	Bytes          int64 `json:"bytes"`
	DistinctChunks int   `json:"distinct_chunks"`
	DistinctBytes  int64 `json:"distinct_bytes"`
}

func runChunk(ctx context.Context, e env, fs *flag.FlagSet, args []string) error {
	configFlag(fs) // accepted like on every command; chunk reads no configuration
	var minSize, avgSize, maxSize chunkSize
	fs.Var(&minSize, "min", "smallest chunk `size` in bytes; K, KiB, M, MiB suffixes allowed (default avg/4)")
	fs.Var(&avgSize, "avg", fmt.Sprintf("target chunk `size`, a power of two (default %d)", chunker.DefaultParams.Avg))
	fs.Var(&maxSize, "max", "largest chunk `size` (default 4×avg)")
	asJSON := fs.Bool("json", false, "print the chunks and totals as JSON")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("no FILE given")
	}
	p := chunker.DefaultParams
	if avgSize > 0 {
		p = chunker.Params{Min: int(avgSize) / 4, Avg: int(avgSize), Max: 4 * int(avgSize)}
	}
	if minSize > 0 {
		p.Min = int(minSize)
	}
	if maxSize > 0 {
		p.Max = int(maxSize)
	}
	if err := p.Validate(); err != nil {
		return usagef("--min/--avg/--max: %v", err)
	}

	report := chunkReport{Params: chunkParamsJSON{p.Min, p.Avg, p.Max}}
	seen := map[chunker.Hash]bool{}
	for _, path := range fs.Args() {
		m, err := chunkFile(ctx, path, p)
		if err != nil {
			return err
		}
		f := chunkFileJSON{Path: path, Size: m.Size(), Manifest: m.Hash(), Chunks: make([]chunkItemJSON, len(m.Chunks))}
		var off int64
		for i, c := range m.Chunks {
			f.Chunks[i] = chunkItemJSON{Offset: off, Length: c.Length, Hash: c.Hash}
			off += int64(c.Length)
			if !seen[c.Hash] {
				seen[c.Hash] = true
				report.Total.DistinctChunks++
				report.Total.DistinctBytes += int64(c.Length)
			}
		}
		report.Total.Files++
		report.Total.Chunks += len(m.Chunks)
		report.Total.Bytes += f.Size
		if *asJSON {
			report.Files = append(report.Files, f)
		} else if err := printChunkFile(e, f); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	t := report.Total
	_, err := fmt.Fprintf(e.stdout, "total: %d files, %d chunks (%d distinct), %d bytes (%d in distinct chunks)\n",
		t.Files, t.Chunks, t.DistinctChunks, t.Bytes, t.DistinctBytes)
	return err
}

// chunkFile chunks and hashes one file, on every core.
func chunkFile(ctx context.Context, path string, p chunker.Params) (chunker.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return chunker.Manifest{}, err
	}
	defer f.Close()
	m, err := chunker.SplitParallel(ctx, f, p, runtime.GOMAXPROCS(0))
	if err != nil {
		return chunker.Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// printChunkFile prints one file in the text format: a header line, one
// line per chunk (offset, length, hash), then the manifest line.
func printChunkFile(e env, f chunkFileJSON) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", f.Path)
	fmt.Fprintf(&b, "  %12s %8s  %s\n", "OFFSET", "LENGTH", "HASH")
	for _, c := range f.Chunks {
		fmt.Fprintf(&b, "  %12d %8d  %s\n", c.Offset, c.Length, c.Hash)
	}
	fmt.Fprintf(&b, "  manifest %s  %d chunks  %d bytes\n\n", f.Manifest, len(f.Chunks), f.Size)
	_, err := io.WriteString(e.stdout, b.String())
	return err
}

// chunkSize is a byte count flag that accepts binary suffixes: 16384, 16K,
// 16KiB, 1M, 1MiB.
type chunkSize int

func (s *chunkSize) String() string { return strconv.Itoa(int(*s)) }

func (s *chunkSize) Set(v string) error {
	n, err := parseChunkSize(v)
	if err != nil {
		return err
	}
	*s = chunkSize(n)
	return nil
}

func parseChunkSize(v string) (int, error) {
	num, mult := v, 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || n > (1<<31)/mult {
		return 0, fmt.Errorf("invalid size %q: want a positive byte count such as 65536, 64K or 64KiB", v)
	}
	return n * mult, nil
}
