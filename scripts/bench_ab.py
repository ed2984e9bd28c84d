"""Compare the scrape latency of two builds, interleaved request by request.

Usage: bench_ab.py BINARY_A BINARY_B N [exporter flags...]

Both exporters run at once with the same flags; each round scrapes A and B
once, in alternating order, so that the machine's drift (other work on a
shared host moves a serial run by tens of percent) falls on both alike.
Prints each one's median latency and the median of the paired ratios A/B.
"""
import statistics
import sys
import time
import urllib.request

from bench_limits import Exporter


def main():
    bin_a, bin_b, n, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    a, b = Exporter(bin_a, flags), Exporter(bin_b, flags)
    try:
        def scrape(exp):
            t = time.perf_counter()
            urllib.request.urlopen(f"http://{exp.host}:{exp.port}/metrics").read()
            return time.perf_counter() - t

        for _ in range(5):
            scrape(a), scrape(b)
        la, lb = [], []
        for i in range(n):
            if i % 2:
                la.append(scrape(a))
                lb.append(scrape(b))
            else:
                lb.append(scrape(b))
                la.append(scrape(a))
        ratio = statistics.median(x / y for x, y in zip(la, lb))
        print(f"A median {statistics.median(la) * 1000:.3f} ms, B median "
              f"{statistics.median(lb) * 1000:.3f} ms, median paired ratio A/B {ratio:.3f} "
              f"({n} scrapes each)")
    finally:
        a.stop()
        b.stop()


if __name__ == "__main__":
    main()
