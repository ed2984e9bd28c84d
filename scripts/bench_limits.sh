#!/usr/bin/env bash
# Resource bounds under attack, measured on the release binary (prints
# figures, asserts nothing): RSS across 10,000 distinct scrape selections
# with cache_ttl, scrape latency with two collectors stuck for good at
# parallelism 2, and scrapes answered under a 256 file-descriptor limit
# while 300 idle connections are open. Run it under the suite lock.
#
#   scripts/bench_limits.sh [cache|hung|fds]...   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/herakles-node-exporter
for what in "${@:-cache hung fds}"; do
  for w in $what; do
    echo "== $w"
    python3 scripts/bench_limits.py "$bin" "$w"
  done
done
