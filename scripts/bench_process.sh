#!/usr/bin/env bash
# Process-collector benchmark. For each count (default 1000 and 5000) it
# spawns that many extra `sleep` processes, then measures, one after the
# other on the same processes:
#   - herakles with only the process collectors, default config (smaps_mode
#     top) and smaps_mode all with no smaps cache (every scrape reads every
#     smaps_rollup): scrape latency, CPU per scrape, RSS;
#   - Debian's prometheus-process-exporter with -gather-smaps and a config
#     matching every process;
#   - the raw cost of cat'ing the same /proc files.
# Everything spawned is killed on exit.
#
#   scripts/bench_process.sh [COUNT...]
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1000 5000)
scrapes=${SCRAPES:-20}

if ! command -v prometheus-process-exporter >/dev/null 2>&1; then
  # Guarded like scripts/setup.sh: we want the binary, not a running service.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus-process-exporter >/dev/null
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

cargo build --release --quiet
bin=target/release/herakles-node-exporter
work=$(mktemp -d)
sleepers=()
exporter=""
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null || true
  [ ${#sleepers[@]} -gt 0 ] && kill "${sleepers[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Only the process collectors: the figures are about them.
only_process=()
for c in $("$bin" --no-config collectors | awk 'NR > 1 { print $1 }'); do
  case $c in process*) ;; *) only_process+=("--no-collector.$c") ;; esac
done
cat >"$work/all.yaml" <<YAML
smaps_mode: all
smaps_budget_ms: 60000
smaps_max_age_secs: 0
YAML
cat >"$work/pe.yaml" <<YAML
process_names:
  - name: "{{.Comm}}"
    cmdline:
      - '.*'
YAML

# Start an exporter in the background and wait until it answers.
start() {
  local url=$1
  shift
  "$@" >"$work/log" 2>&1 &
  exporter=$!
  for _ in $(seq 200); do
    curl -sf -o /dev/null "$url" && return 0
    sleep 0.05
  done
  echo "exporter did not start: $*" >&2
  cat "$work/log" >&2
  exit 1
}

stop() {
  kill "$exporter" 2>/dev/null || true
  wait "$exporter" 2>/dev/null || true
  exporter=""
}

bench() {
  local label=$1 url=$2
  shift 2
  start "$url" "$@"
  echo "--- $label"
  python3 scripts/bench_scrape.py "$url" "$scrapes" "$exporter" | grep -v '^binary'
  stop
}

port=19215
for n in "${counts[@]}"; do
  while [ ${#sleepers[@]} -lt "$n" ]; do
    sleep 3600 &
    sleepers+=($!)
  done
  total=$(ls -d /proc/[0-9]* | wc -l)
  echo "=== $n extra sleep processes ($total processes in all), $scrapes scrapes each"
  bench "herakles, default (smaps_mode top)" "http://127.0.0.1:$port/metrics" \
    "$bin" --no-config -p $port --bind 127.0.0.1 "${only_process[@]}"
  bench "herakles, smaps_mode all, uncached" "http://127.0.0.1:$port/metrics" \
    "$bin" -c "$work/all.yaml" -p $port --bind 127.0.0.1 "${only_process[@]}"
  bench "prometheus-process-exporter -gather-smaps" "http://127.0.0.1:9256/metrics" \
    prometheus-process-exporter -web.listen-address 127.0.0.1:9256 \
    -config.path "$work/pe.yaml" -gather-smaps
  echo "--- raw cat of the same files (one pass)"
  TIMEFORMAT="stat+cmdline+io: %R s wall, %U s user, %S s sys"
  time (printf '%s\n' /proc/[0-9]*/stat /proc/[0-9]*/cmdline /proc/[0-9]*/io |
    xargs cat >/dev/null 2>&1 || true)
  TIMEFORMAT="smaps_rollup:      %R s wall, %U s user, %S s sys"
  time (printf '%s\n' /proc/[0-9]*/smaps_rollup | xargs cat >/dev/null 2>&1 || true)
done
