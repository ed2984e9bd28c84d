#!/usr/bin/env bash
# Cost of the eBPF process I/O programs (docs/ebpf.md) on the work they
# watch. Runs three workloads ROUNDS times each in three states: without the
# exporter (off), with it running on defaults (on), and with cpu_stats on
# (stats: the kernel's host-wide BPF run-time statistics), and prints the
# medians:
#   - tcp: one process streams 128 KiB writes to another for SECONDS
#     (throughput in MiB/s; each write and read is one event);
#   - udp: one process sends 64-byte datagrams to another as fast as it can
#     (sends per second; the socket worst case, one event per send and per
#     receive);
#   - sys: a syscall-heavy process that touches no socket and no block
#     device (64-byte pwrite/pread on a page-cached file, getppid), the
#     typical non-network host load: what attaching costs everyone else.
# It also prints the events per second handled
# (herakles_ebpf_events_processed_total over the run), the programs' CPU per
# event from the stats run (herakles_ebpf_cpu_seconds_total), and the
# exporter's own CPU while idle (no scrapes) over IDLE seconds, from
# /proc/<pid>/stat.
#
# The workload is a small C program compiled here (a Python loop would hide
# the per-event cost behind its own). Needs root, BTF and cc or clang.
#
#   scripts/bench_ebpf.sh
#   ROUNDS=7 SECONDS_PER_RUN=5 IDLE=30 scripts/bench_ebpf.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
secs=${SECONDS_PER_RUN:-3}
idle=${IDLE:-30}
cc=$(command -v cc || command -v gcc || command -v clang)

cargo build --release --quiet
bin=target/release/herakles-node-exporter
work=$(mktemp -d)
exporter=""
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/load.c" <<'C'
/* load tcp|udp|sys SECONDS: prints "<units per second> <unit>" */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int syscalls(double secs) {
  char path[] = "/tmp/bench_ebpf_sys.XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  char small[64] = {0};
  unsigned long long calls = 0;
  double start = now(), end = start + secs;
  while (1) {
    for (int i = 0; i < 256; i++) {
      pwrite(fd, small, sizeof small, 0);
      pread(fd, small, sizeof small, 0);
      getppid();
      calls += 3;
    }
    if (now() >= end)
      break;
  }
  printf("%.0f syscalls/s\n", calls / (now() - start));
  return 0;
}

int main(int argc, char **argv) {
  double secs = atof(argv[2]);
  if (strcmp(argv[1], "sys") == 0)
    return syscalls(secs);
  int tcp = strcmp(argv[1], "tcp") == 0;
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int srv = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
  bind(srv, (struct sockaddr *)&a, sizeof a);
  getsockname(srv, (struct sockaddr *)&a, &len);
  if (tcp)
    listen(srv, 1);
  static char buf[128 * 1024];
  pid_t kid = fork();
  if (kid == 0) {
    int s = tcp ? accept(srv, NULL, NULL) : srv;
    while (recv(s, buf, sizeof buf, 0) > 0)
      ;
    _exit(0);
  }
  int s = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
  connect(s, (struct sockaddr *)&a, sizeof a);
  size_t chunk = tcp ? sizeof buf : 64;
  unsigned long long units = 0;
  double start = now(), end = start + secs;
  while (1) {
    for (int i = 0; i < 64; i++) {
      ssize_t n = send(s, buf, chunk, 0);
      if (n > 0)
        units += tcp ? (unsigned long long)n : 1;
    }
    if (now() >= end)
      break;
  }
  double spent = now() - start;
  close(s);
  kill(kid, SIGKILL);
  waitpid(kid, NULL, 0);
  if (tcp)
    printf("%.1f MiB/s\n", units / spent / 1048576.0);
  else
    printf("%.0f sends/s\n", units / spent);
  return 0;
}
C
"$cc" -O2 -o "$work/load" "$work/load.c"

