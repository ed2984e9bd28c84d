#!/usr/bin/env bash
# Per-collector time per scrape, and our tcp collector next to
# node_exporter's tcpstat with 20,000 loopback sockets open.
#   scripts/bench_collectors.sh [N] [CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --quiet
exec python3 scripts/bench_collectors.py target/release/herakles-node-exporter "${1:-200}" "${2:-20000}"
