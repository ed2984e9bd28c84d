#!/usr/bin/env python3
"""Soak the exporter: many scrapes under process churn, with every eBPF part
and netprobe on, printing what should stay flat (RSS, file descriptors,
threads, eBPF map entries) as it goes.

A leak shows as a column that keeps growing; a bound that holds shows as a
column that levels off. This is a measurement, not a test: it prints
figures and asserts nothing.

    scripts/soak.sh                       # 3,600 scrapes: an hour at 1/s
    scripts/soak.py --bin BIN --scrapes 600 --every 100 --churn 200

Scrapes run back to back (a one-hour scrape history in a few minutes),
each on a new connection, so TCP tracking sees a connection open and close
per scrape. Churn starts short-lived bash processes that each send one UDP
datagram, so the per-process eBPF maps see entries come and go.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CONFIG = """\
log_level: info
bind: 127.0.0.1
port: 0
collectors:
  netprobe:
    enabled: true
    interfaces: [lo]
    attach: tcx
    collection_interval: 1.0
"""


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def exporter_maps(pid):
    """(id, type) of every eBPF map the exporter holds a descriptor of,
    from /proc/PID/fdinfo: bpftool's own pid column needs a bpftool built
    with skeleton support, fdinfo works everywhere."""
    maps = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "map_id" in info:
            maps.add((int(info["map_id"]), int(info["map_type"])))
    return maps


# Map types whose entries are preallocated slots, not tracked objects:
# counting their "entries" would say nothing about growth.
SLOT_TYPES = {2, 6, 27}  # array, percpu_array, ringbuf


def map_entries(pid):
    """Entries per eBPF map the exporter holds, by map name (bpftool)."""
    if not shutil.which("bpftool"):
        return {}
    entries = {}
    for map_id, map_type in sorted(exporter_maps(pid)):
        if map_type in SLOT_TYPES:
            continue
        show = subprocess.run(
            ["bpftool", "-j", "map", "show", "id", str(map_id)], capture_output=True, text=True
        )
        dump = subprocess.run(
            ["bpftool", "-j", "map", "dump", "id", str(map_id)], capture_output=True, text=True
        )
        try:
            name = json.loads(show.stdout).get("name", str(map_id))
            n = len(json.loads(dump.stdout or "[]"))
        except json.JSONDecodeError:
            continue
        entries[name] = entries.get(name, 0) + n
    return entries


class Churn(threading.Thread):
    """Start `rate` short-lived processes a second, each sending one UDP
    datagram to a port nobody listens on."""

    def __init__(self, rate):
        super().__init__(daemon=True)
        self.rate = rate
        self.started = 0
        self.stop = threading.Event()

    def run(self):
        if self.rate <= 0:
            return
        gap = 1.0 / self.rate
        running = []
        next_at = time.monotonic()
        while not self.stop.is_set():
            running = [p for p in running if p.poll() is None]
            if len(running) < 64:
                running.append(
                    subprocess.Popen(
                        ["bash", "-c", "echo x >/dev/udp/127.0.0.1/9"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                self.started += 1
            next_at += gap
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        for p in running:
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/herakles-node-exporter")
    ap.add_argument("--scrapes", type=int, default=3600)
    ap.add_argument("--every", type=int, default=300, help="print a row every N scrapes")
    ap.add_argument("--churn", type=int, default=100, help="short-lived processes per second")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="herakles-soak-")
    config = os.path.join(tmp, "soak.yaml")
    with open(config, "w") as f:
        f.write(CONFIG)
    proc = subprocess.Popen(
        [args.bin, "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    addr = None
    for line in proc.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            addr = m.group(1)
            break
    if addr is None:
        sys.exit(f"exporter exited before listening (status {proc.wait()})")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    url = f"http://{addr}/metrics"
    pid = proc.pid

    churn = Churn(args.churn)
    churn.start()
    rows = []
    try:
        header = (
            f"{'scrapes':>7} {'sim_min':>7} {'wall_s':>7} {'rss_kib':>8} {'fds':>4} "
            f"{'thr':>4} {'p50_ms':>7} {'p99_ms':>7} {'lines':>6} {'churned':>8}  map entries"
        )
        print(header, flush=True)
        started = time.monotonic()
        window = []
        lines = 0
        for i in range(1, args.scrapes + 1):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as r:
                body = r.read()
            window.append(time.perf_counter() - t)
            lines = body.count(b"\n")
            if i % args.every == 0 or i == args.scrapes:
                window.sort()
                row = {
                    "scrapes": i,
                    "rss": status_field(pid, "VmRSS"),
                    "fds": fds(pid),
                    "threads": status_field(pid, "Threads"),
                    "p50": statistics.median(window) * 1000,
                    "p99": window[min(len(window) - 1, int(0.99 * len(window)))] * 1000,
                    "maps": map_entries(pid),
                }
                rows.append(row)
                maps = " ".join(f"{k}={v}" for k, v in sorted(row["maps"].items()))
                print(
                    f"{i:>7} {i / 60:>7.1f} {time.monotonic() - started:>7.1f} "
                    f"{row['rss']:>8} {row['fds']:>4} {row['threads']:>4} "
                    f"{row['p50']:>7.2f} {row['p99']:>7.2f} {lines:>6} {churn.started:>8}  {maps}",
                    flush=True,
                )
                window = []
    finally:
        churn.stop.set()
        churn.join()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)

    first, last = rows[0], rows[-1]
    print()
    print(f"processes churned: {churn.started}; exporter exit status after SIGTERM: {code}")
    for key, label in (("rss", "RSS KiB"), ("fds", "fds"), ("threads", "threads")):
        peak = max(r[key] for r in rows)
        print(f"{label}: first row {first[key]}, last row {last[key]}, peak {peak}")
    names = sorted({n for r in rows for n in r["maps"]})
    for n in names:
        vals = [r["maps"].get(n, 0) for r in rows]
        print(f"map {n}: first {vals[0]}, last {vals[-1]}, peak {max(vals)}")


if __name__ == "__main__":
    main()
