#!/usr/bin/env bash
# Attribution benchmark. For each count (default 1000 and 5000) it starts
# that many `sleep` processes in a container-shaped cgroup (a CRI container
# of a burstable pod, in v2 and in the v1 memory, cpu, cpuacct, blkio and
# pids hierarchies, so their /proc/<pid>/cgroup has real path lengths), then
#   - runs benches/attribution.rs over the whole of /proc: what each read
#     attribution makes costs per process;
#   - runs the exporter (release build, the process collectors only) with
#     attribution off, on with the defaults (cgroup, user and fd limit
#     cached, a tenth reread per scrape, the per-container/pod/unit/user
#     sums and the cgroup accounting), and on with every process reread
#     every scrape (attribution_recheck_scrapes: 1): scrape latency, CPU per
#     scrape and RSS (scripts/bench_scrape.py);
#   - counts the series of a whole default exporter (every collector), by
#     kind.
# Without root the sleepers stay in the script's own cgroups. Everything
# started and created is removed on exit. Run under the suite lock:
#
#   flock /work/suite.lock scripts/bench_attribution.sh [COUNT...]
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1000 5000)
rounds=${ROUNDS:-7}

scrapes=${SCRAPES:-20}
cargo bench --bench attribution --no-run --quiet
cargo build --release --quiet
bin=target/release/herakles-node-exporter

work=$(mktemp -d)
spawner=""
exporter=""
tops=()
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null || true
  exporter=""
  [ -n "$spawner" ] && kill "$spawner" 2>/dev/null || true
  if [ -s "$work/pids" ]; then
    # shellcheck disable=SC2046
    kill $(cat "$work/pids") 2>/dev/null || true
  fi
  spawner=""
  : >"$work/pids"
  for top in "${tops[@]}"; do
    for _ in $(seq 100); do
      find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$top" ] || break
      sleep 0.05
    done
    [ -d "$top" ] && echo "could not remove $top" >&2
  done
  tops=()
}
trap 'cleanup; rm -rf "$work"' EXIT

pod=pod73dc8baf-43a0-413e-aac2-5eb0868f6c1a
cid=$(printf '%064x' "$$")
shape="herakles-bench-$$.slice/kubepods/burstable/$pod/$cid"

# The leaf directories to put the sleepers in: v2 at the top of its
# hierarchy, v1 below this script's own cgroup.
leaves() {
  [ "$(id -u)" = 0 ] || return 0
  local root path ctrls
  while IFS=: read -r _ ctrls path; do
    case "$ctrls" in
      "")
        root=/sys/fs/cgroup/unified
        [ -f /sys/fs/cgroup/cgroup.controllers ] && root=/sys/fs/cgroup
        path=""
        ;;
      memory | cpu | cpuacct | blkio | pids | cpu,cpuacct) root=/sys/fs/cgroup/$ctrls ;;
      *) continue ;;
    esac
    [ -f "$root/cgroup.procs" ] || continue
    echo "$root${path%/}"
  done </proc/self/cgroup
}

# The process collectors only, and with attribution its two collectors.
only_process=()
for c in $("$bin" --no-config collectors | awk 'NR > 1 { print $1 }'); do
  case $c in process | process_groups | process_top | process_attribution | cgroup) ;;
  *) only_process+=("--no-collector.$c") ;;
  esac
done
port=19216
url="http://127.0.0.1:$port/metrics"

# Run the exporter with "$@" until it answers, time it, stop it.
measure() {
  local label=$1
  shift
  env "$@" "$bin" --no-config -p $port --bind 127.0.0.1 --disable-ebpf "${only_process[@]}" \
    "${flags[@]}" >"$work/log" 2>&1 &
  exporter=$!
  for _ in $(seq 200); do
    curl -sf -o /dev/null "$url" && break
    sleep 0.05
  done
  echo "--- $label"
  python3 scripts/bench_scrape.py "$url" "$scrapes" "$exporter"
  kill "$exporter"
  wait "$exporter" 2>/dev/null || true
  exporter=""
}

# Series of a whole default exporter, by kind.
series() {
  "$bin" --no-config -p $port --bind 127.0.0.1 >"$work/log" 2>&1 &
  exporter=$!
  for _ in $(seq 200); do
    curl -sf -o /dev/null "$url" && break
    sleep 0.05
  done
  curl -sf "$url" >/dev/null
  curl -sf "$url" | grep -v '^#' >"$work/series"
  kill "$exporter"
  wait "$exporter" 2>/dev/null || true
  exporter=""
  echo "--- series with the defaults (every collector, eBPF as configured)"
  awk '
    /^herakles_(mem|cpu)_process_|^herakles_(net|io)_process_/ { k = "per-process" }
    /^herakles_group_/ { k = "per group" }
    /^herakles_(container|pod|unit|user)_/ && !/_cgroup_/ { k = "per container/pod/unit/user (sums)" }
    /^herakles_(container|pod|unit)_cgroup_/ { k = "cgroup accounting" }
    /^herakles_(top|mem_top|cpu_top)_/ { k = "top-N" }
    { n[k ? k : "other"]++; k = ""; total++ }
    END { for (k in n) printf "  %-40s %6d\n", k, n[k]; printf "  %-40s %6d\n", "total", total }
  ' "$work/series" | sort -k1,1
}

for n in "${counts[@]}"; do
  dirs=()
  for parent in $(leaves); do
    mkdir -p "$parent/$shape"
    tops+=("$parent/herakles-bench-$$.slice")
    dirs+=("$parent/$shape")
  done
  : >"$work/pids"
  (
    for d in "${dirs[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
    for _ in $(seq "$n"); do
      sleep 3600 &
      echo $! >>"$work/pids"
    done
    wait
  ) &
  spawner=$!
  for _ in $(seq 600); do
    [ "$(wc -l <"$work/pids")" -ge "$n" ] && break
    sleep 0.1
  done
  echo "== $n extra processes$([ ${#dirs[@]} -gt 0 ] && echo " in /$shape")"
  cargo bench --bench attribution --quiet -- "$rounds"
  echo "== the exporter, $scrapes scrapes each ($(ls -d /proc/[0-9]* | wc -l) processes)"
  flags=(--no-attribution --no-collector.process_attribution --no-collector.cgroup)
  measure "attribution off"
  flags=()
  measure "attribution on, defaults"
  measure "attribution on, every process reread every scrape" HERAKLES_ATTRIBUTION_RECHECK_SCRAPES=1
  series
  cleanup
done
