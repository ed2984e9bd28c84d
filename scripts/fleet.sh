#!/usr/bin/env bash
# A fleet on one machine: N exporters, each in its own network namespace
# with its own address (a host each, as Prometheus sees it), and one
# Prometheus in the root namespace that finds them through file_sd and
# evaluates monitoring/rules/*.yml. Prints what the fleet costs.
#
#   scripts/fleet.sh [-n N] [-i INTERVAL] [-d SECONDS | --hold] [--bin PATH] [-- EXPORTER_ARGS...]
#
#   -n N          hosts (default 3)
#   -i INTERVAL   scrape and rule evaluation interval (default 15s)
#   -d SECONDS    how long to run once every host is up (default 60)
#   --hold        instead of -d: run until standard input closes (tests use
#                 this to query Prometheus meanwhile)
#   --bin PATH    exporter binary (default target/release/herakles-node-exporter)
#   EXPORTER_ARGS replace the default exporter arguments, --disable-ebpf: the
#                 hosts share one kernel, so N copies of the eBPF programs
#                 would make every socket send and block request pay N times,
#                 which no real fleet does.
#
# Prints one "host ..." line per host, "ready prometheus=URL ..." once
# Prometheus scrapes every host, and "key: value" figures at the end.
# Needs root, iproute2, curl and Debian's prometheus. Everything it creates
# (namespaces, veth pairs, processes, the temporary directory) is removed on
# every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."

n=3 interval=15s duration=60 hold=0 bin=target/release/herakles-node-exporter
exporter_args=(--disable-ebpf)
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    -i) interval=$2; shift 2 ;;
    -d) duration=$2; shift 2 ;;
    --hold) hold=1; shift ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; exporter_args=("$@"); break ;;
    *) echo "fleet: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fleet: needs root (network namespaces)" >&2; exit 1; }
for tool in ip curl prometheus; do
  command -v "$tool" >/dev/null || { echo "fleet: $tool not found; run scripts/setup.sh" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "fleet: no exporter at $bin; cargo build --release" >&2; exit 1; }
[[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 9999 ] || { echo "fleet: -n must be 1..9999" >&2; exit 2; }

# Names carry our pid, so a second run never touches this one's.
tag=$$
work=$(mktemp -d /tmp/herakles-fleet.XXXXXX)
pids=()
namespaces=()
links=()

cleanup() {
  local pid ns
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Deleting one end of a veth pair deletes both at once; deleting the
  # namespace alone would leave the root end until the kernel frees the
  # namespace, some seconds later.
  for link in "${links[@]}"; do ip link del "$link" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

seconds() { # "15s", "1m", "2" -> seconds
  case "$1" in
    *ms) echo 1 ;;
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *) echo "$1" ;;
  esac
}
step=$(seconds "$interval")

# Host i gets the i-th /30 of 198.18.0.0/15, the range set aside for
# network benchmarks (RFC 2544), so it clashes with no real network: +1 in
# the root namespace, +2 in the host's.
addr() { local k=$(( $1 * 4 )); echo "198.$(( 18 + k / 65536 )).$(( k / 256 % 256 )).$(( k % 256 + $2 ))"; }

started=$(date +%s.%N)
targets=()
for i in $(seq "$n"); do
  ns="hfleet${tag}-$i" root="hf${tag}r$i" peer="hf${tag}n$i"
  ip netns add "$ns"
  namespaces+=("$ns")
  ip link add "$root" type veth peer name "$peer" netns "$ns"
  links+=("$root")
  ip addr add "$(addr "$i" 1)/30" dev "$root"
  ip link set "$root" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(addr "$i" 2)/30" dev "$peer"
  ip -n "$ns" link set "$peer" up
  ip netns exec "$ns" "$bin" --no-config --bind "$(addr "$i" 2)" -p 9215 "${exporter_args[@]}" \
    >"$work/exporter-$i.log" 2>&1 &
  pids+=($!)
  targets+=("\"$(addr "$i" 2):9215\"")
  echo "host $i ns=$ns addr=$(addr "$i" 2):9215 iface=$peer pid=$!"
done

{
  echo "["
  for i in $(seq "$n"); do
    sep=","; [ "$i" -eq "$n" ] && sep=""
    echo "  {\"targets\": [${targets[$((i - 1))]}], \"labels\": {\"host\": \"fleet-$i\"}}$sep"
  done
  echo "]"
} >"$work/targets.json"

