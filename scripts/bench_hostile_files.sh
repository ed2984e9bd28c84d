#!/usr/bin/env bash
# What misbehaving /proc files cost the exporter, against fixture trees
# built here (docs/operators.md, "Limits and failure modes"):
#   - a process whose cmdline read blocks (a FIFO nobody writes, as a
#     process stuck holding its mmap lock): the time of consecutive scrapes
#     and whether the process collectors succeed;
#   - a sparse file (SPARSE_GIB, default 3 GiB) as one process's cmdline
#     and as /proc/meminfo: the exporter's peak RSS after a scrape.
# No /dev/zero links here: an exporter without read caps would read one
# until it runs out of memory.
#
#   scripts/bench_hostile_files.sh [BINARY]     (default: a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/herakles-node-exporter
fi
sparse_gib=${SPARSE_GIB:-3}
timeout=4
work=$(mktemp -d)
exporter=""
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

process() { # root pid comm
  local d=$1/proc/$2
  mkdir -p "$d"
  printf '%s (%s) S 1 %s %s 0 -1 4194560 0 0 0 0 30 20 0 0 20 0 1 0 %s 1000000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n' \
    "$2" "$3" "$2" "$2" "$((1000 + $2))" >"$d/stat"
  printf '%s\0--flag\0' "$3" >"$d/cmdline"
  ln -s "/usr/bin/$3" "$d/exe"
  printf 'rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 0\ncancelled_write_bytes: 0\n' >"$d/io"
  printf 'Rss: 400 kB\nPss: 300 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 100 kB\nSwap: 0 kB\n' >"$d/smaps_rollup"
}

# Only these collectors; every other one is switched off.
only() {
  local keep=" $* " c
  for c in $("$bin" --no-config collectors | awk 'NR > 1 { print $1 }'); do
    case $keep in *" $c "*) ;; *) printf -- '--no-collector.%s ' "$c" ;; esac
  done
}

start() {
  "$bin" --no-config -p 0 --bind 127.0.0.1 --disable-ebpf "$@" 2>"$work/log" &
  exporter=$!
  for _ in $(seq 200); do
    port=$(grep -o 'listening on http://[0-9.:]*' "$work/log" | sed 's/.*://' || true)
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "exporter did not start" >&2
  cat "$work/log" >&2
  exit 1
}

# SIGTERM, then SIGKILL after 10 s: a build without read deadlines may
# never finish its blocked scan.
stop() {
  kill "$exporter" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$exporter" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$exporter" 2>/dev/null || true
  wait "$exporter" 2>/dev/null || true
  exporter=""
}

success() { # collector, from the last scrape
  grep "^herakles_scrape_collector_success{collector=\"$1\"}" "$work/scrape" | awk '{ print $2 }'
}

echo "binary: $bin"

# 1. A cmdline read that blocks.
root=$work/stuck
for p in 100:postgres 101:nginx 102:sshd 103:redis-server 104:cron; do
  process "$root" "${p%%:*}" "${p#*:}"
done
rm "$root/proc/103/cmdline"
mkfifo "$root/proc/103/cmdline"
# shellcheck disable=SC2046
start --path.procfs "$root/proc" --path.sysfs tests/fixtures/thermal/sys \
  --collector-timeout "$timeout" $(only process process_groups process_top thermal)
echo "--- a blocked cmdline (collector_timeout ${timeout}s)"
for i in 1 2 3 4 5; do
  t=$(curl -s -o "$work/scrape" -w '%{time_total}' "http://127.0.0.1:$port/metrics")
  pids=$(grep -c '^herakles_mem_process_rss_bytes{' "$work/scrape" || true)
  echo "scrape $i: ${t}s, process success $(success process), thermal success $(success thermal), $pids processes with series"
done
stop

# 2. Sparse files.
root=$work/sparse
for p in 100 101 102; do process "$root" "$p" postgres; done
truncate -s "${sparse_gib}G" "$root/proc/101/cmdline"
truncate -s "${sparse_gib}G" "$root/proc/meminfo"
printf '0.25 0.50 1.00 2/300 4000\n' >"$root/proc/loadavg"
# shellcheck disable=SC2046
start --path.procfs "$root/proc" $(only process memory loadavg)
before=$(awk '/^VmHWM/ { print $2 }' "/proc/$exporter/status")
curl -s -o "$work/scrape" "http://127.0.0.1:$port/metrics"
after=$(awk '/^VmHWM/ { print $2 }' "/proc/$exporter/status")
echo "--- ${sparse_gib} GiB sparse cmdline and meminfo"
echo "peak RSS: $((before / 1024)) MiB before the scrape, $((after / 1024)) MiB after"
echo "success: process $(success process), memory $(success memory), loadavg $(success loadavg)"
grep '^herakles_process_read_errors_total{file="cmdline"}' "$work/scrape" || true
stop
