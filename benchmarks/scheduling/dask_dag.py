#!/usr/bin/python3
"""The Dask side of run.py's (2): one process, one cluster (run with Debian's /usr/bin/python3).

Reads the DAG that run.py wrote (first line: the number of tasks; then one line per task with the
indexes of the earlier tasks it depends on; made by ../shared/peers/dask_tasks.py's make_dag),
times 300 x time.sleep(0.001) (what a 1 ms task costs here, as dask_tasks.sleep_cost), starts the
LocalCluster of dask_tasks.py (2 worker processes x 1 thread, 127.0.0.1, client and scheduler in
this process), then runs dask_tasks.run_dag(client, deps, tag) `reps` times: the whole graph
submitted with client.get(dsk, keys, sync=False), each task dask_tasks.work (sleeps 1 ms), waited
for. The first run is the cluster's first graph (reported as model=cold), the later ones come after
it, as the untimed warm-up of dask_tasks.py. The same layout and task semantics as
dx_bench_scheduling's `dag`. Prints one RESULT line per run, like the C++ side.

Usage: /usr/bin/python3 dask_dag.py PEERS_DIR DAG_FILE [reps=2]
"""
import logging
import os
import sys
import time


def read_dag(path):
    with open(path) as f:
        n = int(f.readline())
        deps = [[int(x) for x in f.readline().split()] for _ in range(n)]
    return deps


def main():
    peers = os.path.abspath(sys.argv[1])
    deps = read_dag(sys.argv[2])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    sys.path.insert(0, peers)
    import dask_tasks  # the peer script's own functions: work, run_dag, sleep_cost, settle
    from distributed import Client, LocalCluster

    n = len(deps)
    edges = sum(len(d) for d in deps)
    cp = []
    for d in deps:
        cp.append(1 + max((cp[j] for j in d), default=0))
    sleep_cost = dask_tasks.sleep_cost(300)

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    client.wait_for_workers(2)
    startup = time.perf_counter() - t0
    ideal = n * 0.001 / 2
    ideal_sleep = n * sleep_cost / 2
    for r in range(reps):
        d = dask_tasks.run_dag(client, deps, f"r{r}")
        ms = d["makespan_s"]
        print(f"RESULT mode=dag system=dask policy=dask rep={r} model={'cold' if r == 0 else 'warm'} tasks={n} "
              f"edges={edges} critical_path={max(cp)} makespan_s={ms:.4f} ideal_s={ideal:.4f} "
              f"ideal_sleep_s={ideal_sleep:.4f} sleep_cost_ms={sleep_cost * 1e3:.4f} ratio={ms / ideal:.4f} "
              f"ratio_sleep={ms / ideal_sleep:.4f} startup_s={startup:.4f}", flush=True)
    client.close()
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
