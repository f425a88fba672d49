#!/usr/bin/python3
"""The Dask side of run.py: Dask distributed with its workers far away, one process, one measurement
(run with Debian's /usr/bin/python3 and python3-distributed).

A scheduler in this process (LocalCluster without workers, 127.0.0.1), one dx-link process per
worker that delays both directions of the worker's connection to the scheduler by ONE_WAY_MS, and
one `dask-worker --nthreads 1 --no-nanny` process per link (0: it joins directly). The client, in
this process, maps TASKS calls of time.sleep(MS / 1000) (pure=False) and gathers them; the
makespan is the wall time from map() to gather() returning, as dx_bench_far_live measures it.
--saturation inf sets distributed.scheduler.worker-saturation (the default in 2022.12 is 1.1);
--warm runs the same map once first, untimed (Dask learns task durations within a session).

Usage: /usr/bin/python3 dask_far.py DX_LINK TASKS MS ONE_WAY_MS... [--saturation X] [--warm]
Prints one RESULT line.
"""
import logging
import os
import subprocess
import sys
import time


def sleep_ms(ms, i):
    time.sleep(ms / 1000.0)
    return i


def main():
    args = sys.argv[1:]
    saturation = None
    warm = False
    if "--saturation" in args:
        k = args.index("--saturation")
        saturation = args[k + 1]
        del args[k:k + 2]
    if "--warm" in args:
        warm = True
        args.remove("--warm")
    dx_link, tasks, ms = args[0], int(args[1]), int(args[2])
    one_way = [float(a) for a in args[3:]]

    import dask
    if saturation is not None:
        dask.config.set({"distributed.scheduler.worker-saturation": float(saturation)})
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=0, processes=True, host="127.0.0.1", scheduler_port=0,
                           dashboard_address=None, silence_logs=logging.ERROR)
    address = cluster.scheduler_address  # tcp://127.0.0.1:PORT
    links, workers = [], []
    try:
        for d in one_way:
            target = address
            if d > 0:
                link = subprocess.Popen([dx_link, "--to", address.replace("tcp://", ""), "--delay-ms", str(d)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                links.append(link)
                target = "tcp://" + link.stdout.readline().strip()
            env = dict(os.environ)
            if saturation is not None:
                env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = saturation
            workers.append(subprocess.Popen(
                ["/usr/bin/dask-worker", target, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                 "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        client = Client(cluster)
        client.wait_for_workers(len(one_way), timeout=60)
        time.sleep(1.2)  # as dx's side: a few heartbeats over the links first

        def run():
            t0 = time.perf_counter()
            fs = client.map(sleep_ms, [ms] * tasks, range(tasks), pure=False)
            client.gather(fs)
            return time.perf_counter() - t0

        if warm:
            run()
        wall = run()
        ideal = tasks * ms / 1000.0 / len(one_way)
        links_ms = ",".join(str(int(2 * d)) for d in one_way)
        print(f"RESULT mode=makespan system=dask saturation={saturation or 'default'} links_ms={links_ms} "
              f"tasks={tasks} task_ms={ms} warm={int(warm)} makespan_s={wall:.4f} ideal_s={ideal:.4f} "
              f"efficiency={ideal / wall:.4f}", flush=True)
        client.close()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
        for link in links:
            link.stdin.close()
            link.wait(timeout=10)
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
