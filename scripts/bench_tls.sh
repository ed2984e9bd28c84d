#!/usr/bin/env bash
# What HTTPS and basic auth cost a scrape: builds the release binary and
# prints latency, exporter CPU per scrape and RSS for HTTP, HTTPS and HTTPS
# with basic auth, over a kept-alive connection and a new one per scrape,
# N scrapes each (default 1000). See scripts/bench_tls.py.
#
#   scripts/bench_tls.sh [N]
#   BIN=/path/to/other/build scripts/bench_tls.sh ...   (no build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
bin=${BIN:-target/release/herakles-node-exporter}
[ -n "${BIN:-}" ] || cargo build --release --quiet
python3 scripts/bench_tls.py "$bin" "$n"
