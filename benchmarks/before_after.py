#!/usr/bin/env python3
"""Runs the same benchmark commands from two build trees, alternating old and new in every round,
and prints the median [min-max] wall time of each side and the ratio new / old. For changes meant
to leave speed alone (refactors): a ratio inside the spread of the rounds is noise.

  python3 benchmarks/before_after.py --old OLD_BUILD --new NEW_BUILD [--rounds 5] [--data DIR]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# (name, binary under the build tree, arguments); {data} is a dataframe data folder.
CASES = [
    ("local: independent, dx", "benchmarks/local_tasks/dx_bench_local_tasks", ["dx", "independent", "3"]),
    ("local: wavefront, dx", "benchmarks/local_tasks/dx_bench_local_tasks", ["dx", "wavefront", "3"]),
    ("distributed: throughput 50k", "benchmarks/distributed/dx_bench_distributed", ["throughput", "50000"]),
    ("distributed: latency 2000", "benchmarks/distributed/dx_bench_distributed", ["latency", "2000"]),
    ("scheduling: decisions 200k x 2k", "benchmarks/simulator/dx_bench_decisions", ["1", "200000", "2000"]),
    ("scheduling: hetero predictive", "benchmarks/scheduling/dx_bench_scheduling",
     ["hetero", "predictive", "--tasks", "1000", "--ms", "2", "--cost-model", "{model}"]),
    ("dataframe: groupby", "benchmarks/dataframe/dx_bench_dataframe", ["groupby", "{data}", "3"]),
    ("dataframe: sort", "benchmarks/dataframe/dx_bench_dataframe", ["sort", "{data}", "3"]),
]


def run(binary, args):
    start = time.monotonic()
    done = subprocess.run([binary] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(args)} exited with {done.returncode}")
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--data", default="", help="a folder `benchmarks/dataframe/peer.py generate` wrote; "
                    "without it the dataframe cases are left out")
    opts = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="dx-before-after-")
    data = opts.data
    times = {}
    for rnd in range(opts.rounds):
        for name, binary, args in CASES:
            if opts.only not in name or ("{data}" in args and not data):
                continue
            # Alternate which side goes first, so neither always runs on a warmer machine.
            order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
            for side in order:
                build = opts.old if side == "old" else opts.new
                model = os.path.join(scratch, f"model-{side}.txt")
                filled = [a.replace("{data}", data).replace("{model}", model) for a in args]
                times.setdefault(name, {"old": [], "new": []})[side].append(
                    run(os.path.join(build, binary), filled))
        print(f"round {rnd + 1}/{opts.rounds} done", file=sys.stderr)
    print("| benchmark | old (s) | new (s) | new / old |")
    print("|---|---|---|---|")
    for name, t in times.items():
        o, n = statistics.median(t["old"]), statistics.median(t["new"])
        print(f"| {name} | {o:.3f} [{min(t['old']):.3f}-{max(t['old']):.3f}] | "
              f"{n:.3f} [{min(t['new']):.3f}-{max(t['new']):.3f}] | {n / o:.3f} |")


if __name__ == "__main__":
    main()
