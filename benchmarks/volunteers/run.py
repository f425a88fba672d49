#!/usr/bin/env python3
"""Volunteers: replicated tasks and deadlines (dx/replicate.hpp) with workers that are wrong or slow
on purpose (dx-worker --corrupt-results P, --slowdown F), through dx_bench_volunteers.

Quorum under corruption: 10 worker processes of 1 thread, 2 of them with --corrupt-results 0.1;
10,000 hash tasks of about 1 ms of compute (calibrated here), in two halves of 5,000. Each round
runs, in an order alternating from round to round:
  plain     no replication (corrupted results go through: the wrong count shows what is at stake)
  adaptive  replicate{.copies = 2, .quorum = 2, .adaptive = true}
  full      replicate{.copies = 2, .quorum = 2}
Reported: wrong canonical results, failed tasks, the work ratio (task executions counted where
they run / tasks) over the run and over the second half (tasks 5,001-10,000, once trust is
earned), the time against plain's in the same round, and the corrupting workers' quarantines.

Stragglers: 4 worker processes of 1 thread, 2,000 tasks that sleep 5 ms, submitted at once:
  (a) straggler + deadline   one worker with --slowdown 10, deadline{.soft_factor = 3}
  (b) straggler, no deadline
  (c) 4 normal workers, no deadline (the same cluster without a straggler)
  (c3) 3 normal workers, no deadline (the cluster with the straggler removed)
  (d) 4 normal workers + deadline (the cost of the deadline path where it is not needed)
Reported: makespans, and (a)/(c), (a)/(c3), (b)/(c) per round.

Prints median [min-max] over the rounds; with --record, the raw rows go to CSV files.

Usage: python3 benchmarks/volunteers/run.py [--build build] [--rounds 5] [--only quorum,straggler]
           [--tasks 10000] [--task-ms 1] [--straggler-tasks 2000] [--straggler-ms 5] [--record DIR]
"""
import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import find_binary, loadavg, run_results, write_rows  # noqa: E402


def fmt(xs, digits=2):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.median(xs):.{digits}f} [{min(xs):.{digits}f}-{max(xs):.{digits}f}]"


