#!/usr/bin/python3
"""The Dask side of run.py's (a): one process, one measurement (run with Debian's /usr/bin/python3).

Starts the LocalCluster of ../shared/peers/dask_tasks.py (2 worker processes x 1 thread,
127.0.0.1, client and scheduler in this process), does that script's untimed warm-up map of
2,000 no-ops, then times `reps` x dask_tasks.dist_map(client, N): client.map(noop, range(N),
pure=False) + client.gather, tasks/s = N / wall time from map() to gather() returning. The same
task semantics as dx_bench_distributed's `throughput` (N no-op calls with an int argument that
return it, all results gathered in the caller). Prints one RESULT line per rep, like the C++ side.

Usage: /usr/bin/python3 dask_peer.py PEERS_DIR [N=10000] [reps=1]
"""
import logging
import os
import sys
import time


def main():
    peers = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    sys.path.insert(0, peers)
    import dask_tasks  # the peer script's own functions: noop, dist_map, settle
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    client.wait_for_workers(2)
    startup = time.perf_counter() - t0
    dask_tasks.dist_map(client, 2000)  # warm-up, as in dask_tasks.py
    for r in range(reps):
        d = dask_tasks.dist_map(client, n)
        print(f"RESULT mode=throughput system=dask tasks={n} rep={r} wall_s={d['wall_s']:.4f} "
              f"tasks_per_s={d['tasks_per_s']:.1f} startup_s={startup:.4f} "
              f"head_cpu_us_per_task={d['cpu_main_us_per_task']:.2f} "
              f"workers_cpu_us_per_task={d['cpu_workers_us_per_task']:.2f}", flush=True)
    client.close()
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
