#!/usr/bin/env python3
"""One head against a head of heads at 10,000 workers and 10,000,000 tasks (dx_bench_scale).

Builds nothing: give it a Release build tree with the target dx_bench_scale. Each round runs, in an
order that alternates from round to round, one flat head and one two-level head (--heads sub-heads)
on the same workload and seed, with the head's measured cost in the loop (--head-cost measured).
Shapes (--shapes, comma-separated): independent short tasks, map-reduce jobs. With --sweep, one
extra pass of the flat head over mean task durations (1,000,000 tasks each) shows where it
saturates. Prints a Markdown table of medians [min-max] over the rounds; every RESULT line goes to
--out as one JSON object a line, with the load average before and after each process.

Usage:  python3 benchmarks/simulator/run_scale.py [--bin-dir build] [--rounds 3] [--tasks 10000000]
            [--workers 10000] [--heads 8] [--seconds 0.01] [--shapes independent,map-reduce] [--sweep]
            [--out FILE]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import find_binary, loadavg  # noqa: E402  (benchmarks/bench_util.py)

TARGET_DECISIONS = 1_000_000
TARGET_BYTES_PER_TASK = 200


def run(binary, args, out):
    before = loadavg()
    p = subprocess.run([binary] + args, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"{' '.join([binary] + args)} failed: {p.stderr.strip()}")
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))
    r = {}
    for kv in line.split()[1:]:
        k, v = kv.split("=", 1)
        try:
            r[k] = float(v)
        except ValueError:
            r[k] = v
    r["load_before"], r["load_after"], r["args"] = before, loadavg(), args
    out.write(json.dumps(r) + "\n")
    out.flush()
    print(line, file=sys.stderr)
    return r


def med(xs, fmt="{:,.0f}"):
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, default=10_000)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=0.01)
    ap.add_argument("--shapes", default="independent")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    binary = find_binary(os.path.join(a.bin_dir, "benchmarks/simulator/dx_bench_scale"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = open(a.out or f"/tmp/dx_scale_{stamp}.jsonl", "w")
    shapes = a.shapes.split(",")
    res = {}
    for rnd in range(a.rounds):
        for shape in shapes:
            order = [1, a.heads] if rnd % 2 == 0 else [a.heads, 1]
            for heads in order:
                args = ["--workers", str(a.workers), "--tasks", str(a.tasks), "--shape", shape, "--seconds",
                        str(a.seconds), "--heads", str(heads), "--seed", str(rnd + 1)]
                res.setdefault((shape, heads), []).append(run(binary, args, out))
    names = [f"{s}, {h} head" + ("s" if h > 1 else "") for s in shapes for h in (1, a.heads)]
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * (2 * len(shapes)))
    cols = [res[(s, h)] for s in shapes for h in (1, a.heads)]
    rows = [
        ("makespan, s (virtual)", "makespan", "{:.3f}"),
        ("ideal (work / threads), s", "ideal", "{:.3f}"),
        ("efficiency (ideal / makespan)", "efficiency", "{:.3f}"),
        ("placement decisions/s (decide() only)", "place_decisions_per_s", "{:,.0f}"),
        ("tasks/s, every scheduler call, all heads' CPU together", "cycle_tasks_per_s", "{:,.0f}"),
        ("tasks/s, busiest head alone", "busiest_head_tasks_per_s", "{:,.0f}"),
        ("tasks/s the workers could run (threads / mean run time)", "needed_tasks_per_s", "{:,.0f}"),
        ("head bytes per worker", "head_bytes_per_worker", "{:,.0f}"),
        ("head bytes per finished-and-released task", "head_bytes_per_released_task", "{:.1f}"),
        ("head peak bytes per live task", "head_peak_bytes_per_live_task", "{:,.0f}"),
        ("messages/s per worker (run, started, finished)", "messages_per_s_per_worker", "{:.1f}"),
        ("top head CPU, s", "top_busy_s", "{:.2f}"),
        ("wall, s", "wall_s", "{:.1f}"),
    ]
    for name, key, f in rows:
        print(f"| {name} | " + " | ".join(med([r[key] for r in c], f) for c in cols) + " |")
    if a.sweep:
        print("\nFlat head, 1,000,000 tasks, by mean task duration:\n")
        print("| mean run time, s | tasks/s needed | head tasks/s (every call) | efficiency | makespan / ideal |")
        print("|---|---|---|---|---|")
        for s in (0.1, 0.03, 0.01, 0.003):
            r = run(binary, ["--workers", str(a.workers), "--tasks", "1000000", "--seconds", str(s)], out)
            print(f"| {s} | {r['needed_tasks_per_s']:,.0f} | {r['cycle_tasks_per_s']:,.0f} | {r['efficiency']:.3f} | "
                  f"{r['makespan'] / r['ideal']:.2f} |")
    flat = res[(shapes[0], 1)]
    print(f"\ntargets: >= {TARGET_DECISIONS:,} decisions/s: "
          f"{'met' if min(r['place_decisions_per_s'] for r in flat) >= TARGET_DECISIONS else 'not met'}; "
          f"<= {TARGET_BYTES_PER_TASK} head bytes per released task: "
          f"{'met' if max(r['head_bytes_per_released_task'] for r in flat) <= TARGET_BYTES_PER_TASK else 'not met'}")


if __name__ == "__main__":
    main()
