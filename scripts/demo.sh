#!/usr/bin/env bash
# Content-defined chunking, shown on one file: chunks a sample file with
# `lockstep chunk`, inserts a few bytes in its middle, chunks it again and
# shows that only the one or two chunks around the insertion changed: all a
# peer holding the old version would have to receive. Works in a scratch
# directory that it removes on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LOCKSTEP_BIN:-$here/bin/lockstep}
[ -x "$bin" ] || { echo "demo: $bin is missing; run 'make build' first" >&2; exit 1; }
size_mib=${LOCKSTEP_DEMO_MIB:-8}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-chunk-demo.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

say() { printf '\033[1m%s\033[0m\n' "$*"; }

# hashes FILE: the chunk hashes `lockstep chunk` prints for FILE, in order.
hashes() { "$bin" chunk "$1" | awk '$3 ~ /^blake3-/ { print $3 }'; }

say "== a ${size_mib} MiB sample file"
head -c $((size_mib << 20)) /dev/urandom >"$scratch/v1.bin"
"$bin" chunk "$scratch/v1.bin" | awk '/manifest|^total/ { tail = 1 } NR <= 8 || tail { print; next } !dots++ { print "           ..." }'
hashes "$scratch/v1.bin" >"$scratch/v1.hashes"

half=$((size_mib << 19))
say "== insert 27 bytes at offset $half"
{
  head -c "$half" "$scratch/v1.bin"
  printf 'inserted by the demo script'
  tail -c +$((half + 1)) "$scratch/v1.bin"
} >"$scratch/v2.bin"
hashes "$scratch/v2.bin" >"$scratch/v2.hashes"

say "== chunks of the new version that the old one lacks"
"$bin" chunk "$scratch/v2.bin" | awk 'NR == FNR { old[$1] = 1; next } $3 ~ /^blake3-/ && !($3 in old)' "$scratch/v1.hashes" -
new=$(grep -cvxFf "$scratch/v1.hashes" "$scratch/v2.hashes" || true)
total=$(wc -l <"$scratch/v2.hashes")

say "== both versions together"
"$bin" chunk "$scratch/v1.bin" "$scratch/v2.bin" | tail -n 1
say "$new of $total chunks changed; the other $((total - new)) are already on any node holding the old version."
