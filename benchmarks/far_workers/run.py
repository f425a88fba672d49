#!/usr/bin/env python3
"""Workers far away: dx against Dask distributed, both with their workers behind dx-link processes
(tools/link_emulator) that delay each direction of a worker's connection to the head/scheduler.

Scenarios (two workers of one thread, every task submitted at once, efficiency = ideal makespan /
measured, ideal = tasks x duration / 2):
  direct      400 x 10 ms, both workers on loopback
  50 ms       400 x 10 ms, a 50 ms round trip on both links
  200 ms      400 x 10 ms, a 200 ms round trip on both links
  mixed       400 x 10 ms, one worker direct, one at a 200 ms round trip
  1 ms tasks  2,000 x 1 ms, a 200 ms round trip on both links
Each round runs, in an order alternating from round to round:
  dx cold     dx_bench_far_live on an empty cost model (the kind is learned during the run)
  dx warm     the same after one untimed run of the same tasks on the same cluster (the kind is
              known, as in any later run: dx keeps its cost model between runs)
  Dask inf    dask_far.py with distributed.scheduler.worker-saturation = inf (Dask at its best here)
  Dask warm   the same after one untimed run (Dask learns durations within a session)
Dask with its default saturation (1.1) is run once per scenario in the first round only (it takes
tens of seconds at 200 ms), not at all for the 1 ms tasks (minutes).

Prints a Markdown table of median [min-max] per cell, and the targets.

Usage: python3 benchmarks/far_workers/run.py [--build build] [--rounds 3] [--python /usr/bin/python3]
           [--only direct,50,200,mixed,short]
"""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import loadavg, run_results  # noqa: E402  (benchmarks/bench_util.py)

SCENARIOS = [
    ("direct", "direct (loopback)", 400, 10, [0, 0]),
    ("50", "50 ms on both links", 400, 10, [25, 25]),
    ("200", "200 ms on both links", 400, 10, [100, 100]),
    ("mixed", "one direct, one at 200 ms", 400, 10, [0, 100]),
    ("short", "2,000 x 1 ms, 200 ms on both links", 2000, 1, [100, 100]),
]
TARGETS = {"direct": "no regression", "50": ">= 0.85", "200": ">= 0.85", "mixed": ">= 0.85", "short": ">= 0.7"}


def efficiency(cmd):
    for r in run_results(cmd, 600) or []:
        if r.get("mode") == "makespan":
            return float(r["efficiency"])
    return None


def fmt(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    bench = os.path.join(a.build, "benchmarks", "far_workers", "dx_bench_far_live")
    link = os.path.join(a.build, "tools", "link_emulator", "dx-link")
    dask = os.path.join(HERE, "dask_far.py")
    only = set(a.only.split(",")) if a.only else None
    scenarios = [s for s in SCENARIOS if not only or s[0] in only]
    cells = {}
    print(f"# load before: {loadavg()}", flush=True)
    for rnd in range(a.rounds):
        for key, _, tasks, ms, delays in scenarios:
            d = [str(x) for x in delays]
            runs = [
                ("dx cold", [bench, "makespan", link, str(tasks), str(ms)] + d),
                ("dx warm", [bench, "makespan", link, str(tasks), str(ms)] + d + ["--warm"]),
                ("Dask inf", [a.python, dask, link, str(tasks), str(ms)] + d + ["--saturation", "inf"]),
                ("Dask warm", [a.python, dask, link, str(tasks), str(ms)] + d + ["--saturation", "inf", "--warm"]),
            ]
            if rnd == 0 and key != "short":
                runs.append(("Dask default", [a.python, dask, link, str(tasks), str(ms)] + d))
            if rnd % 2:
                runs.reverse()
            for name, cmd in runs:
                e = efficiency(cmd)
                cells.setdefault((key, name), []).append(e)
                print(f"# round {rnd} {key} {name}: {e}", flush=True)
    print(f"# load after: {loadavg()}")
    cols = ["dx cold", "dx warm", "Dask default", "Dask inf", "Dask warm"]
    print("| link | " + " | ".join(cols) + " | target (dx) |")
    print("|---|" + "---|" * len(cols) + "---|")
    for key, label, _, _, _ in scenarios:
        print(f"| {label} | " + " | ".join(fmt(cells.get((key, c), [])) for c in cols) + f" | {TARGETS[key]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
