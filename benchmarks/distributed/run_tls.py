#!/usr/bin/env python3
"""Mutual TLS against plain TCP on dx's links, side by side: remote no-op throughput (two worker
processes), the round trip of one remote call, and a 255 MiB fetch. Each round runs every
measurement with and without TLS in fresh processes, the order alternating from round to round;
medians with min-max and the TLS / plain ratios are printed. Certificates come from a throwaway
authority made here with the openssl command line (EC P-256).

    python3 benchmarks/distributed/run_tls.py build/benchmarks/distributed/dx_bench_distributed --rounds 5
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_util import find_binary, loadavg, run_results, summary  # noqa: E402

PKI = r"""set -e
cd "$1"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/CN=bench authority" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out head.key 2>/dev/null
openssl req -new -key head.key -out head.csr -subj "/CN=bench head"
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext
openssl x509 -req -in head.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out head.pem -days 2 -extfile ext 2>/dev/null
"""



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=50000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--fetch-mib", type=int, default=255, help="0 leaves the fetch out")
    args = ap.parse_args()
    binary = find_binary(args.binary)
    pki = tempfile.mkdtemp(prefix="dx_bench_pki_")
    subprocess.run(["sh", "-c", PKI, "pki", pki], check=True, capture_output=True)
    print(f"load average at start: {loadavg()}", flush=True)

    runs = {
        "throughput": (["throughput", str(args.tasks), "2"], "tasks_per_s", "tasks/s"),
        "latency": (["latency", str(args.calls), "0"], "median_us", "us"),
    }
    if args.fetch_mib > 0:
        runs["fetch"] = (["fetch", str(args.fetch_mib)], "GBps", "GB/s")
    got = {(name, tls): [] for name in runs for tls in (False, True)}
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for name, (argv, key, _) in runs.items():
            for tls in order:
                cmd = [binary] + argv + (["--tls", pki] if tls else [])
                results = run_results(cmd, timeout=600) or []
                for res in results:
                    if res.get("mode") == name and res.get("system", "dx") == "dx" and key in res:
                        got[(name, tls)].append(float(res[key]))
        print(f"round {r + 1}/{args.rounds} done, load average {loadavg()}", flush=True)

    print(f"\nload average at end: {loadavg()}")
    print("| measurement | plain TCP | mutual TLS 1.3 | TLS / plain |")
    print("|---|---|---|---|")
    for name, (_, _, unit) in runs.items():
        plain, tls = got[(name, False)], got[(name, True)]
        if not plain or not tls:
            print(f"| {name} | no result | no result | |")
            continue
        ratio = statistics.median(tls) / statistics.median(plain)
        print(f"| {name} ({unit}) | {summary(plain)} | {summary(tls)} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
