#!/usr/bin/env bash
# Soak: an hour's worth of scrapes (3,600) back to back under process churn,
# eBPF and netprobe on, printing RSS, descriptors, threads and eBPF map
# entries as it goes. Needs root (eBPF, netprobe) and bpftool for the map
# column. Extra arguments go to scripts/soak.py (--scrapes, --every, --churn).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/soak.py --bin target/release/herakles-node-exporter "$@"
