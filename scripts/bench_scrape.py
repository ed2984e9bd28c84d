"""Scrape an exporter N times and print latency percentiles, RSS and CPU.

Usage: bench_scrape.py URL N PID
"""
import os
import statistics
import sys
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    url, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Warm up: the first scrape computes first-interval rates and caches.
    for _ in range(5):
        urllib.request.urlopen(url).read()
    rss_before = rss_kib(pid)
    cpu_before = cpu_seconds(pid)
    latencies = []
    size = 0
    for _ in range(n):
        t = time.perf_counter()
        body = urllib.request.urlopen(url).read()
        latencies.append(time.perf_counter() - t)
        size = len(body)
    cpu = cpu_seconds(pid) - cpu_before
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"scrapes: {n}, body: {size} bytes, {len(body.splitlines())} lines")
    print(f"latency ms: median {statistics.median(latencies) * 1000:.3f}  p90 {p(0.90):.3f}  "
          f"p99 {p(0.99):.3f}  max {latencies[-1] * 1000:.3f}")
    print(f"exporter CPU per scrape: {cpu / n * 1000:.3f} ms")
    print(f"exporter RSS: {rss_before} KiB after warm-up, {rss_kib(pid)} KiB after {n} scrapes")


if __name__ == "__main__":
    main()
