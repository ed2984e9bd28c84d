"""Measure the exporter's resource bounds; prints figures, asserts nothing.

Usage: bench_limits.py BINARY cache|hung|fds

cache  RSS before and after 10,000 distinct collect[] selections with
       cache_ttl 60 (every 1,000 selections, then after the entries expire).
hung   scrape latency with two collectors stuck for good (their /proc files
       are FIFOs nobody writes) at parallelism 2 and collector_timeout 2.
fds    scrapes answered under `prlimit --nofile=256:256` (and 256:4096)
       while 300 idle connections are open, and when the exporter closed them.
"""
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from bench_scrape import rss_kib


class Exporter:
    """The exporter on a loopback port; stopped with SIGTERM."""

    def __init__(self, binary, args, wrapper=()):
        self.log = tempfile.TemporaryFile()
        cmd = [*wrapper, binary, "--no-config", "-p", "0", "--bind", "127.0.0.1", *args]
        self.proc = subprocess.Popen(cmd, stderr=self.log)
        for _ in range(200):
            self.log.seek(0)
            m = re.search(rb"listening on http://([0-9.]+):(\d+)", self.log.read())
            if m:
                self.host, self.port = m.group(1).decode(), int(m.group(2))
                return
            time.sleep(0.05)
        raise SystemExit("exporter did not start")

    def get(self, path, timeout=30):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body.decode()

    def value(self, text, name, **labels):
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(f"{name}{{{want}}} ") or (not want and line.startswith(f"{name} ")):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def cache(binary):
    exp = Exporter(binary, ["--cache-ttl", "60"])
    _, text = exp.get("/metrics")
    names = re.findall(r'herakles_scrape_collector_success\{collector="([^"]+)"\}', text)
    masks = sorted(range(1, 1 << len(names)), key=lambda m: bin(m).count("1"))[:10_200]
    masks.sort(key=lambda m: (m * 2654435761) % (1 << 32))
    paths = ["/metrics?" + "&".join(f"collect[]={n}" for i, n in enumerate(names) if m >> i & 1)
             for m in masks]
    conn = http.client.HTTPConnection(exp.host, exp.port, timeout=30)

    def scrape(batch):
        for p in batch:
            conn.request("GET", p)
            conn.getresponse().read()

    print(f"{len(names)} collectors; RSS at start {rss_kib(exp.proc.pid)} KiB")
    scrape(paths[:200])
    print(f"RSS after 200 selections (cache full): {rss_kib(exp.proc.pid)} KiB")
    t = time.perf_counter()
    for k in range(10):
        scrape(paths[200 + k * 1000:200 + (k + 1) * 1000])
        print(f"RSS after {(k + 1) * 1000:>6} more selections: {rss_kib(exp.proc.pid)} KiB")
    took = time.perf_counter() - t
    _, text = exp.get("/metrics?collect[]=loadavg")
    print(f"10,000 selections in {took:.1f}s; cache entries "
          f"{exp.value(text, 'herakles_scrape_cache_entries'):.0f}, evicted at the bound "
          f"{exp.value(text, 'herakles_scrape_cache_evictions_total', reason='limit'):.0f}")
    exp.stop()


def hung(binary):
    # A procfs of snapshots, except two files that block whoever opens them.
    root = tempfile.mkdtemp()
    proc = os.path.join(root, "proc")
    os.makedirs(os.path.join(proc, "net"))
    for f in ["stat", "diskstats", "uptime", "version", "net/dev", "sys/kernel/osrelease"]:
        if os.path.exists(f"/proc/{f}"):
            os.makedirs(os.path.dirname(os.path.join(proc, f)), exist_ok=True)
            with open(f"/proc/{f}") as src, open(os.path.join(proc, f), "w") as dst:
                dst.write(src.read())
    os.mkfifo(os.path.join(proc, "meminfo"))
    os.mkfifo(os.path.join(proc, "loadavg"))
    exp = Exporter(binary, ["--path.procfs", proc, "--parallelism", "2",
                            "--collector-timeout", "2", "--disable-ebpf"])
    try:
        print("two collectors (memory, loadavg) stuck for good, parallelism 2, timeout 2 s; "
              "filesystem and tcp fail at once: the snapshot has no files for them")
        for i in range(1, 11):
            t = time.perf_counter()
            status, text = exp.get("/metrics")
            took = time.perf_counter() - t
            ok = re.findall(r'herakles_scrape_collector_success\{collector="([^"]+)"\} 1', text)
            failed = re.findall(r'herakles_scrape_collector_success\{collector="([^"]+)"\} 0', text)
            print(f"scrape {i:>2}: {status} in {took * 1000:7.1f} ms; "
                  f"{len(ok)} collectors succeeded, failed: {' '.join(failed)}")
    finally:
        exp.proc.kill()
        exp.proc.wait()
        shutil.rmtree(root)


def fds(binary):
    for hard in (256, 4096):
        exp = Exporter(binary, [], wrapper=["prlimit", f"--nofile=256:{hard}", "--"])
        idle = [socket.create_connection((exp.host, exp.port)) for _ in range(300)]
        try:
            fds_run(exp, hard, idle)
        finally:
            for s in idle:
                s.close()
            exp.proc.kill()
            exp.proc.wait()


def fds_run(exp, hard, idle):
    opened = time.monotonic()
    answered, latencies = 0, []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            status, _ = exp.get("/metrics", timeout=10)
            if status == 200:
                answered += 1
                latencies.append(time.perf_counter() - t)
        except OSError:
            pass
    limits = open(f"/proc/{exp.proc.pid}/limits").read()
    soft = re.search(r"Max open files\s+(\d+)", limits).group(1)
    report = f"--nofile=256:{hard} (soft limit now {soft}), 300 idle connections: " \
             f"{answered} scrapes answered 200 in 8 s"
    if latencies:
        latencies.sort()
        report += f", median {latencies[len(latencies) // 2] * 1000:.1f} ms, " \
                  f"max {latencies[-1] * 1000:.1f} ms"
    still_open = 0
    for s in idle:
        s.settimeout(max(0.001, opened + 30 - time.monotonic()))
        try:
            if s.recv(1):
                still_open += 1
        except socket.timeout:
            still_open += 1
        except OSError:
            pass
    if still_open:
        report += f"; {still_open} idle connections still open after 30 s"
    else:
        report += f"; all idle connections closed after {time.monotonic() - opened:.1f} s"
    try:
        _, text = exp.get("/metrics", timeout=10)
        closed = {r: exp.value(text, "herakles_http_connections_closed_total", reason=r)
                  for r in ("header_timeout", "idle_timeout", "limit")}
        bound = exp.value(text, "herakles_http_connections_limit")
        report += f"; connection bound {bound}, closed by reason {closed}"
    except OSError as e:
        report += f"; final scrape failed: {e}"
    print(report)


if __name__ == "__main__":
    {"cache": cache, "hung": hung, "fds": fds}[sys.argv[2]](sys.argv[1])
