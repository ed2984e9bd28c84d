#!/usr/bin/env bash
# Attribution benchmark: what reading /proc/<pid>/cgroup (and status, the
# fd count, limits) for every process would add to a scan of the process
# table. For each count (default 1000 and 5000) it starts that many `sleep`
# processes in a container-shaped cgroup (a CRI container of a burstable
# pod, in v2 and in the v1 memory, cpu, cpuacct, blkio and pids
# hierarchies, so their /proc/<pid>/cgroup has real path lengths), then runs
# benches/attribution.rs over the whole of /proc. Without root the sleepers
# stay in the script's own cgroups. Everything started and created is
# removed on exit. Run under the suite lock:
#
#   flock /work/suite.lock scripts/bench_attribution.sh [COUNT...]
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1000 5000)
rounds=${ROUNDS:-7}

cargo bench --bench attribution --no-run --quiet

work=$(mktemp -d)
spawner=""
tops=()
cleanup() {
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
  cleanup
done