metric() { # metric NAME: value from the running exporter
  curl -s "http://$addr/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
calc() { awk "BEGIN { print $1 }"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf 'collectors:\n  ebpf_io:\n    cpu_stats: true\n' >"$work/stats.yaml"

start_exporter() { # start_exporter [ARGS...]: defaults, or e.g. -c stats.yaml
  [ $# -gt 0 ] || set -- --no-config
  "$bin" "$@" -p 0 --bind 127.0.0.1 --log-level info \
    >/dev/null 2>"$work/exporter.log" &
  exporter=$!
  for _ in $(seq 100); do
    addr=$(grep -o 'listening on http://[^ ]*' "$work/exporter.log" | sed 's|.*http://||' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "exporter did not start"; cat "$work/exporter.log"; exit 1; }
  grep -q '"network"\|part="network"' "$work/exporter.log" && grep 'eBPF' "$work/exporter.log" | sed 's/^/  /' || true
}
stop_exporter() {
  kill "$exporter"
  wait "$exporter" 2>/dev/null || true
  exporter=""
}

echo "eBPF process I/O overhead: $rounds rounds of ${secs}s per workload and state (median)"
echo "  off: no exporter; on: exporter with defaults; stats: on + cpu_stats (BPF run-time statistics)"
for w in tcp udp sys; do
  : >"$work/$w.off"
  : >"$work/$w.on"
  : >"$work/$w.stats"
  : >"$work/$w.eps"
  : >"$work/$w.cpu"
  for _ in $(seq "$rounds"); do
    "$work/load" "$w" "$secs" | awk '{ print $1 }' >>"$work/$w.off"
    start_exporter >/dev/null
    e0=$(metric herakles_ebpf_events_processed_total)
    t0=$(date +%s.%N)
    "$work/load" "$w" "$secs" | awk '{ print $1 }' >>"$work/$w.on"
    t1=$(date +%s.%N)
    e1=$(metric herakles_ebpf_events_processed_total)
    calc "($e1 - $e0) / ($t1 - $t0)" >>"$work/$w.eps"
    stop_exporter
    start_exporter -c "$work/stats.yaml" >/dev/null
    e0=$(metric herakles_ebpf_events_processed_total)
    c0=$(metric herakles_ebpf_cpu_seconds_total)
    "$work/load" "$w" "$secs" | awk '{ print $1 }' >>"$work/$w.stats"
    e1=$(metric herakles_ebpf_events_processed_total)
    c1=$(metric herakles_ebpf_cpu_seconds_total)
    if [ "$e1" = "$e0" ]; then echo 0 >>"$work/$w.cpu"; else
      calc "($c1 - $c0) / ($e1 - $e0) * 1000000000" >>"$work/$w.cpu"; fi
    stop_exporter
  done
  case $w in tcp) unit="MiB/s" ;; udp) unit="sends/s" ;; *) unit="calls/s" ;; esac
  off=$(median <"$work/$w.off")
  on=$(median <"$work/$w.on")
  st=$(median <"$work/$w.stats")
  eps=$(median <"$work/$w.eps")
  ns=$(median <"$work/$w.cpu")
  printf '%-4s off: %10.1f  on: %10.1f (loss %5.2f%%)  stats: %10.1f (loss %5.2f%%) %s   events: %8.0f/s   %4.0f ns BPF CPU per event\n' \
    "$w" "$off" "$on" "$(calc "(1 - $on / $off) * 100")" "$st" "$(calc "(1 - $st / $off) * 100")" "$unit" "$eps" "$ns"
done

start_exporter >/dev/null
pid=$exporter
sleep 2
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
k0=$(ticks)
sleep "$idle"
k1=$(ticks)
hz=$(getconf CLK_TCK)
printf 'idle exporter with eBPF on, %ss without scrapes: %.3f%% of one CPU (user+system)\n' \
  "$idle" "$(calc "($k1 - $k0) / $hz / $idle * 100")"
stop_exporter
