#!/usr/bin/env python3
"""dx's scheduler on a live cluster: against its own round-robin baseline and against Dask
distributed (standard library only, plus ../shared/peers/dask_tasks.py for the DAG).

Builds nothing: give it the dx_bench_scheduling binary of a Release build. First it writes the DAG
of dask_tasks.make_dag(2000, 3, 12345) (made by that very function) to a temporary file, and, for
(3), trains a cost model with one `hetero predictive --cost-model FILE` run (not in the table).
Then ROUNDS rounds, each measurement a fresh process, the order of the processes of each group
reversed from round to round:
  (1) heterogeneous workers (`hetero POLICY`): a head that runs no tasks and two 1-thread worker
      processes, the second slowed 3x; 2,000 tasks of 5 ms (15 ms on the slow worker) submitted at
      once; makespan from the first submit to the last result. predictive with an empty cost model
      (persist_cost_model(false): learning is part of the measurement) against round_robin; the
      fast worker's share of the tasks; ideal makespan 2000 x 5 ms x 3 / 4 = 7.5 s.
  (2) random DAG (`dag POLICY DAG_FILE --reps 2`): local_processes(2) x 1 thread, the head runs no
      tasks; every task sleeps 1 ms and gets its dependencies' results as arguments; policies
      predictive (the target), dask_like and least_loaded (for context), and Dask (dask_dag.py:
      dask_tasks.run_dag on LocalCluster 2 x 1) on the same DAG. Each process runs the DAG twice:
      the first run in a fresh cluster ("cold"), then again ("warm", after what the first taught
      it; Dask's recorded 2.51x was measured after such a warm-up). Ideal: 2000 x 1 ms / 2, and
      2000 x (measured cost of a 1 ms sleep, each side its own) / 2. Dask needs Debian's
      /usr/bin/python3 with python3-distributed; when `import dask.distributed` fails there, the
      peer is reported unavailable and only the recorded 2.51x of ../shared/BENCHMARKS.md is shown
      (NOT measured in the same run).
  (3) forecast: in the runs above, when a quarter of the tasks have finished the binary calls
      cl.forecast() and later compares remaining_seconds with the time actually left:
      |predicted - actual| / actual. For (1) also with a warm model: `hetero predictive
      --cost-model COPY`, COPY a fresh copy (each round) of the model the training run saved.

Prints a Markdown table: median [min-max] over the rounds, the ratio, the target (from the task
list: predictive >= 1.3x faster than round_robin; the DAG at most 1.1x the ideal; the forecast
within 15%) and whether it is met.

Usage:  python3 benchmarks/scheduling/run.py [BINARY] [--rounds 5] [--tasks 2000] [--csv FILE]
            [--peers DIR] [--python /usr/bin/python3] [--only 1,2,3] [--timeout 300] [--dag-timeout 15]
BINARY defaults to build/benchmarks/scheduling/dx_bench_scheduling. --only 3 alone runs the
warm-model (1) runs only; (1) and (2) carry their own forecasts.
"""
import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import find_binary, loadavg, parse, probe_dask, write_rows  # noqa: E402  (benchmarks/bench_util.py)
DEFAULT_BIN = os.path.join("build", "benchmarks", "scheduling", "dx_bench_scheduling")
DEFAULT_PEERS = os.path.join(os.path.dirname(REPO), "shared", "peers")
DASK_RECORDED_DAG_RATIO = 2.51  # ../shared/BENCHMARKS.md, 2,000-task DAG, makespan / ideal (another day)
DAG_ARGS = (2000, 3, 12345)  # make_dag(n, max_deps, seed), as dask_tasks.py's own measurement
CONTEXT_POLICIES = ("dask_like", "least_loaded")


def run(cmd, timeout):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"TIMEOUT after {timeout:.0f} s: {' '.join(cmd)}", flush=True)
        return None
    if p.stderr.strip():  # dx's warnings and alerts, kept for the report
        for line in p.stderr.strip().splitlines()[-5:]:
            print(f"  stderr of {os.path.basename(cmd[0])} {' '.join(cmd[1:3])}: {line[:300]}", flush=True)
    if p.returncode != 0:
        print(f"exit code {p.returncode}: {' '.join(cmd)}", flush=True)
    # a run that missed its deadline still reports what it measured before, and the stall itself
    return [parse(line) for line in p.stdout.splitlines() if line.startswith("RESULT")]


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(s, digits=2):
    med, lo, hi = s
    return f"{med:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def pct(s):
    med, lo, hi = s
    return f"{med * 100:.1f}% [{lo * 100:.1f}-{hi * 100:.1f}%]"


