#!/usr/bin/env python3
"""The peer of `dx_bench_metrics_render registry`: Python's prometheus_client (Debian
python3-prometheus-client) with the same 10,100 samples (see render.cpp for the series), timing
generate_latest() CALLS times after 3 untimed calls.

Run with PROMETHEUS_DISABLE_CREATED_SERIES=True (run.py sets it), so counters and histograms have
no *_created samples and the sample count equals dx's.

Usage: PROMETHEUS_DISABLE_CREATED_SERIES=True /usr/bin/python3 prom_peer.py [CALLS=50] [--dump]
Output: one `RESULT mode=prometheus_client ...` line (or, with --dump, the rendered text).
"""
import statistics
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


def build():
    reg = CollectorRegistry()
    t0 = time.perf_counter()
    req = Counter("app_requests_total", "Requests served, by route and status code.", ["route", "code"],
                  registry=reg)
    codes = ["200", "201", "404", "500", "503"]
    for r in range(1000):
        for i, c in enumerate(codes):
            req.labels(route=f"/api/v1/resource/{r}", code=c).inc((r * 31 + i * 7) % 1000 + 1)
    q = Gauge("app_queue_depth", "Items waiting, by shard and queue.", ["shard", "queue"], registry=reg)
    for k in range(4000):
        q.labels(shard=f"shard-{k // 100}", queue=f"queue-{k}").set(k * 0.25 + 0.5)
    bounds = [0.001 * 4 ** k for k in range(8)]
    h = Histogram("app_request_duration_seconds", "Time to answer a request, by endpoint.", ["endpoint"],
                  buckets=bounds, registry=reg)
    for e in range(100):
        child = h.labels(endpoint=f"endpoint-{e}")
        for j in range(20):
            child.observe(0.0005 * 1.7 ** ((e + j) % 20))
    return reg, (time.perf_counter() - t0) * 1e3


def pct(xs, p):  # nearest rank, as in render.cpp
    xs = sorted(xs)
    return xs[min(int(p / 100 * (len(xs) - 1) + 0.5), len(xs) - 1)]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    calls = int(args[0]) if args else 50
    reg, reg_ms = build()
    if "--dump" in sys.argv:
        sys.stdout.write(generate_latest(reg).decode())
        return 0
    for _ in range(3):
        generate_latest(reg)
    ms = []
    out = b""
    for _ in range(calls):
        t0 = time.perf_counter()
        out = generate_latest(reg)
        ms.append((time.perf_counter() - t0) * 1e3)
    samples = sum(1 for line in out.decode().splitlines() if line and not line.startswith("#"))
    print(f"RESULT mode=prometheus_client calls={calls} samples={samples} dx_samples=0 bytes={len(out)} "
          f"median_ms={statistics.median(ms):.3f} p99_ms={pct(ms, 99):.3f} min_ms={min(ms):.3f} "
          f"max_ms={max(ms):.3f} register_ms={reg_ms:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
