#!/usr/bin/env python3
"""Runs the same benchmark commands from two build trees, alternating old and new in every round,
and prints the median [min-max] of each side's figure (one per benchmark, from its RESULT lines) and
the ratio new / old. For changes meant
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

# (name, binary under the build tree, arguments, figure): the figure is a key of the benchmark's
# RESULT lines (the median of its values in one process is the run's figure; the RESULT line must
# also contain `select`), or None for the process's wall time. {data} is a dataframe data folder.
CASES = [
    ("local: independent 1M, ns/task", "benchmarks/local_tasks/dx_bench_local_tasks", ["dx", "independent", "3"],
     "ns_per_task", "bench=independent "),
    ("local: wavefront, ns/task", "benchmarks/local_tasks/dx_bench_local_tasks", ["dx", "wavefront", "3"],
     "ns_per_task", "bench=wavefront "),
    ("distributed: throughput 50k, tasks/s", "benchmarks/distributed/dx_bench_distributed", ["throughput", "50000"],
     "tasks_per_s", "mode=throughput"),
    ("distributed: latency, median us", "benchmarks/distributed/dx_bench_distributed", ["latency", "2000"],
     "median_us", "system=dx"),
    ("scheduling: decisions/s (200k tasks, 2k workers)", "benchmarks/simulator/dx_bench_decisions",
     ["1", "200000", "2000"], "decisions_per_s", "RESULT"),
    ("scheduling: hetero predictive makespan s", "benchmarks/scheduling/dx_bench_scheduling",
     ["hetero", "predictive", "--tasks", "1000", "--ms", "2", "--cost-model", "{model}"], "makespan_s", "RESULT"),
    ("dataframe: groupby, wall s", "benchmarks/dataframe/dx_bench_dataframe", ["groupby", "{data}", "3"], None, ""),
    ("dataframe: sort, wall s", "benchmarks/dataframe/dx_bench_dataframe", ["sort", "{data}", "3"], None, ""),
]


def run(binary, args, figure, select):
    start = time.monotonic()
    done = subprocess.run([binary] + args, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    if figure is None:
        return wall
    values = []
    for line in done.stdout.splitlines():
        if line.startswith("RESULT") and select in line:
            for field in line.split():
                if field.startswith(figure + "="):
                    values.append(float(field.split("=", 1)[1]))
    if not values:
        raise SystemExit(f"{binary} printed no RESULT line with {figure}")
    return statistics.median(values)


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
        for name, binary, args, figure, select in CASES:
            if opts.only not in name or ("{data}" in args and not data):
                continue
            # Alternate which side goes first, so neither always runs on a warmer machine.
            order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
            for side in order:
                build = opts.old if side == "old" else opts.new
                model = os.path.join(scratch, f"model-{side}.txt")
                filled = [a.replace("{data}", data).replace("{model}", model) for a in args]
                times.setdefault(name, {"old": [], "new": []})[side].append(
                    run(os.path.join(build, binary), filled, figure, select))
        print(f"round {rnd + 1}/{opts.rounds} done", file=sys.stderr)
    print("| benchmark | old | new | new / old |")
    print("|---|---|---|---|")
    for name, t in times.items():
        o, n = statistics.median(t["old"]), statistics.median(t["new"])
        print(f"| {name} | {o:.4g} [{min(t['old']):.4g}-{max(t['old']):.4g}] | "
              f"{n:.4g} [{min(t['new']):.4g}-{max(t['new']):.4g}] | {n / o:.3f} |")


if __name__ == "__main__":
    main()
