#!/usr/bin/env bash
# End-to-end benchmarks of lockstep on 127.0.0.1, beside rsync pushing the
# same data to a local rsync daemon in the same run, then a table of every
# figure with its target. The initial-sync scenarios also time the same
# amount of data through a raw quic-go stream between two processes, before
# and after lockstep's transfer (vs_raw_quic, the figure the target is set
# on). The transport's comparisons then run in the same session: chunks
# against a raw stream in one process (BenchmarkChunkVsRaw), and a raw
# stream in one process against one between two (BenchmarkRawQUICProcesses).
#
#   scripts/bench-e2e.sh                       # full sizes (1 GiB, 100k files, 60 s idle; ~15-30 min)
#   LOCKSTEP_BENCH_SCALE=small scripts/bench-e2e.sh   # small sizes, about a minute
#   BENCH='Delta|IdleCPU' COUNT=3 scripts/bench-e2e.sh
#   LOCKSTEP_BENCH_TRANSPORT=0 scripts/bench-e2e.sh   # skip the transport benchmark
#   LOCKSTEP_BENCH_FS=ext4 scripts/bench-e2e.sh       # on a fresh ext4 (root; see below)
#
# Every file of the benchmarks lives under TMPDIR (/tmp by default). With
# LOCKSTEP_BENCH_FS=ext4 the script makes a fresh 12 GiB ext4 filesystem
# (journaled, mkfs defaults) in a sparse image beside TMPDIR, mounts it
# through a direct-I/O loop device, runs everything there and removes it
# at the end: figures that do not depend on what earlier runs left on the
# machine's own disk (a journal-less ext4, for one, pays for every
# recently deleted inode on each create).
#
# The daemon under test must be built without -race: the e2e TestMain
# does so only with LOCKSTEP_E2E_NORACE=1, which this script sets (the
# benchmarks skip themselves without it). Everything the benchmarks start
# (daemons, the rsync daemon) is stopped by the tests' cleanup.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
command -v rsync >/dev/null || { echo "bench-e2e: rsync is needed for the comparison: apt-get install -y rsync" >&2; exit 1; }

export LOCKSTEP_E2E_NORACE=1
out=${OUT:-${TMPDIR:-/tmp}/lockstep-bench-e2e.$(date +%Y%m%d-%H%M%S).out}
case ${LOCKSTEP_BENCH_FS:-} in
"") ;;
ext4)
  [ "$(id -u)" = 0 ] || { echo "bench-e2e: LOCKSTEP_BENCH_FS=ext4 needs root (mkfs, losetup, mount)" >&2; exit 1; }
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-benchfs.XXXXXX")
  truncate -s 12G "$scratch/ext4.img"
  mkfs.ext4 -q -F "$scratch/ext4.img"
  loopdev=$(losetup --direct-io=on -f --show "$scratch/ext4.img")
  mkdir "$scratch/mnt"
  cleanup() { umount "$scratch/mnt" 2>/dev/null; losetup -d "$loopdev" 2>/dev/null; rm -rf "$scratch"; }
  trap cleanup EXIT
  mount "$loopdev" "$scratch/mnt"
  export TMPDIR=$scratch/mnt
  ;;
*) echo "bench-e2e: LOCKSTEP_BENCH_FS=$LOCKSTEP_BENCH_FS: want ext4 or nothing" >&2; exit 1 ;;
esac
bench=${BENCH:-'^Benchmark(Propagation4KiB|InitialSync|SmallFiles|Delta256MiB|IdleCPU|ResyncIntact)$'}
count=${COUNT:-1}

{
  echo "# date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(uname -r)"
  echo "# scale:   ${LOCKSTEP_BENCH_SCALE:-full}; $(rsync --version | head -1); $(go version)"
  echo "# files:   ${TMPDIR:-/tmp} on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2, $1}')${LOCKSTEP_BENCH_FS:+ (fresh, LOCKSTEP_BENCH_FS=$LOCKSTEP_BENCH_FS)}"
} | tee "$out"

# A failed benchmark still leaves the others' figures: report them all,
# then exit non-zero.
status=0
go test -run '^$' -bench "$bench" -benchtime 1x -count "$count" -timeout 4h ./e2e | tee -a "$out" || status=1
if [ "${LOCKSTEP_BENCH_TRANSPORT:-1}" != 0 ]; then
  go test -run '^$' -bench ChunkVsRaw -benchtime 2048x -count "$count" ./transport | tee -a "$out" || status=1
  go test -run '^$' -bench RawQUICProcesses -benchtime 4x -count "$count" ./transport | tee -a "$out" || status=1
fi

# One row per figure (with COUNT > 1: the median of the runs, and their
# range); the targets are the ones the project set itself, judged on the
# median.
echo
awk -f "$here/scripts/bench-table.awk" "$out" | tee -a "$out"
echo "bench-e2e: raw output and table in $out"
exit "$status"
