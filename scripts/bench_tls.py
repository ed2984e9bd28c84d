"""What HTTPS and basic auth cost a scrape: latency, exporter CPU and RSS.

Usage: bench_tls.py BIN N

Serves the same test data (`generate-testdata --seed 1`, so collection
costs little and what differs is the serving) three ways at once: plain
HTTP, HTTPS (ECDSA P-256 certificate, TLS 1.3) and HTTPS with basic auth
(bcrypt cost 10), one exporter each, and scrapes each N times over one
kept-alive connection (as Prometheus does) and N times with a new
connection per scrape (a full handshake each time: no session resumption,
as Go's HTTP client does by default). The scrapes go to the three in turn,
so a shared machine's drift touches all alike. Bodies are not gzipped, so
the figures are the transport's, not the compressor's.

Prints one row per way and connection mode: latency percentiles as this
client sees them, the exporter's CPU time per scrape (utime + stime from
/proc/PID/stat), and its RSS after the run; then the handshake cost (new
connection minus kept-alive, HTTPS) and the RSS differences.
"""
import base64
import http.client
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from bench_scrape import cpu_seconds, rss_kib

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

USER, PASSWORD = "prometheus", "bench-password"


def setup(bin_path, tmp):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "server.key", "-out", "server.crt", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp, check=True, capture_output=True)
    tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    with open(os.path.join(tmp, "tls.yml"), "w") as f:
        f.write(tls)
    # $2b$, cost 10: what `htpasswd -nBC 10` makes.
    salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10)
    with open(os.path.join(tmp, "auth.yml"), "w") as f:
        f.write(tls + f"basic_auth_users:\n  {USER}: {crypt.crypt(PASSWORD, salt)}\n")
    subprocess.run([bin_path, "generate-testdata", "--seed", "1", "-o", "testdata.json"],
                   cwd=tmp, check=True, capture_output=True)


class Exporter:
    def __init__(self, bin_path, tmp, args):
        self.log = open(os.path.join(tmp, "exporter.log"), "w+")
        self.proc = subprocess.Popen(
            [bin_path, "--no-config", "-t", "testdata.json", "-p", "0", "--bind", "127.0.0.1"]
            + args, cwd=tmp, stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(200):
            self.log.seek(0)
            for line in self.log:
                if "listening on " in line:
                    url = line.split("listening on ")[1].split()[0]
                    self.https = url.startswith("https://")
                    self.port = int(url.rsplit(":", 1)[1])
                    return
            time.sleep(0.05)
        raise SystemExit("exporter did not start:\n" + open(self.log.name).read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def connect(exp, context):
    if exp.https:
        return http.client.HTTPSConnection("127.0.0.1", exp.port, context=context)
    return http.client.HTTPConnection("127.0.0.1", exp.port)


def scrape(conn, headers):
    conn.request("GET", "/metrics", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, (resp.status, body[:200])
    return len(body)


def run(ways, context, n, keep_alive):
    """N scrapes of each way, interleaved (one of each in turn, so that a
    shared machine's drift touches all alike); per way the sorted
    latencies (s) and the exporter's CPU seconds per scrape."""
    conns = [connect(exp, context) for _, exp, _ in ways] if keep_alive else []
    latencies = [[] for _ in ways]
    cpu_before = [cpu_seconds(exp.proc.pid) for _, exp, _ in ways]
    for _ in range(n):
        for i, (_, exp, headers) in enumerate(ways):
            t = time.perf_counter()
            if keep_alive:
                scrape(conns[i], headers)
            else:
                c = connect(exp, context)
                scrape(c, {**headers, "Connection": "close"})
                c.close()
            latencies[i].append(time.perf_counter() - t)
    for c in conns:
        c.close()
    return [(sorted(latencies[i]), (cpu_seconds(exp.proc.pid) - cpu_before[i]) / n)
            for i, (_, exp, _) in enumerate(ways)]


def main():
    bin_path, n = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    tmp = tempfile.mkdtemp(prefix="bench_tls.")
    setup(bin_path, tmp)
    context = ssl.create_default_context(cafile=os.path.join(tmp, "server.crt"))
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    specs = [
        ("HTTP", [], {}),
        ("HTTPS", ["--web.config.file", "tls.yml"], {}),
        ("HTTPS + basic auth", ["--web.config.file", "auth.yml"],
         {"Authorization": f"Basic {token}"}),
    ]
    ways = []
    try:
        for name, args, headers in specs:
            ways.append((name, Exporter(bin_path, tmp, args), headers))
        size = 0
        for _, exp, headers in ways:
            conn = connect(exp, context)
            for _ in range(20):  # warm-up; the first auth runs bcrypt once
                size = scrape(conn, headers)
            conn.close()
        rows = []
        for keep_alive in (True, False):
            mode = "kept alive" if keep_alive else "new each scrape"
            for (name, _, _), (lat, cpu) in zip(ways, run(ways, context, n, keep_alive)):
                rows.append((name, mode, lat, cpu))
        rss = {name: rss_kib(exp.proc.pid) for name, exp, _ in ways}
    finally:
        for _, exp, _ in ways:
            exp.stop()
    p = lambda lat, q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    print(f"{n} scrapes per row, interleaved across the three exporters; "
          f"body {size} bytes (test data, no gzip)\n")
    print(f"{'serving':<20} {'connection':<16} {'median ms':>9} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'CPU ms/scrape':>13} {'RSS KiB':>8}")
    for name, mode, lat, cpu in rows:
        print(f"{name:<20} {mode:<16} {statistics.median(lat) * 1000:>9.3f} {p(lat, 0.9):>8.3f} "
              f"{p(lat, 0.99):>8.3f} {cpu * 1000:>13.3f} {rss[name]:>8}")
    by = {(r[0], r[1]): r for r in rows}
    https_new, https_kept = by[("HTTPS", "new each scrape")], by[("HTTPS", "kept alive")]
    print(f"\nTLS handshake (HTTPS new connection minus kept alive): "
          f"{(statistics.median(https_new[2]) - statistics.median(https_kept[2])) * 1000:.3f} ms "
          f"latency, {(https_new[3] - https_kept[3]) * 1000:.3f} ms exporter CPU")
    print(f"RSS after all scrapes: HTTPS {rss['HTTPS'] - rss['HTTP']:+d} KiB, HTTPS + basic auth "
          f"{rss['HTTPS + basic auth'] - rss['HTTP']:+d} KiB against HTTP")


if __name__ == "__main__":
    main()
