#!/usr/bin/env python3
"""dx's MPI transport against its TCP transport on the same machine, side by side: remote no-op
throughput (two one-thread workers), the round trip of one remote call (one worker), and a 255 MiB
result fetched from a worker. TCP: the head starts its workers as processes (local_processes);
MPI: the same binary under `mpirun -np N`, the head rank's workers are the other ranks. Each round
runs every measurement over both transports in fresh processes, the order alternating from round
to round; medians with min-max and the MPI / TCP ratios are printed.

    python3 benchmarks/distributed/run_mpi.py build/benchmarks/distributed/dx_bench_distributed --rounds 5
"""
import argparse
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_util import find_binary, loadavg, run_results, summary  # noqa: E402



def mpirun(ranks):
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    # Shared memory between the ranks (vader), loopback for the rest: as the ctest runs.
    return cmd + ["--mca", "btl", "self,vader,tcp", "--mca", "btl_tcp_if_include", "lo",
                  "--mca", "oob_tcp_if_include", "lo"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=50000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--fetch-mib", type=int, default=255, help="0 leaves the fetch out")
    args = ap.parse_args()
    binary = find_binary(args.binary)
    if not shutil.which("mpirun"):
        sys.exit("mpirun not found (Debian: openmpi-bin)")
    print(f"load average at start: {loadavg()}", flush=True)

    # name: (arguments, MPI ranks (head + workers), result key, unit, higher is better)
    runs = {
        "throughput": (["throughput", str(args.tasks), "2"], 3, "tasks_per_s", "tasks/s"),
        "latency": (["latency", str(args.calls), "0"], 2, "median_us", "us"),
    }
    if args.fetch_mib > 0:
        runs["fetch"] = (["fetch", str(args.fetch_mib)], 2, "GBps", "GB/s")
    got = {(name, t): [] for name in runs for t in ("tcp", "mpi")}
    for r in range(args.rounds):
        order = ("tcp", "mpi") if r % 2 == 0 else ("mpi", "tcp")
        for name, (argv, ranks, key, _) in runs.items():
            for t in order:
                cmd = ([binary] + argv) if t == "tcp" else (mpirun(ranks) + [binary] + argv)
                for res in run_results(cmd, timeout=600) or []:
                    if res.get("mode") == name and res.get("system", "dx") == "dx" and key in res:
                        got[(name, t)].append(float(res[key]))
        print(f"round {r + 1}/{args.rounds} done, load average {loadavg()}", flush=True)

    print(f"\nload average at end: {loadavg()}")
    print("| measurement | TCP | MPI | MPI / TCP |")
    print("|---|---|---|---|")
    for name, (_, _, _, unit) in runs.items():
        tcp, mpi = got[(name, "tcp")], got[(name, "mpi")]
        if not tcp or not mpi:
            print(f"| {name} | {len(tcp)} results | {len(mpi)} results | |")
            continue
        ratio = statistics.median(mpi) / statistics.median(tcp)
        print(f"| {name} ({unit}) | {summary(tcp)} | {summary(mpi)} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
