#!/usr/bin/env bash
# Cost of the eBPF process I/O programs (docs/ebpf.md) on the traffic they
# watch. Runs two loopback workloads alternately without and with the
# exporter's programs attached, ROUNDS times each, and prints the median:
#   - tcp: one process streams 128 KiB writes to another for SECONDS
#     (throughput in MiB/s; each write and read is one event);
#   - udp: one process sends 64-byte datagrams to another as fast as it can
#     (sends per second; the socket worst case, one event per send and per
#     receive);
#   - sys: a syscall-heavy process that touches no socket and no block
#     device (64-byte pwrite/pread on a page-cached file, getppid), the
#     typical non-network host load: what attaching costs everyone else.
# With the programs on it also prints the events per second they handled
# (herakles_ebpf_events_processed_total over the run) and their kernel CPU
# time (herakles_ebpf_cpu_seconds_total), then the exporter's own CPU while
# idle (no scrapes) over IDLE seconds, from /proc/<pid>/stat.
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

start_exporter() {
  "$bin" --no-config -p 0 --bind 127.0.0.1 --log-level info \
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
for w in tcp udp sys; do
  : >"$work/$w.off"
  : >"$work/$w.on"
  : >"$work/$w.eps"
  : >"$work/$w.cpu"
  for _ in $(seq "$rounds"); do
    "$work/load" "$w" "$secs" | awk '{ print $1 }' >>"$work/$w.off"
    start_exporter >/dev/null
    e0=$(metric herakles_ebpf_events_processed_total)
    c0=$(metric herakles_ebpf_cpu_seconds_total)
    t0=$(date +%s.%N)
    "$work/load" "$w" "$secs" | awk '{ print $1 }' >>"$work/$w.on"
    t1=$(date +%s.%N)
    e1=$(metric herakles_ebpf_events_processed_total)
    c1=$(metric herakles_ebpf_cpu_seconds_total)
    calc "($e1 - $e0) / ($t1 - $t0)" >>"$work/$w.eps"
    if [ "$e1" = "$e0" ]; then echo 0 >>"$work/$w.cpu"; else
      calc "($c1 - $c0) / ($e1 - $e0) * 1000000000" >>"$work/$w.cpu"; fi
    stop_exporter
  done
  case $w in tcp) unit="MiB/s" ;; udp) unit="sends/s" ;; *) unit="calls/s" ;; esac
  off=$(median <"$work/$w.off")
  on=$(median <"$work/$w.on")
  eps=$(median <"$work/$w.eps")
  ns=$(median <"$work/$w.cpu")
  loss=$(calc "(1 - $on / $off) * 100")
  printf '%-4s without: %10.1f %s   with: %10.1f %s   loss: %5.2f%%   events handled: %9.0f/s   %5.0f ns BPF CPU per event\n' \
    "$w" "$off" "$unit" "$on" "$unit" "$loss" "$eps" "$ns"
done

start_exporter >/dev/null
pid=$exporter
sleep 2
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
b0=$(metric herakles_ebpf_cpu_seconds_total)
k0=$(ticks)
sleep "$idle"
k1=$(ticks)
b1=$(metric herakles_ebpf_cpu_seconds_total)
hz=$(getconf CLK_TCK)
printf 'idle exporter with eBPF on, %ss without scrapes: %.3f%% of one CPU (user+system), BPF programs %.4f%% (host background traffic)\n' \
  "$idle" "$(calc "($k1 - $k0) / $hz / $idle * 100")" "$(calc "($b1 - $b0) / $idle * 100")"
stop_exporter
