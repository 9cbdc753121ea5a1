#!/usr/bin/env bash
# A three-node lockstep cluster on 127.0.0.1 in a scratch directory: writes a
# few files on one node, shows them arriving on the others, prints the status
# table, then keeps running until Ctrl-C (or exits at once with
# LOCKSTEP_DEMO_ONESHOT=1). Everything it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LOCKSTEP_BIN:-$here/bin/lockstep}
[ -x "$bin" ] || { echo "demo: $bin is missing; run 'make build' first" >&2; exit 1; }
base_port=${LOCKSTEP_DEMO_PORT:-17401}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-demo.XXXXXX")
pids=()

cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$scratch"
  echo "demo: stopped all nodes and removed $scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\033[1m%s\033[0m\n' "$*"; }

for i in 1 2 3; do
  mkdir -p "$scratch/node$i/docroot"
  "$bin" init --data-dir "$scratch/node$i/data" --name "node$i" >"$scratch/node$i/id"
done
for i in 1 2 3; do
  cfg=$scratch/node$i/lockstep.toml
  {
    printf '[node]\nname = "node%s"\ndata_dir = "%s"\nlisten = "127.0.0.1:%s"\n' "$i" "$scratch/node$i/data" $((base_port + i - 1))
    for j in 1 2 3; do
      [ "$i" = "$j" ] && continue
      printf '\n[[peers]]\nname = "node%s"\nid = "%s"\naddress = "127.0.0.1:%s"\n' "$j" "$(cat "$scratch/node$j/id")" $((base_port + j - 1))
    done
    printf '\n[[folders]]\nid = "docroot"\npath = "%s"\n' "$scratch/node$i/docroot"
  } >"$cfg"
done

say "Starting three nodes in $scratch (UDP ports $base_port-$((base_port + 2)))"
for i in 1 2 3; do
  "$bin" run --config "$scratch/node$i/lockstep.toml" 2>"$scratch/node$i/lockstep.log" &
  pids+=($!)
done

# Wait until every node answers and sees both peers.
for i in 1 2 3; do
  for _ in $(seq 100); do
    if "$bin" status --json --config "$scratch/node$i/lockstep.toml" 2>/dev/null | grep -q '"connected": true'; then
      break
    fi
    sleep 0.1
  done
done

ms() { date +%s%3N; }
arrived() { # path content-file: wait until the path matches on node2 and node3
  local rel=$1 start=$2
  for _ in $(seq 500); do
    if cmp -s "$scratch/node1/docroot/$rel" "$scratch/node2/docroot/$rel" &&
      cmp -s "$scratch/node1/docroot/$rel" "$scratch/node3/docroot/$rel"; then
      printf '  %-28s on node2 and node3 after %d ms\n' "$rel" $(($(ms) - start))
      return 0
    fi
    sleep 0.01
  done
  echo "  $rel did not arrive" >&2
  return 1
}

say "Writing on node1, watching node2 and node3"
start=$(ms)
echo "<h1>hello from lockstep</h1>" >"$scratch/node1/docroot/index.html"
arrived index.html "$start"
start=$(ms)
mkdir -p "$scratch/node1/docroot/uploads/2026"
head -c 8388608 /dev/urandom >"$scratch/node1/docroot/uploads/2026/photo.raw"
arrived uploads/2026/photo.raw "$start"
start=$(ms)
printf 'edited\n' >>"$scratch/node1/docroot/index.html"
arrived index.html "$start"

say "Status of node1"
"$bin" status --config "$scratch/node1/lockstep.toml"

if [ -n "${LOCKSTEP_DEMO_ONESHOT:-}" ] || [ ! -t 0 ]; then
  exit 0
fi
say "The cluster keeps running. Try:"
echo "  echo hi > $scratch/node2/docroot/hi.txt; ls $scratch/node*/docroot"
echo "  $bin status --config $scratch/node3/lockstep.toml"
echo "Logs: $scratch/node*/lockstep.log. Press Ctrl-C to stop."
while true; do sleep 3600; done
