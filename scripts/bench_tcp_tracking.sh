#!/usr/bin/env bash
# tcp collector time per scrape, netlink dump vs eBPF state tracking, with
# CONNS loopback connections in a private network namespace.
#   scripts/bench_tcp_tracking.sh [SCRAPES] [CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec unshare -n sh -c 'ip link set lo up && exec python3 scripts/bench_tcp_tracking.py \
    target/release/herakles-node-exporter "$0" "$1"' "${1:-50}" "${2:-10000}"