port=0
for _ in $(seq 50); do
  p=$(( 20000 + RANDOM % 20000 ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ "$port" -ne 0 ] || { echo "fleet: no free port" >&2; exit 1; }
timeout=$step; [ "$timeout" -gt 10 ] && timeout=10
{
  echo "global:"
  echo "  scrape_interval: $interval"
  echo "  scrape_timeout: ${timeout}s"
  echo "  evaluation_interval: $interval"
  echo "rule_files:"
  for f in "$PWD"/monitoring/rules/*.yml; do echo "  - $f"; done
  echo "scrape_configs:"
  echo "  - job_name: herakles"
  echo "    file_sd_configs:"
  echo "      - files: [$work/targets.json]"
  echo "  - job_name: prometheus"
  echo "    static_configs:"
  echo "      - targets: [127.0.0.1:$port]"
} >"$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$port"

# The first value of an instant query's result, or empty.
query() {
  curl -s --max-time 10 --data-urlencode "query=$1" "$url/api/v1/query" |
    sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p'
}

deadline=$(( $(date +%s) + 60 + n ))
until [ "$(query 'count(up{job="herakles"} == 1)')" = "$n" ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "fleet: not every host is up after $(( 60 + n )) s; up: $(query 'count(up{job="herakles"} == 1)')" >&2
    tail -5 "$work/prometheus.log" "$work"/exporter-1.log >&2
    exit 1
  fi
  sleep 0.5
done
up_after=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }")
echo "ready prometheus=$url tag=$tag pid=${pids[$n]}"

# CPU seconds of processes, from /proc (utime + stime).
cpu() {
  local pid ticks=0
  for pid in "$@"; do
    ticks=$(( ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
  done
  echo "$ticks"
}
exporter_pids=("${pids[@]:0:$n}")
prometheus_pid=${pids[$n]}
exporters_cpu=$(cpu "${exporter_pids[@]}")
prometheus_cpu=$(cpu "$prometheus_pid")
running_since=$(date +%s)
if [ "$hold" = 1 ]; then
  while read -r _; do :; done
else
  sleep "$duration" &
  wait $!
fi
elapsed=$(( $(date +%s) - running_since ))
[ "$elapsed" -gt 0 ] || elapsed=1
window="${elapsed}s"
hz=$(getconf CLK_TCK)
cores() { awk "BEGIN { printf \"%.4f\", ($1 - $2) / $hz / $elapsed }"; }

figure() { printf '%-38s %s\n' "$1:" "${2:-none}"; }
figure hosts "$n"
figure "interval" "$interval"
figure "seconds until every host was up" "$up_after"
figure "hosts up now" "$(query 'count(up{job="herakles"} == 1)')"
figure "series per host (mean)" "$(query 'avg(scrape_samples_scraped{job="herakles"})')"
figure "series per host (max)" "$(query 'max(scrape_samples_scraped{job="herakles"})')"
figure "samples/s ingested, whole fleet" "$(query "sum(rate(prometheus_tsdb_head_samples_appended_total[$window]))")"
figure "head series" "$(query 'prometheus_tsdb_head_series')"
figure "failed scrapes" "$(query "sum(count_over_time(up{job=\"herakles\"}[$window])) - sum(sum_over_time(up{job=\"herakles\"}[$window]))")"
figure "scrape duration, mean s" "$(query "avg(avg_over_time(scrape_duration_seconds{job=\"herakles\"}[$window]))")"
figure "scrape duration, max s" "$(query "max(max_over_time(scrape_duration_seconds{job=\"herakles\"}[$window]))")"
figure "rule evaluation, max s" "$(query "max(max_over_time(prometheus_rule_group_last_duration_seconds[$window]))")"
figure "rule evaluations missed" "$(query 'sum(prometheus_rule_group_iterations_missed_total)')"
figure "hosts in herakles:fleet_hosts:count" "$(query 'sum(herakles:fleet_hosts:count)')"
figure "exporter RSS, mean bytes" "$(query 'avg(process_resident_memory_bytes{job="herakles"})')"
figure "exporters CPU, cores (all hosts)" "$(cores "$(cpu "${exporter_pids[@]}")" "$exporters_cpu")"
figure "prometheus RSS bytes" "$(query 'process_resident_memory_bytes{job="prometheus"}')"
figure "prometheus CPU, cores" "$(cores "$(cpu "$prometheus_pid")" "$prometheus_cpu")"
