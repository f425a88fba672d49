#!/usr/bin/env python3
"""A head under attack against the same head unattacked, side by side: remote no-op throughput
(two worker processes) and the head's peak resident memory, with 8 attackers that keep announcing
frame bodies of 255 MiB (just under the default frame limit) on its worker port. Each round runs
both in fresh processes, the order alternating from round to round; medians with min-max and the
attacked / quiet throughput ratio are printed.

    python3 benchmarks/distributed/run_hostile.py build/benchmarks/distributed/dx_bench_hostile --rounds 5
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_util import find_binary, loadavg, run_results, summary  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=50000)
    ap.add_argument("--attackers", type=int, default=8)
    ap.add_argument("--announce-mib", type=int, default=255)
    args = ap.parse_args()
    binary = find_binary(args.binary)
    print(f"load average at start: {loadavg()}", flush=True)
    got = {False: [], True: []}
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for attacked in order:
            n_att = args.attackers if attacked else 0
            res = run_results([binary, str(args.tasks), str(n_att), str(args.announce_mib)], timeout=300)
            if not res:
                continue
            got[attacked].append(res[0])
            print(f"round {r} {'attacked' if attacked else 'quiet   '}: {res[0]['tasks_per_s']} tasks/s, "
                  f"peak {res[0]['peak_rss_mib']} MiB, attack connections {res[0]['attack_connections']}", flush=True)
    for attacked in (False, True):
        rows = got[attacked]
        if not rows:
            continue
        label = f"{args.attackers} attackers" if attacked else "no attack"
        print(f"{label}: {summary([float(x['tasks_per_s']) for x in rows], 0)} tasks/s, "
              f"peak RSS {summary([float(x['peak_rss_mib']) for x in rows])} MiB")
    if got[False] and got[True]:
        ratio = statistics.median(float(x["tasks_per_s"]) for x in got[True]) / statistics.median(
            float(x["tasks_per_s"]) for x in got[False])
        print(f"attacked / quiet throughput (medians): {ratio:.2f}")
    print(f"load average at end: {loadavg()}", flush=True)


if __name__ == "__main__":
    main()
