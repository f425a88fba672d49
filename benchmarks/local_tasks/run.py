#!/usr/bin/env python3
"""Local task overhead: dx against oneTBB and OpenMP, interleaved (standard library only).

Builds nothing: give it the dx_bench_local_tasks binary of a Release build. First runs
`--check` once per (system, bench) (every task ran once, results right, DAG order kept), then
ROUNDS rounds; in each round every bench runs once per system, in a system order rotated from
round to round, each run a fresh process doing 1 untimed warm-up + REPS timed reps. Prints a
Markdown table of ns per task, median [min-max] over ROUNDS x REPS samples, and the ratios of
the medians dx/tbb and dx/omp (for chain and wavefront both total = build + run + teardown and
run only; OpenMP's DAGs build while they run, so they only have a total).

dx's `independent` process measures two variants: `independent` (task_group driven from the
main thread, 3 threads on 2 cores) and `independent_in` (the same inside one executor task, like
oneTBB's main thread that joins its arena); both are compared with the peers' one figure.

Usage:  python3 benchmarks/local_tasks/run.py [BINARY] [--rounds 7] [--reps 3]
            [--systems dx,tbb,omp] [--benches independent,fib30,fib25,chain,wavefront,futures]
            [--csv FILE] [--no-check]
BINARY defaults to build/benchmarks/local_tasks/dx_bench_local_tasks (relative to the current
directory, else to the repository root).
"""
import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import find_binary, loadavg, parse  # noqa: E402  (benchmarks/bench_util.py)
DEFAULT_BIN = os.path.join("build", "benchmarks", "local_tasks", "dx_bench_local_tasks")
ALL_BENCHES = "independent,fib30,fib25,chain,wavefront,futures"
DAGS = ("chain", "wavefront")
LABELS = {
    "independent": "(a) 1M independent, dx task_group from main",
    "independent_in": "(a) 1M independent, dx task_group inside a task",
    "fib30": "(b) fib(30)",
    "fib25": "(b) fib(25)",
    "chain": "(c) chain 100k",
    "wavefront": "(d) wavefront 500x500",
    "futures": "(e) 1M submit + when_all",
}


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(s):
    med, lo, hi = s
    p = (lambda v: f"{v:.1f}") if med < 1000 else (lambda v: f"{v:.0f}")
    return f"{p(med)} [{p(lo)}-{p(hi)}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=DEFAULT_BIN)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--systems", default="dx,tbb,omp")
    ap.add_argument("--benches", default=ALL_BENCHES)
    ap.add_argument("--csv", help="write the raw samples here")
    ap.add_argument("--no-check", action="store_true", help="skip the --check runs")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per process")
    a = ap.parse_args()
    binary = find_binary(a.binary)
    systems, benches = a.systems.split(","), a.benches.split(",")

    print("binary:", binary)
    print("date:", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "| host:", platform.platform(), "| cpus:", os.cpu_count(), "| loadavg:", loadavg(), flush=True)

    failed = set()
    if not a.no_check:
        for b in benches:
            for s in systems:
                try:
                    p = subprocess.run([binary, s, b, "--check"], capture_output=True, text=True, timeout=a.timeout)
                except subprocess.TimeoutExpired:
                    print(f"CHECK system={s} bench={b} TIMEOUT after {a.timeout:.0f} s (hang?)", flush=True)
                    failed.add((s, b))
                    continue
                for line in p.stdout.splitlines():
                    if line.startswith("CHECK"):
                        print(line, flush=True)
                if p.returncode != 0:
                    print(f"CHECK system={s} bench={b} exit code {p.returncode}: {p.stderr.strip()[:500]}", flush=True)
                    failed.add((s, b))

    rows = []
    for r in range(a.rounds):
        k = r % len(systems)
        order = systems[k:] + systems[:k]
        for b in benches:
            for s in order:
                if (s, b) in failed:
                    continue
                try:
                    p = subprocess.run([binary, s, b, str(a.reps)], capture_output=True, text=True, timeout=a.timeout)
                except subprocess.TimeoutExpired:
                    print(f"round {r + 1}: {s} {b} TIMEOUT after {a.timeout:.0f} s", flush=True)
                    failed.add((s, b))
                    continue
                if p.returncode != 0:
                    print(f"round {r + 1}: {s} {b} exit code {p.returncode}: {p.stderr.strip()[:500]}", flush=True)
                    failed.add((s, b))
                    continue
                for line in p.stdout.splitlines():
                    if line.startswith("RESULT"):
                        d = parse(line)
                        d["round"] = r + 1
                        rows.append(d)
        print(f"round {r + 1}/{a.rounds} done (order {','.join(order)}), loadavg {loadavg()}", flush=True)

    if a.csv:
        keys = ["round", "system", "bench", "rep", "tasks", "build_s", "run_s", "teardown_s", "total_s", "ns_per_task",
                "ns_per_task_run", "maxrss_kb", "hwm_kb"]
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def sel(system, bench, key):
        return [float(d[key]) for d in rows if d["system"] == system and d["bench"] == bench]

    def cell(system, bench, key):
        xs = sel(system, bench, key)
        return summary(xs) if xs else None

    peers = [s for s in systems if s != "dx"]
    print()
    print(f"ns per task, median [min-max] over {a.rounds} rounds x {a.reps} reps (fresh process per round, "
          "systems interleaved, order rotated); ratios are of the medians")
    print()
    head = ["bench", "measure"] + systems + [f"dx/{p}" for p in peers]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for b in benches:
        dx_names = ["independent", "independent_in"] if b == "independent" else [b]
        for dx_name in dx_names:
            measures = [("total", "ns_per_task"), ("run", "ns_per_task_run")] if b in DAGS else [("total", "ns_per_task")]
            for mname, key in measures:
                cells, meds = [], {}
                for s in systems:
                    name = dx_name if s == "dx" else b
                    if s == "omp" and b in DAGS and mname == "run":
                        cells.append("n/a")
                        continue
                    c = cell(s, name, key)
                    cells.append(fmt(c) if c else "-")
                    if c:
                        meds[s] = c[0]
                ratios = []
                for p in peers:
                    ratios.append(f"{meds['dx'] / meds[p]:.2f}x" if "dx" in meds and p in meds else "-")
                print("| " + " | ".join([LABELS.get(dx_name, dx_name), mname] + cells + ratios) + " |")

    print()
    print("peak RSS (VmHWM of the benchmark process, MB; ru_maxrss would include the launcher's own peak),")
    print("median [min-max] of the per-process peaks")
    print()
    print("| bench | " + " | ".join(systems) + " |")
    print("|" + "---|" * (len(systems) + 1))
    for b in benches:
        cells = []
        for s in systems:
            # the peak of a process is the largest VmHWM among its RESULT lines
            per_proc = {}
            for d in rows:
                if d["system"] == s and d["bench"] in (b, b + "_in"):
                    per_proc[d["round"]] = max(per_proc.get(d["round"], 0), float(d["hwm_kb"]) / 1024)
            c = summary(list(per_proc.values())) if per_proc else None
            cells.append(fmt(c) if c else "-")
        label = "(a) 1M independent (dx: both variants in one process)" if b == "independent" else LABELS.get(b, b)
        print(f"| {label} | " + " | ".join(cells) + " |")
    if failed:
        print()
        print("FAILED (excluded):", ", ".join(f"{s} {b}" for s, b in sorted(failed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
