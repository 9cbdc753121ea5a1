# bench-table.awk: the table of scripts/bench-e2e.sh, from the output of
# `go test -bench` over the e2e benchmarks. One row per figure: with
# several runs of a benchmark (-count), the median of the runs and their
# range; the targets are the ones the project set itself, judged on the
# median.
#
#   awk -f scripts/bench-table.awk lockstep-bench-e2e.*.out
BEGIN {
  target["Propagation4KiB p50_ms"] = 10;      target["Propagation4KiB p99_ms"] = 50
  target["SmallFiles s"] = 10;                target["SmallFiles wire_ratio"] = 1.1
  target["Delta256MiB insert_wire_B"] = 131072; target["Delta256MiB overwrite_wire_B"] = 1200000
  target["IdleCPU max_cpu%"] = 0.05
  # At least: lockstep against a raw quic-go stream between two processes.
  least["InitialSync/OneFile vs_raw_quic"] = 0.70; least["InitialSync/ManyFiles vs_raw_quic"] = 0.70
}
/^Benchmark/ && NF > 3 {
  name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
  for (i = 3; i < NF; i += 2) {
    unit = $(i + 1); if (unit == "ns/op" && $i == 0) continue
    key = name " " unit
    if (!(key in n)) order[++keys] = key
    vals[key, ++n[key]] = $i + 0
  }
}
END {
  printf "%-28s %-24s %14s %12s  %s\n", "benchmark", "figure", "value", "target", ""
  for (k = 1; k <= keys; k++) {
    key = order[k]; m = n[key]
    # Insertion sort: a handful of runs.
    for (i = 1; i <= m; i++) v[i] = vals[key, i]
    for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    t = ""; verdict = ""
    if (key in target) { t = "<= " target[key]; verdict = (med <= target[key]) ? "ok" : sprintf("MISSED (x%.2f)", med / target[key]) }
    if (key in least) { t = ">= " least[key]; verdict = (med >= least[key]) ? "ok" : sprintf("MISSED (x%.2f)", med / least[key]) }
    if (m > 1) verdict = verdict sprintf("  median of %d, %.4g-%.4g", m, v[1], v[m])
    split(key, parts, " ")
    printf "%-28s %-24s %14.6g %12s  %s\n", parts[1], parts[2], med, t, verdict
  }
}
