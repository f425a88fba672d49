#!/usr/bin/env python3
"""Durable workflows against their targets (standard library only, plus ../shared/peers/dask_tasks.py
for the DAG and Dask).

Builds nothing: give it the dx_bench_workflow binary of a Release build. Runs every measurement
twice over: on the machine as it is ("quiet"), then with one core kept busy by a spinning process
this script starts and stops ("busy core", as ../shared/TOOLS.md asks for a shared machine).
In each setting:
  (1) steps: one process (`steps N ROUNDS`): per round, N independent no-op steps as a journaled
      workflow, the same calls through cl.submit, and the workflow without a journal, in an order
      that turns from round to round; steps/s and the per-round ratios to cl.submit.
  (2) resume: ROUNDS processes (`resume N`): a child head runs N no-op steps journaled, is killed
      with SIGKILL once the journal holds N/2 SUCCEEDED, and the run is resumed in the benchmark's
      own process: seconds from workflow_run::resume() to the first step a worker starts (an upper
      bound of the first dispatch) and the steps SUCCEEDED in the journal at the kill that ran again.
  (3) map_auto: one process (`map_auto ITEMS ROUNDS --per-item M`): a split of ITEMS indices of a
      10 us function on 2 worker processes with chunk auto, each size of a fixed sweep, and one
      subtask per item on M indices (its time scaled to ITEMS: said so in the table).
  (4) dag: per round, one dx process with the journal on and one with it off (`dag FILE 2`, the
      first run of each is in a fresh cluster, the second after it) and one Dask process
      (../scheduling/dask_dag.py: dask_tasks.run_dag on LocalCluster 2 x 1, twice), the order
      reversed every other round; FILE is dask_tasks.make_dag(2000, 3, 12345), written here by
      that very function. Ideal: 2000 x 1 ms / 2, as dask_tasks.py computes it. Dask needs
      Debian's /usr/bin/python3 with python3-distributed; when `import dask.distributed` fails
      there, the peer is reported unavailable and the recorded 2.51x of ../shared/BENCHMARKS.md is
      shown instead (NOT measured in the same run).

Prints a Markdown table per setting: median [min-max], the target and whether it is met.

Usage:  python3 benchmarks/workflow/run.py [BINARY] [--rounds 5] [--steps 20000] [--resume-steps 100000]
            [--items 1000000] [--per-item 100000] [--only steps,resume,map_auto,dag] [--settings quiet,busy]
            [--peers DIR] [--python /usr/bin/python3] [--csv FILE] [--timeout 900]
BINARY defaults to build/benchmarks/workflow/dx_bench_workflow.
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
from bench_util import find_binary, loadavg, probe_dask, run_results, write_rows  # noqa: E402  (benchmarks/bench_util.py)
DEFAULT_BIN = os.path.join("build", "benchmarks", "workflow", "dx_bench_workflow")
DEFAULT_PEERS = os.path.join(os.path.dirname(REPO), "shared", "peers")
DASK_DAG = os.path.join(os.path.dirname(HERE), "scheduling", "dask_dag.py")
DASK_RECORDED_DAG_RATIO = 2.51  # ../shared/BENCHMARKS.md, 2,000-task DAG, makespan / ideal (another day)
DAG_ARGS = (2000, 3, 12345)  # make_dag(n, max_deps, seed), as dask_tasks.py's own measurement


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(xs, digits=1):
    med, lo, hi = summary(xs)
    return f"{med:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def write_dag(peers, path):
    sys.path.insert(0, os.path.abspath(peers))
    import dask_tasks  # only make_dag is used here; dask itself is imported by its functions alone
    deps, cp, edges = dask_tasks.make_dag(*DAG_ARGS)
    with open(path, "w") as f:
        f.write(f"{len(deps)}\n")
        for d in deps:
            f.write(" ".join(str(j) for j in d) + "\n")
    return len(deps), cp, edges


class busy_core:
    """One core kept busy by a spinning process, for the duration of a `with` block."""

    def __init__(self, on):
        self.on = on
        self.proc = None

    def __enter__(self):
        if self.on:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.kill()
            self.proc.wait()


def measure(a, binary, setting, dag_file, dask_ok):
    rows = []

    def take(cmd, **extra):
        out = run_results(cmd, a.timeout, env=dict(os.environ, DX_LOG="error")) or []
        for d in out:
            d.update({k: str(v) for k, v in extra.items()})
            d["setting"] = setting
            rows.append(d)
        return out

    only = a.only
    if "steps" in only:
        take([binary, "steps", str(a.steps), str(a.rounds)])
        print(f"[{setting}] steps done, loadavg {loadavg()}", flush=True)
    if "resume" in only:
        for r in range(a.rounds):
            take([binary, "resume", str(a.resume_steps)], round=r + 1)
        print(f"[{setting}] resume done, loadavg {loadavg()}", flush=True)
    if "map_auto" in only:
        take([binary, "map_auto", str(a.items), str(a.rounds), "--per-item", str(a.per_item)])
        print(f"[{setting}] map_auto done, loadavg {loadavg()}", flush=True)
    if "dag" in only:
        for r in range(a.rounds):
            jobs = [("on", [binary, "dag", dag_file, "2", "--journal", "on"]),
                    ("off", [binary, "dag", dag_file, "2", "--journal", "off"])]
            if dask_ok:
                jobs.append(("dask", [a.python, DASK_DAG, a.peers, dag_file, "2"]))
            for name, cmd in (reversed(jobs) if r % 2 else jobs):
                take(cmd, round=r + 1, journal=name if name != "dask" else "-")
        print(f"[{setting}] dag done, loadavg {loadavg()}", flush=True)
    return rows


def table(a, rows, setting, dask_ok):
    def sel(mode, key, **match):
        return [float(d[key]) for d in rows
                if d.get("setting") == setting and d.get("mode") == mode
                and all(d.get(k) == v for k, v in match.items())]

    print()
    print(f"### {setting}: median [min-max]")
    print()
    print("| benchmark | dx | peer / reference | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    if "steps" in a.only:
        on = sel("steps", "steps_per_s", variant="journal_on")
        plain = sel("steps", "steps_per_s", variant="plain_submit")
        off = sel("steps", "steps_per_s", variant="journal_off")
        on_r = sel("steps_ratio", "on_vs_plain")
        off_r = sel("steps_ratio", "off_vs_plain")
        if on and plain and off:
            print(f"| (1) {a.steps:,} no-op steps, journal on (fsync per group), steps/s | {fmt(on, 0)} | | | "
                  f">= 20,000 | {'yes' if statistics.median(on) >= 20000 else 'no'} |")
            print(f"| (1) journal on / cl.submit, per round | {fmt(on_r, 3)}x | cl.submit {fmt(plain, 0)} steps/s | "
                  f"{fmt(on_r, 3)}x | >= 0.5x | {'yes' if statistics.median(on_r) >= 0.5 else 'no'} |")
            print(f"| (1) journal off, steps/s; / cl.submit per round | {fmt(off, 0)} | cl.submit | {fmt(off_r, 3)}x | "
                  f">= 0.9x | {'yes' if statistics.median(off_r) >= 0.9 else 'no'} |")
            for v in ("journal_on", "plain_submit", "journal_off"):
                cpu = sel("steps", "head_cpu_us_per_step", variant=v)
                print(f"| (1) head CPU us per step, {v} | {fmt(cpu, 1)} | | | | |")
    if "resume" in a.only:
        first = sel("resume", "first_dispatch_s")
        call = sel("resume", "resume_call_s")
        rerun = sel("resume", "finished_rerun")
        done = sel("resume", "done_at_kill")
        if first:
            print(f"| (2) resume of {a.resume_steps:,} steps ({fmt(done, 0)} SUCCEEDED at the kill): resume() to the "
                  f"first step started on a worker, s | {fmt(first, 3)} | | | < 1 s | "
                  f"{'yes' if max(first) < 1 else ('median only' if statistics.median(first) < 1 else 'no')} |")
            print(f"| (2) resume() call, s | {fmt(call, 3)} | | | | |")
            print(f"| (2) finished steps run again (side-effect marks), all rounds | {int(sum(rerun))} | | | 0 | "
                  f"{'yes' if sum(rerun) == 0 else 'no'} |")
    if "map_auto" in a.only:
        auto = sel("map_auto", "seconds", variant="auto")
        cold = sel("map_auto", "seconds", variant="auto_cold")
        sizes = sorted({int(d["chunk"]) for d in rows if d.get("setting") == setting and d.get("variant") == "fixed"})
        fixed = {c: sel("map_auto", "seconds", variant="fixed", chunk=str(c)) for c in sizes}
        each = sel("map_auto", "seconds", variant="per_item")
        if auto and fixed and each:
            best = min(sizes, key=lambda c: statistics.median(fixed[c]))
            rounds = sorted({d["round"] for d in rows if d.get("setting") == setting and d.get("variant") == "auto"})
            vs_best = [sel("map_auto", "seconds", variant="auto", round=r)[0] /
                       sel("map_auto", "seconds", variant="fixed", chunk=str(best), round=r)[0] for r in rounds]
            vs_each = [sel("map_auto", "seconds", variant="per_item", round=r)[0] /
                       sel("map_auto", "seconds", variant="auto", round=r)[0] for r in rounds]
            chunks = sel("map_auto", "chunks", variant="auto")
            print(f"| (3) {a.items:,} items x 10 us, chunk auto, s ({fmt(chunks, 0)} chunks) | {fmt(auto, 3)} | "
                  f"ideal {a.items * 10e-6 / 2:.2f} s | | | |")
            print(f"| (3) chunk auto, first run in the process (cold model), s | {fmt(cold, 3)} | | | | |")
            print("| (3) fixed chunk sizes, s | "
                  + " / ".join(f"{c:,}: {statistics.median(fixed[c]):.3f}" for c in sizes)
                  + f" | best fixed: {best:,} | | | |")
            print(f"| (3) auto / best fixed ({best:,}), per round | {fmt(vs_best, 3)}x | | {fmt(vs_best, 3)}x | "
                  f"<= 1.3x | {'yes' if statistics.median(vs_best) <= 1.3 else 'no'} |")
            print(f"| (3) one subtask per item, measured on {a.per_item:,} items and scaled to {a.items:,}, s | "
                  f"{fmt(each, 2)} | | per item / auto {fmt(vs_each, 1)}x | >= 10x | "
                  f"{'yes' if statistics.median(vs_each) >= 10 else 'no'} |")
    if "dag" in a.only:
        for rep, label in (("1", "second run in the cluster"), ("0", "first run, fresh cluster")):
            on = sel("dag", "ratio", system="dx", journal="on", rep=rep)
            off = sel("dag", "ratio", system="dx", journal="off", rep=rep)
            dk = sel("dag", "ratio", system="dask", rep=rep)
            if not on:
                continue
            peer = (f"Dask {fmt(dk, 2)}x ideal (same run)" if dk
                    else f"Dask unavailable here; recorded {DASK_RECORDED_DAG_RATIO}x (not same run)")
            faster = (statistics.median(dk) / statistics.median(on)) if dk else None
            print(f"| (4) 2,000-step DAG, 1 ms steps, journaled workflow, makespan / ideal, {label} | {fmt(on, 3)}x | "
                  f"{peer} | {f'{faster:.2f}x faster than Dask' if faster else ''} | <= 1.2x ideal | "
                  f"{'yes' if statistics.median(on) <= 1.2 else 'no'} |")
            print(f"| (4) same without the journal | {fmt(off, 3)}x | | | | |")
        slept = sel("dag", "ratio_sleep", system="dx", journal="on", rep="1")
        if slept:
            print(f"| (4) journaled, second run, / ideal with the measured 1 ms sleep | {fmt(slept, 3)}x | "
                  f"{'Dask ' + fmt(sel('dag', 'ratio_sleep', system='dask', rep='1'), 2) + 'x' if dask_ok else ''} "
                  f"| | | |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=DEFAULT_BIN)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--resume-steps", type=int, default=100000)
    ap.add_argument("--items", type=int, default=1000000)
    ap.add_argument("--per-item", type=int, default=100000, help="items measured one subtask per item")
    ap.add_argument("--only", default="steps,resume,map_auto,dag")
    ap.add_argument("--settings", default="quiet,busy", help="quiet, busy (one core kept busy), or both")
    ap.add_argument("--peers", default=DEFAULT_PEERS)
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with dask.distributed")
    ap.add_argument("--csv", default=os.path.join(tempfile.gettempdir(), "dx-bench-workflow.csv"),
                    help="where the raw samples go (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per process")
    a = ap.parse_args()
    a.only = set(a.only.split(","))
    binary = find_binary(a.binary)

    print("binary:", binary)
    print("date:", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "| host:", platform.platform(), "| cpus:", os.cpu_count(), "| loadavg:", loadavg(), flush=True)
    tmp = tempfile.mkdtemp(prefix="dx-bench-workflow-")
    try:
        dag_file = os.path.join(tmp, "dag.txt")
        dask_ok = False
        if "dag" in a.only:
            n, cp, edges = write_dag(a.peers, dag_file)
            print(f"DAG: make_dag{DAG_ARGS}: {n} tasks, {edges} edges, critical path {cp} tasks", flush=True)
            dask_ok = probe_dask(a.python)
        rows = []
        settings = a.settings.split(",")
        for setting in settings:
            with busy_core(setting == "busy"):
                rows += measure(a, binary, setting, dag_file, dask_ok)
        write_rows(a.csv, rows, first=("setting", "mode", "variant", "round", "system", "journal", "rep"))
        print(f"raw samples: {a.csv}")
        for setting in settings:
            table(a, rows, setting, dask_ok)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
