#!/usr/bin/env bash
# Scrape benchmark: builds the release binary, starts it on a loopback port,
# scrapes it N times (default 1000), and prints latency percentiles, the
# exporter's RSS afterwards, its CPU time per scrape, and the binary size.
#
#   scripts/bench.sh [N] [extra exporter flags...]
#   BIN=/path/to/other/build scripts/bench.sh ...   (A/B: no build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
shift || true
bin=${BIN:-target/release/herakles-node-exporter}
[ -n "${BIN:-}" ] || cargo build --release --quiet
log=$(mktemp)
"$bin" --no-config -p 0 --bind 127.0.0.1 "$@" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
addr=$(grep -o 'listening on http://[^ ]*' "$log" | sed 's|listening on http://||')
python3 scripts/bench_scrape.py "http://$addr/metrics" "$n" "$pid"
echo "binary size: $(stat -c %s "$bin") bytes ($(numfmt --to=iec "$(stat -c %s "$bin")"))"
