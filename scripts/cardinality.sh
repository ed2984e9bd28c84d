#!/usr/bin/env bash
# Series one host sends Prometheus: the exporter with default settings and
# with every option on, at this machine's process count and with 1,000
# extra processes; and the samples per second that makes at a 15 s scrape
# interval.
#
#   scripts/cardinality.sh [EXPORTER_BINARY]   (default target/release/herakles-node-exporter)
#
# Runs in a network namespace of its own, so netprobe's TC filters (on its
# loopback) never touch the host. Needs root. Each setting is scraped ten
# times a second apart and the last count is shown: the smaps tier fills in
# PSS and USS over a few scrapes (smaps_budget_ms).
set -euo pipefail
cd "$(dirname "$0")/.."
# (Not HERAKLES_*: the exporter rejects variables that name no config key.)
if [ -z "${CARDINALITY_IN_NETNS:-}" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "cardinality: needs root" >&2; exit 1; }
  CARDINALITY_IN_NETNS=1 exec unshare --net "$0" "$@"
fi
ip link set lo up
bin=${1:-target/release/herakles-node-exporter}
[ -x "$bin" ] || { echo "cardinality: no exporter at $bin; cargo build --release" >&2; exit 1; }

work=$(mktemp -d /tmp/herakles-cardinality.XXXXXX)
exporter=""
sleepers=()
cleanup() {
  [ -n "$exporter" ] && kill -TERM "$exporter" 2>/dev/null && wait "$exporter" 2>/dev/null
  [ ${#sleepers[@]} -gt 0 ] && kill "${sleepers[@]}" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir "$work/textfile"
printf '# HELP cardinality_example An example textfile metric.\ncardinality_example 1\n' \
  >"$work/textfile/example.prom"
cat >"$work/all-on.yaml" <<EOF
smaps_mode: all
collectors:
  netprobe:
    enabled: true
  bpf_inventory:
    per_program: true
    per_map: true
  ebpf_io:
    cpu_stats: true
  textfile:
    directory: $work/textfile
EOF

# series SETTING ARGS...: start the exporter, scrape it ten times, print.
series() {
  local setting=$1 count=0 i
  shift
  "$bin" -p 19299 --bind 127.0.0.1 "$@" 2>"$work/exporter.log" &
  exporter=$!
  for i in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:19299/health && break; sleep 0.2; done
  for i in $(seq 10); do
    count=$(curl -sS http://127.0.0.1:19299/metrics | grep -vc "^#") || { cat "$work/exporter.log" >&2; exit 1; }
    sleep 1
  done
  kill -TERM "$exporter"
  wait "$exporter" || true
  exporter=""
  printf '%-10s %6d processes  %6d series  %7.1f samples/s at 15 s\n' \
    "$setting" "$(ls -d /proc/[0-9]* | wc -l)" "$count" "$(awk "BEGIN { print $count / 15 }")"
}

series default --no-config
series all-on -c "$work/all-on.yaml"
for i in $(seq 1000); do
  sleep 3600 &
  sleepers+=($!)
done
series default --no-config
series all-on -c "$work/all-on.yaml"