def write_dag(peers, path):
    sys.path.insert(0, os.path.abspath(peers))
    import dask_tasks  # only make_dag is used here; dask itself is imported by its functions alone
    deps, cp, edges = dask_tasks.make_dag(*DAG_ARGS)
    with open(path, "w") as f:
        f.write(f"{len(deps)}\n")
        for d in deps:
            f.write(" ".join(str(j) for j in d) + "\n")
    return len(deps), cp, edges


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=DEFAULT_BIN)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=2000, help="tasks of (1)")
    ap.add_argument("--peers", default=DEFAULT_PEERS)
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with dask.distributed")
    ap.add_argument("--only", default="1,2,3")
    ap.add_argument("--csv", default=os.path.join(tempfile.gettempdir(), "dx-bench-scheduling.csv"),
                    help="where the raw samples go (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per process")
    ap.add_argument("--dag-timeout", type=float, default=15,
                    help="seconds a dx DAG run may take before it counts as stalled (the ideal is 1 s)")
    a = ap.parse_args()
    binary = find_binary(a.binary)
    only = set(a.only.split(","))

    print("binary:", binary)
    print("date:", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "| host:", platform.platform(), "| cpus:", os.cpu_count(), "| loadavg:", loadavg(), flush=True)

    tmp = tempfile.mkdtemp(prefix="dx-bench-scheduling-")
    try:
        return measure(a, binary, only, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(a, binary, only, tmp):
    dag_file = os.path.join(tmp, "dag.txt")
    n_dag, cp, edges = write_dag(a.peers, dag_file)
    print(f"DAG: make_dag{DAG_ARGS}: {n_dag} tasks, {edges} edges, critical path {cp} tasks", flush=True)

    dask_ok = "2" in only and probe_dask(a.python)

    rows = []
    trained = os.path.join(tmp, "cost_model.trained")
    if "3" in only:
        # One run teaches a model what hetero_task costs on the workers fast and slow; each warm run gets a fresh
        # copy, so that every one starts from what exactly one earlier run learned.
        for d in run([binary, "hetero", "predictive", "--tasks", str(a.tasks), "--cost-model", trained],
                     a.timeout) or []:
            d["mode"] = "hetero_training"
            d["round"] = 0
            rows.append(d)
        if not os.path.exists(trained):
            print("training run saved no cost model: warm runs skipped", flush=True)
            only.discard("3")
        else:
            print(f"cost model trained, loadavg {loadavg()}", flush=True)

    hetero = [binary, "hetero"]
    for r in range(a.rounds):
        flip = r % 2 == 1
        jobs = []
        if "1" in only:
            jobs += [("predictive", hetero + ["predictive", "--tasks", str(a.tasks)]),
                     ("round_robin", hetero + ["round_robin", "--tasks", str(a.tasks)])]
        if "3" in only:
            warm = os.path.join(tmp, f"cost_model.round{r + 1}")
            shutil.copyfile(trained, warm)
            jobs.append(("predictive_warm", hetero + ["predictive", "--tasks", str(a.tasks), "--cost-model", warm]))
        if "2" in only:
            dag = ["--reps", "2", "--timeout", str(a.dag_timeout)]
            jobs.append(("dag predictive", [binary, "dag", "predictive", dag_file] + dag))
            for pol in CONTEXT_POLICIES:
                jobs.append((f"dag {pol}", [binary, "dag", pol, dag_file] + dag))
            if dask_ok:
                jobs.append(("dag dask", [a.python, os.path.join(HERE, "dask_dag.py"), a.peers, dag_file, "2"]))
        for _, cmd in (reversed(jobs) if flip else jobs):
            for d in run(cmd, a.timeout) or []:
                d.setdefault("system", "dx")
                d["round"] = r + 1
                rows.append(d)
        print(f"round {r + 1}/{a.rounds} done ({'reversed order' if flip else 'forward order'}), "
              f"loadavg {loadavg()}", flush=True)

    if a.csv:
        print(f"raw samples: {a.csv}", flush=True)
        write_rows(a.csv, rows, first=("round", "mode", "system", "policy"))

    def sel(mode, key, **match):
        return [float(d[key]) for d in rows
                if d.get("mode") == mode and all(d.get(k) == v for k, v in match.items())]

    def paired(mode, key, m1, m2):
        # per round: value under match m2 over value under match m1 (same round, different processes)
        out = []
        for rr in range(1, a.rounds + 1):
            x = sel(mode, key, round=rr, **m1)
            y = sel(mode, key, round=rr, **m2)
            if x and y:
                out.append(y[0] / x[0])
        return out

    print()
    print(f"median [min-max] over {a.rounds} rounds; each measurement a fresh process, both sides in this run")
    print()
    print("| benchmark | dx | peer | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    if "1" in only:
        pred = sel("hetero", "makespan_s", policy="predictive", model="cold")
        rr_ = sel("hetero", "makespan_s", policy="round_robin")
        if pred and rr_:
            ratio = statistics.median(rr_) / statistics.median(pred)
            per_round = paired("hetero", "makespan_s", {"policy": "predictive", "model": "cold"},
                               {"policy": "round_robin"})
            ideal = statistics.median(sel("hetero", "ideal_s", policy="predictive", model="cold"))
            print(f"| (1) {a.tasks:,} tasks of 5 ms, workers 1x and 3x slow: makespan, s (predictive, cold model) | "
                  f"{fmt(summary(pred))} | round_robin {fmt(summary(rr_))} | {ratio:.2f}x faster "
                  f"(per round {fmt(summary(per_round))}x) | >= 1.3x | {'yes' if ratio >= 1.3 else 'no'} |")
            print(f"| (1) makespan / ideal ({ideal:.2f} s) | {fmt(summary([x / ideal for x in pred]))} | "
                  f"round_robin {fmt(summary([x / ideal for x in rr_]))} | | | |")
            print(f"| (1) fast worker's share of the tasks (ideal 75%) | "
                  f"{pct(summary(sel('hetero', 'fast_share', policy='predictive', model='cold')))} | "
                  f"round_robin {pct(summary(sel('hetero', 'fast_share', policy='round_robin')))} | | | |")
            print(f"| (1) learned speed factor slow / fast at the end (true 3) | "
                  f"{fmt(summary(sel('hetero', 'factor_ratio_end', policy='predictive', model='cold')))} | | | | |")
    if "3" in only:
        warm = sel("hetero", "makespan_s", policy="predictive", model="warm")
        if warm:
            ideal = statistics.median(sel("hetero", "ideal_s", policy="predictive", model="warm"))
            print(f"| (1) makespan, s, predictive with a warm model (one earlier run) | {fmt(summary(warm))} | | "
                  f"{fmt(summary([x / ideal for x in warm]))}x ideal | | |")
            print(f"| (1) fast worker's share, warm model | "
                  f"{pct(summary(sel('hetero', 'fast_share', policy='predictive', model='warm')))} | | | | |")
    if "2" in only:
        dxw = sel("dag", "makespan_s", system="dx", policy="predictive", model="warm")
        dxc = sel("dag", "makespan_s", system="dx", policy="predictive", model="cold")
        dkw = sel("dag", "makespan_s", system="dask", model="warm")
        dkc = sel("dag", "makespan_s", system="dask", model="cold")
        ideal = 2000 * 0.001 / 2 if n_dag == 2000 else n_dag * 0.001 / 2
        for label, dx_s, dk_s in (("second run in the cluster", dxw, dkw), ("first run in a fresh cluster", dxc, dkc)):
            if not dx_s:
                continue
            med = statistics.median(dx_s) / ideal
            if dk_s:
                peer = f"Dask {fmt(summary(dk_s))} s = {fmt(summary([x / ideal for x in dk_s]))}x ideal"
                vs = f"{statistics.median(dk_s) / statistics.median(dx_s):.2f}x faster than Dask"
            else:
                peer = f"Dask unavailable here; recorded {DASK_RECORDED_DAG_RATIO}x ideal (not same run)"
                vs = f"{DASK_RECORDED_DAG_RATIO / med:.2f}x faster than Dask's recorded ratio"
            print(f"| (2) {n_dag:,}-task DAG, 1 ms tasks, {label}: makespan, s (predictive) | {fmt(summary(dx_s))} "
                  f"= {fmt(summary([x / ideal for x in dx_s]))}x ideal ({ideal:.2f} s) | {peer} | {vs} | "
                  f"<= 1.1x ideal | {'yes' if med <= 1.1 else 'no'} |")
        for model in ("warm", "cold"):
            xs = sel("dag", "ratio_sleep", system="dx", policy="predictive", model=model)
            ks = sel("dag", "ratio_sleep", system="dask", model=model)
            sl = sel("dag", "sleep_cost_ms", system="dx", policy="predictive", model=model)
            ksl = sel("dag", "sleep_cost_ms", system="dask", model=model)
            if xs:
                print(f"| (2) makespan / ideal with the measured 1 ms sleep ({model}) | {fmt(summary(xs))}x "
                      f"(sleep {statistics.median(sl):.3f} ms) | "
                      f"{'Dask ' + fmt(summary(ks)) + 'x (sleep ' + format(statistics.median(ksl), '.3f') + ' ms)' if ks else '-'}"
                      f" | | | |")
        for pol in CONTEXT_POLICIES:
            xs = sel("dag", "ratio", system="dx", policy=pol, model="warm")
            xc = sel("dag", "ratio", system="dx", policy=pol, model="cold")
            if xs:
                print(f"| (2) makespan / ideal, policy {pol} (context), second / first run | {fmt(summary(xs))}x / "
                      f"{fmt(summary(xc))}x | | | | |")
    stalls = [d for d in rows if d.get("mode") == "stall"]
    for run_, pol in sorted({(d["run"], d["policy"]) for d in stalls}):
        st = [d for d in stalls if d["run"] == run_ and d["policy"] == pol]
        procs = a.rounds if run_ == "dag" else len([d for d in rows if d.get("mode") == "hetero"
                                                    and d.get("policy") == pol]) + len(st)
        print(f"| STALLED: {run_} with policy {pol} | {len(st)} of {procs} processes missed their deadline, "
              f"with {', '.join(d['done'] + ' of ' + d['tasks'] for d in st)} tasks finished | | | | |")
    # (3): the forecast at a quarter of the tasks
    fc_rows = []
    if "1" in only:
        fc_rows.append(("(1) cold model, predictive", "hetero", {"policy": "predictive", "model": "cold"}, True))
    if "3" in only:
        fc_rows.append(("(1) warm model, predictive", "hetero", {"policy": "predictive", "model": "warm"}, True))
    if "2" in only:
        fc_rows.append(("(2) DAG predictive, first run", "dag", {"system": "dx", "policy": "predictive",
                                                                 "model": "cold"}, True))
        fc_rows.append(("(2) DAG predictive, second run", "dag", {"system": "dx", "policy": "predictive",
                                                                  "model": "warm"}, True))
    if "1" in only:
        fc_rows.append(("(1) cold model, round_robin (context)", "hetero", {"policy": "round_robin"}, False))
    for label, mode, match, judged in fc_rows:
        err = sel(mode, "forecast_error", **match)
        if not err:
            continue
        pred = sel(mode, "predicted_remaining_s", **match)
        act = sel(mode, "actual_remaining_s", **match)
        lb = [abs(p - q) / q for p, q in zip(sel(mode, "predicted_lower_bound_s", **match), act)]
        med = statistics.median(err)
        print(f"| (3) forecast at 25% done, {label}: predicted / actual remaining, s | {fmt(summary(pred))} / "
              f"{fmt(summary(act))} | | error {pct(summary(err))} (lower bound's error {pct(summary(lb))}) | "
              f"{'<= 15%' if judged else ''} | {('yes' if med <= 0.15 else 'no') if judged else ''} |")
        w1 = sel(mode, "fc_fast_tasks", **match)
        w2 = sel(mode, "fc_slow_tasks", **match)
        if mode == "hetero" and w1 and w2:
            # where the forecast took the remaining tasks to be: on the fast worker and on the slow one
            print(f"| (3) ... tasks placed on fast / slow at that moment | {fmt(summary(w1), 0)} / "
                  f"{fmt(summary(w2), 0)} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
