"""Per-collector time per scrape, and the tcp collector under load.

Starts our release binary and Debian's prometheus-node-exporter (tcpstat
collector only) on loopback ports, then:

1. scrapes ours N times and prints the mean and p99 of
   herakles_scrape_collector_duration_seconds for every collector;
2. opens CONNS loopback TCP connections (CONNS/2 client/server pairs held
   open by this process) and, with those sockets alive, compares our tcp
   collector with node_exporter's tcpstat, both by their own duration
   metric and by request latency.

Usage: bench_collectors.py BINARY [N] [CONNS]
"""
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_up(url):
    for _ in range(200):
        try:
            urllib.request.urlopen(url).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def samples(text, name, label):
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            for part in labels[len(name) + 1:-1].split(","):
                k, v = part.split("=", 1)
                if k == label:
                    out[v.strip('"')] = float(value)
    return out


def scrape(url):
    t = time.perf_counter()
    body = urllib.request.urlopen(url).read().decode()
    return body, time.perf_counter() - t


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def serve(count):
    """Accept and hold `count` connections; the other half of the sockets
    lives in a second process because one process may not hold them all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print(listener.getsockname()[1], flush=True)
    held = [listener.accept()[0] for _ in range(count)]
    print("accepted", len(held), flush=True)
    sys.stdin.read()


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        raise SystemExit(f"need {want} open files, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main():
    if sys.argv[1] == "--serve":
        raise_nofile(int(sys.argv[2]) + 64)
        return serve(int(sys.argv[2]))
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    raise_nofile(conns // 2 + 256)

    ours_port, peer_port = free_port(), free_port()
    # netprobe is off by default; on here so its cost shows with the rest.
    ours = subprocess.Popen([binary, "--no-config", "-p", str(ours_port), "--bind", "127.0.0.1",
                             "--collector.netprobe"],
                            stderr=subprocess.DEVNULL)
    peer = subprocess.Popen(["/usr/bin/prometheus-node-exporter",
                             f"--web.listen-address=127.0.0.1:{peer_port}",
                             "--collector.disable-defaults", "--collector.tcpstat"],
                            stderr=subprocess.DEVNULL)
    ours_url = f"http://127.0.0.1:{ours_port}/metrics"
    peer_url = f"http://127.0.0.1:{peer_port}/metrics"
    try:
        wait_up(ours_url)
        wait_up(peer_url)
        for _ in range(3):
            scrape(ours_url)

        per = {}
        for _ in range(n):
            body, _ = scrape(ours_url)
            for c, v in samples(body, "herakles_scrape_collector_duration_seconds", "collector").items():
                per.setdefault(c, []).append(v)
        print(f"per-collector time per scrape over {n} scrapes (ms): mean / p99")
        for c in sorted(per):
            print(f"  {c:<12} {statistics.mean(per[c]) * 1000:8.3f} / {pct(per[c], 0.99) * 1000:8.3f}")

        server = subprocess.Popen([sys.executable, __file__, "--serve", str(conns // 2)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline())
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns // 2)]
        server.stdout.readline()
        print(f"\nwith {2 * len(held)} established loopback sockets held open:")
        ours_t, ours_c, peer_t, peer_c = [], [], [], []
        for _ in range(n):
            body, t = scrape(ours_url + "?collect[]=tcp")
            ours_t.append(t)
            ours_c.append(samples(body, "herakles_scrape_collector_duration_seconds", "collector")["tcp"])
            body, t = scrape(peer_url)
            peer_t.append(t)
            peer_c.append(samples(body, "node_scrape_collector_duration_seconds", "collector")["tcpstat"])
        est = [l for l in body.splitlines() if l.startswith('node_tcp_connection_states{state="established"}')]
        print(f"  node_exporter sees: {est[0] if est else 'n/a'}")
        row = lambda name, c, t: print(
            f"  {name:<26} collector median {statistics.median(c) * 1000:7.2f} ms  p99 {pct(c, 0.99) * 1000:7.2f} ms"
            f" | request median {statistics.median(t) * 1000:7.2f} ms")
        row("herakles tcp (default)", ours_c, ours_t)
        row("node_exporter tcpstat", peer_c, peer_t)
        for c in held:
            c.close()
        server.stdin.close()
        server.wait()
    finally:
        # SIGTERM, not SIGKILL: netprobe takes its TC filters off on the way out.
        ours.terminate()
        ours.wait()
        peer.kill()


if __name__ == "__main__":
    main()
