#!/usr/bin/env python3
"""tcp collector time per scrape with and without eBPF state tracking, with
CONNS loopback connections (2*CONNS sockets) open in a private network
namespace. Run inside one (scripts/bench_tcp_tracking.sh does):
    bench_tcp_tracking.py BINARY SCRAPES CONNS
Server and client ends live in two child processes, since one process may
hold at most 20,000 descriptors here."""
import resource, socket, subprocess, sys, time, urllib.request

binary, scrapes, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

HOLDER = r'''
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (%(n)d + 100, %(n)d + 100))
n, port = %(n)d, %(port)d
keep = []
if port == 0:
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4096)
    print(l.getsockname()[1], flush=True)
    while len(keep) < n: keep.append(l.accept()[0])
else:
    for _ in range(n): keep.append(socket.create_connection(("127.0.0.1", port)))
print("ready", flush=True)
sys.stdin.read()
'''
server = subprocess.Popen([sys.executable, "-c", HOLDER % {"n": conns, "port": 0}],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = int(server.stdout.readline())
client = subprocess.Popen([sys.executable, "-c", HOLDER % {"n": conns, "port": port}],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert client.stdout.readline().strip() == "ready"
assert server.stdout.readline().strip() == "ready"

def run(flag):
    exp = subprocess.Popen([binary, "--no-config", "-p", "0", "--bind", "127.0.0.1", flag],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addr = None
    while addr is None:
        line = exp.stderr.readline()
        if "listening on http://" in line:
            addr = line.split("listening on http://")[1].split()[0]
    times, est = [], None
    for _ in range(scrapes):
        body = urllib.request.urlopen(f"http://{addr}/metrics?collect[]=tcp").read().decode()
        for l in body.splitlines():
            if l.startswith('herakles_scrape_collector_duration_seconds{collector="tcp"}'):
                times.append(float(l.split()[-1]))
            if l.startswith("herakles_system_tcp_connections_established "):
                est = float(l.split()[-1])
    exp.terminate(); exp.wait()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)], est

for flag in ["--disable-tcp-tracking", "--enable-tcp-tracking"]:
    med, p90, est = run(flag)
    print(f"{flag:24} tcp collector median {med*1e3:8.3f} ms  p90 {p90*1e3:8.3f} ms  established={est:.0f}")
for p in (client, server):
    p.stdin.close(); p.wait()