def one(cmd, timeout=600):
    rows = run_results(cmd, timeout)
    return rows[0] if rows else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--task-ms", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--bad", type=int, default=2)
    ap.add_argument("--corrupt", default="0.1")
    ap.add_argument("--straggler-tasks", type=int, default=2000)
    ap.add_argument("--straggler-ms", type=int, default=5)
    ap.add_argument("--record", default="")
    a = ap.parse_args()
    bench = find_binary(os.path.join(a.build, "benchmarks", "volunteers", "dx_bench_volunteers"))
    only = set(a.only.split(",")) if a.only else {"quorum", "straggler"}
    print(f"# load before: {loadavg()}", flush=True)
    quorum_rows, straggler_rows = [], []

    if "quorum" in only:
        iters = int(one([bench, "calibrate", str(a.task_ms)])["iters"])
        truth = os.path.join(tempfile.gettempdir(), f"dx_bench_volunteers_truth_{a.tasks}_{iters}")
        print(f"# quorum: {a.tasks} tasks of {a.task_ms} ms ({iters} iterations), {a.workers} workers, "
              f"{a.bad} with --corrupt-results {a.corrupt}", flush=True)
        modes = ["plain", "adaptive", "full"]
        for rnd in range(a.rounds):
            order = modes if rnd % 2 == 0 else list(reversed(modes))
            for mode in order:
                r = one([bench, "quorum", mode, str(a.tasks), str(iters), str(a.workers), str(a.bad), a.corrupt,
                         "--truth", truth])
                if r is None:
                    continue
                r["round"] = rnd
                quorum_rows.append(r)
                print(f"# round {rnd} {mode}: total {r['total_s']} s, wrong {r['wrong']}, failed {r['failed']}, "
                      f"ratio {r['work_ratio']} (second half {r['work_ratio_second_half']}), "
                      f"quarantine {r['quarantine']}", flush=True)

    if "straggler" in only:
        print(f"# stragglers: {a.straggler_tasks} tasks of {a.straggler_ms} ms (sleeping), 4 workers", flush=True)
        configs = [
            ("a", ["deadline", "4", "1", "10"]),
            ("b", ["plain", "4", "1", "10"]),
            ("c", ["plain", "4", "0", "10"]),
            ("c3", ["plain", "3", "0", "10"]),
            ("d", ["deadline", "4", "0", "10"]),
        ]
        for rnd in range(a.rounds):
            order = configs if rnd % 2 == 0 else list(reversed(configs))
            for key, args in order:
                mode, workers, slow, factor = args
                r = one([bench, "straggler", mode, str(a.straggler_tasks), str(a.straggler_ms), workers, slow,
                         factor])
                if r is None:
                    continue
                r["round"], r["config"] = rnd, key
                straggler_rows.append(r)
                print(f"# round {rnd} ({key}): makespan {r['makespan_s']} s, executions {r['executions']} "
                      f"(slow {r['executions_slow']})", flush=True)

    print(f"# load after: {loadavg()}")
    if quorum_rows:
        by = {}
        for r in quorum_rows:
            by.setdefault(r["replication"], []).append(r)
        plain_total = {r["round"]: float(r["total_s"]) for r in by.get("plain", [])}
        plain_second = {r["round"]: float(r["second_half_s"]) for r in by.get("plain", [])}
        print()
        print("| replication | wrong results | failed | work ratio (all) | work ratio (tasks 5,001-10,000) | "
              "time, s | time / plain | second half / plain's | corrupting workers quarantined |")
        print("|---|---|---|---|---|---|---|---|---|")
        for mode in ["plain", "adaptive", "full"]:
            rows = by.get(mode, [])
            if not rows:
                continue
            ratio_t = [float(r["total_s"]) / plain_total[r["round"]] for r in rows if r["round"] in plain_total]
            ratio_h = [float(r["second_half_s"]) / plain_second[r["round"]] for r in rows
                       if r["round"] in plain_second]
            wrong = [int(r["wrong"]) for r in rows]
            failed = [int(r["failed"]) for r in rows]
            q = [int(r["quarantined"]) for r in rows]
            print(f"| {mode} | {fmt(wrong, 0)} (sum {sum(wrong)}) | {fmt(failed, 0)} | "
                  f"{fmt([float(r['work_ratio']) for r in rows], 3)} | "
                  f"{fmt([float(r['work_ratio_second_half']) for r in rows], 3)} | "
                  f"{fmt([float(r['total_s']) for r in rows])} | {fmt(ratio_t)} | {fmt(ratio_h)} | "
                  f"{fmt(q, 0)} of {a.bad} |")
    if straggler_rows:
        by = {}
        for r in straggler_rows:
            by.setdefault(r["config"], {})[r["round"]] = float(r["makespan_s"])
        labels = {"a": "(a) straggler, deadline{.soft_factor = 3}", "b": "(b) straggler, no deadline",
                  "c": "(c) 4 normal workers", "c3": "(c3) 3 normal workers (straggler removed)",
                  "d": "(d) 4 normal workers, deadline"}
        ideal = {r["config"]: float(r["ideal_s"]) for r in straggler_rows}
        print()
        print("| configuration | makespan, s | ideal, s | makespan / (c) | makespan / (c3) |")
        print("|---|---|---|---|---|")
        for key in ["a", "b", "c", "c3", "d"]:
            if key not in by:
                continue
            vs_c = [v / by["c"][k] for k, v in by[key].items() if k in by.get("c", {})]
            vs_c3 = [v / by["c3"][k] for k, v in by[key].items() if k in by.get("c3", {})]
            print(f"| {labels[key]} | {fmt(list(by[key].values()))} | {ideal[key]:.2f} | {fmt(vs_c)} | "
                  f"{fmt(vs_c3)} |")
    if a.record:
        os.makedirs(a.record, exist_ok=True)
        if quorum_rows:
            write_rows(os.path.join(a.record, "quorum.csv"), quorum_rows, ["round", "replication"])
        if straggler_rows:
            write_rows(os.path.join(a.record, "stragglers.csv"), straggler_rows, ["round", "config"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
