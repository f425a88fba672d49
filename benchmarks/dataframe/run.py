#!/usr/bin/env python3
"""Dataframe: dx::dataframe against pandas 1.5 and dask.dataframe (threaded scheduler, 2 threads,
8 partitions) on the same 10,000,000 rows (standard library only; the peers run in peer.py under
--python, Debian's interpreter with pandas and dask).

Data: key int64 uniform in [0, 1000), value float64 uniform in [0, 1), numpy default_rng(42) (the
data of ../shared/peers/dataframe.py), written once by `peer.py generate` to --data-dir as raw
little-endian arrays (key.i64, value.f64) and first_1M.csv (the first 1,000,000 rows, pandas
to_csv(index=False)). dx_bench_dataframe and peer.py both load those files, untimed.

DuckDB (the npm package @duckdb/node-api, its version pinned by duckdb/package.json and
duckdb/package-lock.json; install it with `npm ci` in benchmarks/dataframe/duckdb; Debian's
nodejs runs duckdb/duckdb_peer.mjs, threads=2) answers the same operations as SQL on the same
data, loaded into an in-memory table; it is left out with --no-duckdb.

Operations (dx / pandas; dask as pandas with .compute(), or .persist() for sort and read_csv; dask
runs only these four):
  groupby      df.groupby({"key"}).agg({{"value", dx::agg::sum}}).compute()
               / df.groupby("key")["value"].sum()
  filter_mean  df.filter(df["value"] > 0.5).agg({{"value", dx::agg::mean}}).compute()
               / df[df["value"] > 0.5]["value"].mean()
  sort         df.sort_values({"value"}).compute() (the whole sorted table) / df.sort_values("value")
  read_csv     dx::dataframe::read_csv(cl, path).compute() / pd.read_csv(path)
  topk         df.nlargest(5, {"value"}).compute() / df.nlargest(5, "value")
  join         df.join(dim, {"key"}).compute() / df.merge(dim, on="key")   (dim: key 0..999 ->
               weight = 1 + key / 1000; every row matches one)
  join_agg     the join, then with_column("vw", value * weight).groupby({"key"}) sum
               / (m["value"] * m["weight"]).groupby(m["key"]).sum()

Each round runs, for every operation, dx (a fresh `dx_bench_dataframe OP DATA_DIR REPS` process:
load, one warm-up, REPS timed and checked calls), pandas and dask (REPS timed calls each in one
persistent peer.py process that loaded the data and warmed every call up once), in an order that
rotates from round to round. A round's figure for a system is the median of its REPS calls; the
table gives the median [min-max] of those over the rounds, the speed-up as the ratio of the
medians (and the median [min-max] of the per-round ratios), and dx's median as a multiple of the
memory-bandwidth floor: the bytes the operation must at least move / --triad-gbps (25.2 GB/s, the
2-thread STREAM-like triad of ../shared/BENCHMARKS.md):
  groupby      160 MB: read key and value once (the 1,000 sums are negligible)
  filter_mean   80 MB: read value once (the condition and the mean are on the same column)
  sort         320 MB: read both columns once and write the sorted 160 MB once (a one-pass
               bound; a real sort makes several passes)
  read_csv     the file's bytes read once + 16 MB of columns written
  topk          80 MB: read value once
  join         400 MB: read key and value, write key, value and weight
  join_agg     160 MB: read key and value once
Each round also runs `dx_bench_dataframe memory` and `peer.py memory` (fresh processes, order
alternating): the peak RSS during one groupby-sum against the 160 MB of raw columns; and
`dx_bench_dataframe memory DATA_DIR sort`: the whole process's peak RSS during one sort (input
table, temporaries and the sorted table) against the same 160 MB.

--busy-core runs a spinning process (a busy loop pinned to nothing, so the kernel shares the
cores among it and the benchmark) for the whole run, as another tenant of a shared machine would:
the figures then say how each system holds up with one core taken.

Usage:  python3 benchmarks/dataframe/run.py --bin-dir BUILD [--rounds 5] [--reps 3]
            [--data-dir /tmp/dx-bench-dataframe] [--regenerate] [--ops groupby,filter_mean,sort,read_csv,topk,join,join_agg]
            [--no-dask] [--python /usr/bin/python3] [--triad-gbps 25.2] [--max-load X] [--csv FILE]
            [--busy-core] [--no-duckdb] [--node /usr/bin/node]
BUILD is a build tree (its benchmarks/dataframe/dx_bench_dataframe is used) or its benchmarks folder.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import REPO, find_binary, loadavg, parse, run_results, write_rows  # noqa: E402  (benchmarks/bench_util.py)

OPS = ["groupby", "filter_mean", "sort", "read_csv", "topk", "join", "join_agg"]
DASK_OPS = {"groupby", "filter_mean", "sort", "read_csv"}
LABELS = {"groupby": "groupby-sum", "filter_mean": "filter + mean", "sort": "sort by value",
          "read_csv": "read_csv 1,000,000 rows", "topk": "top 5 by value (nlargest)",
          "join": "inner join with the 1,000-row dimension, materialized",
          "join_agg": "join, value * weight, groupby key, sum"}
# Speed-up over pandas asked for: on a quiet machine, and with one core kept busy (--busy-core).
TARGET = {"groupby": 3.0, "filter_mean": 3.0, "sort": 5.0, "read_csv": 2.0, "topk": 1.0, "join": 1.0,
          "join_agg": 1.0}
TARGET_BUSY = {"sort": 2.0}
ROWS = 10_000_000
RAW_BYTES = ROWS * 16


def floor_bytes(op, csv_bytes):
    return {"groupby": RAW_BYTES, "filter_mean": ROWS * 8, "sort": 2 * RAW_BYTES,
            "read_csv": csv_bytes + 1_000_000 * 16, "topk": ROWS * 8, "join": RAW_BYTES + ROWS * 24,
            "join_agg": RAW_BYTES}[op]


def dx_binary(bin_dir):
    for rel in (os.path.join("benchmarks", "dataframe", "dx_bench_dataframe"),
                os.path.join("dataframe", "dx_bench_dataframe")):
        for base in (bin_dir, os.path.join(REPO, bin_dir)):
            cand = os.path.join(base, rel)
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return os.path.abspath(cand)
    return find_binary(os.path.join(bin_dir, "dataframe", "dx_bench_dataframe"))


def wait_for_load(max_load):
    """Waits (60 s steps, at most 20 minutes) until the 1-minute load is at most max_load."""
    waited = 0
    while float(loadavg().split()[0]) > max_load and waited < 1200:
        print(f"loadavg {loadavg()} > {max_load}: waiting 60 s", flush=True)
        time.sleep(60)
        waited += 60
    return waited


class Peer:
    """A persistent peer process: peer.py serve (the pandas and dask frames) or duckdb_peer.mjs."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.setup = None
        for line in self._lines("READY"):
            if line.startswith("RESULT"):
                self.setup = parse(line)

    def _lines(self, until):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"peer.py exited (code {self.proc.poll()}) before '{until}'")
            line = line.strip()
            if line == until:
                return
            if line.startswith("ERROR"):
                raise RuntimeError(f"peer.py: {line}")
            yield line

    def run(self, op, system, reps):
        self.proc.stdin.write(f"run {op} {system} {reps}\n")
        self.proc.stdin.flush()
        return [parse(line) for line in self._lines("DONE") if line.startswith("RESULT")]

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt_s(xs):
    if not xs:
        return "-"
    med, lo, hi = summary(xs)
    digits = 4 if med < 0.1 else 3
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def fmt_x(xs, digits=2):
    if not xs:
        return "-"
    med, lo, hi = summary(xs)
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def git_state():
    try:
        return subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=30).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3, help="timed calls per system, operation and round")
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "dx-bench-dataframe"))
    ap.add_argument("--regenerate", action="store_true", help="rewrite the data files even if present")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--no-duckdb", action="store_true",
                    help="leave DuckDB out (it runs from benchmarks/dataframe/duckdb: npm ci there first)")
    ap.add_argument("--node", default="/usr/bin/node", help="Node.js for the DuckDB peer")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with pandas and dask")
    ap.add_argument("--triad-gbps", type=float, default=25.2)
    ap.add_argument("--max-load", type=float, default=None,
                    help="before each round, wait until the 1-minute load is at most this")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per dx process")
    ap.add_argument("--csv", help="write the raw samples here")
    ap.add_argument("--busy-core", action="store_true",
                    help="keep one core busy with a spinning process for the whole run")
    a = ap.parse_args()
    ops = [op for op in a.ops.split(",") if op]
    for op in ops:
        if op not in OPS:
            sys.exit(f"run.py: unknown operation {op} (one of {', '.join(OPS)})")
    binary = dx_binary(a.bin_dir)
    systems = ["dx", "pandas"] + ([] if a.no_dask else ["dask_threads"])
    duckdb_dir = os.path.join(HERE, "duckdb")
    if not a.no_duckdb:
        if not os.path.isdir(os.path.join(duckdb_dir, "node_modules", "@duckdb", "node-api")):
            sys.exit(f"run.py: DuckDB is not installed: run `npm ci` in {duckdb_dir} (or pass --no-duckdb)")
        systems.append("duckdb")

    print("date:", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "| host:", platform.platform(), "| cpus:", os.cpu_count(), "| loadavg:", loadavg(),
          "| dx:", git_state(), "|", binary, "| busy core:", "yes" if a.busy_core else "no", flush=True)

    files = [os.path.join(a.data_dir, f) for f in ("key.i64", "value.f64", "first_1M.csv")]
    if a.regenerate or not all(os.path.exists(f) for f in files) or os.path.getsize(files[0]) != ROWS * 8:
        p = subprocess.run([a.python, os.path.join(HERE, "peer.py"), "generate", a.data_dir], capture_output=True,
                           text=True, timeout=600)
        if p.returncode != 0:
            sys.exit(f"run.py: peer.py generate failed: {p.stderr.strip()[-800:]}")
        print("data:", p.stdout.strip(), flush=True)
    csv_bytes = os.path.getsize(files[2])
    print(f"data: {a.data_dir} ({ROWS:,} rows; first_1M.csv {csv_bytes / 1e6:.1f} MB)", flush=True)

    spinner = None
    if a.busy_core:
        spinner = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"])
        print(f"busy core: spinning process {spinner.pid} runs beside the benchmark", flush=True)
    try:
        return measure(a, ops, binary, systems, csv_bytes)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def measure(a, ops, binary, systems, csv_bytes):
    t_start = time.time()
    peer = Peer([a.python, os.path.join(HERE, "peer.py"), "serve", a.data_dir] + (["--no-dask"] if a.no_dask else []))
    print("peer:", " ".join(f"{k}={v}" for k, v in peer.setup.items()), flush=True)
    duck = None
    if "duckdb" in systems:
        duck = Peer([a.node, os.path.join(HERE, "duckdb", "duckdb_peer.mjs"), a.data_dir, "2"])
        print("duckdb peer:", " ".join(f"{k}={v}" for k, v in duck.setup.items()), flush=True)

    rows = []  # one dict per timed call or memory run
    failures = []
    try:
        for r in range(a.rounds):
            waited = wait_for_load(a.max_load) if a.max_load is not None else 0
            k = r % len(systems)
            order = systems[k:] + systems[:k]
            for op in ops:
                for system in order:
                    if system == "dask_threads" and op not in DASK_OPS:
                        continue
                    if system == "dx":
                        res = run_results([binary, op, a.data_dir, str(a.reps)], a.timeout)
                        if res is None:
                            failures.append(f"round {r + 1} dx {op}")
                            continue
                        res = [d for d in res if d.get("phase") == "timed"]
                    elif system == "duckdb":
                        res = duck.run(op, system, a.reps)
                    else:
                        res = peer.run(op, system, a.reps)
                    for d in res:
                        d.update(round=r + 1)
                        rows.append(d)
            if not a.no_memory:
                mem = [("dx", [binary, "memory", a.data_dir]),
                       ("pandas", [a.python, os.path.join(HERE, "peer.py"), "memory", a.data_dir])]
                if "sort" in ops:
                    mem.append(("dx", [binary, "memory", a.data_dir, "sort"]))
                for system, cmd in (mem if r % 2 == 0 else mem[::-1]):
                    res = run_results(cmd, a.timeout)
                    if res is None:
                        failures.append(f"round {r + 1} {system} memory")
                    for d in res or []:
                        d.update(round=r + 1)
                        rows.append(d)
            note = f"; waited {waited} s for the load" if waited else ""
            print(f"round {r + 1}/{a.rounds} done (order {', '.join(order)}{note}), "
                  f"loadavg {loadavg()}, {time.time() - t_start:.0f} s", flush=True)
    finally:
        peer.close()
        if duck is not None:
            duck.close()

    if a.csv:
        write_rows(a.csv, rows, first=("round", "system", "op", "phase", "rep", "seconds", "rows"))

    def per_round(system, op):
        """The median of each round's timed calls, by round."""
        out = {}
        for rr in range(1, a.rounds + 1):
            xs = [float(d["seconds"]) for d in rows if d.get("system") == system and d.get("op") == op
                  and d.get("phase") == "timed" and d["round"] == rr]
            if xs:
                out[rr] = statistics.median(xs)
        return out

    def ratio_cells(num, den):
        """Ratio of the medians, and the median [min-max] of the per-round ratios."""
        if not num or not den:
            return "-", None
        ratio = statistics.median(num.values()) / statistics.median(den.values())
        rounds = [num[rr] / den[rr] for rr in num if rr in den]
        return f"**{ratio:.2f}x** (per round {fmt_x(rounds)})", ratio

    print()
    print(f"seconds: median [min-max] over {a.rounds} rounds of each round's median of {a.reps} calls; "
          f"speed-up = the peer's median / dx's median; floor = bytes / {a.triad_gbps} GB/s")
    print()
    targets = dict(TARGET, **TARGET_BUSY) if a.busy_core else TARGET
    print("| op | dx | pandas 1.5 | dask threads (2) | DuckDB (2 threads) | dx speed-up vs pandas | "
          "dx speed-up vs dask threads | dx speed-up vs DuckDB | floor (bytes) | dx / floor | target vs pandas | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for op in ops:
        dx, pd_, dk = per_round("dx", op), per_round("pandas", op), per_round("dask_threads", op)
        duck_ = per_round("duckdb", op)
        vs_pd, ratio = ratio_cells(pd_, dx)
        vs_dk, _ = ratio_cells(dk, dx)
        vs_duck, _ = ratio_cells(duck_, dx)
        nbytes = floor_bytes(op, csv_bytes)
        floor_s = nbytes / (a.triad_gbps * 1e9)
        mult = f"{statistics.median(dx.values()) / floor_s:.1f}x" if dx else "-"
        met = "-" if ratio is None else ("yes" if ratio >= targets[op] else "no")
        print(f"| {LABELS[op]} | {fmt_s(list(dx.values()))} | {fmt_s(list(pd_.values()))} | "
              f"{fmt_s(list(dk.values()))} | {fmt_s(list(duck_.values()))} | {vs_pd} | {vs_dk} | {vs_duck} | "
              f"{floor_s * 1e3:.2f} ms ({nbytes / 1e6:.0f} MB) | {mult} | >= {targets[op]:.0f}x | {met} |")

    if not a.no_memory:
        def mem(system, key):
            return [float(d[key]) for d in rows if d.get("system") == system and d.get("op") == "memory"]

        print()
        print(f"groupby-sum peak memory, {RAW_BYTES / 1e6:.0f} MB of raw columns; median [min-max] over "
              f"{a.rounds} fresh processes; peak = VmHWM reset after the frame is built")
        print()
        print("| system | (peak during groupby - RSS after building) / raw | whole-process peak during groupby / raw | "
              "RSS after building, MB | target | met |")
        print("|---|---|---|---|---|---|")
        for system in ("dx", "pandas"):
            extra, peak = mem(system, "extra_over_raw"), mem(system, "peak_over_raw")
            if not peak:
                continue
            built = [x / 1024 for x in mem(system, "rss_built_kb")]
            target = "peak / raw <= 1.5" if system == "dx" else ""
            met = ("yes" if max(peak) <= 1.5 else "no") if system == "dx" else ""
            reset = "" if all(mem(system, "hwm_reset")) else " (VmHWM could not be reset)"
            print(f"| {system} | {fmt_x(extra, 3)} | {fmt_x(peak, 3)}{reset} | {fmt_x(built, 0)} | {target} | {met} |")
        sort_peak = [float(d["peak_over_raw"]) for d in rows if d.get("op") == "memory_sort"]
        if sort_peak:
            sort_extra = [float(d["extra_over_raw"]) for d in rows if d.get("op") == "memory_sort"]
            print()
            print(f"sort peak memory (dx), whole process during one sort / {RAW_BYTES / 1e6:.0f} MB table: "
                  f"{fmt_x(sort_peak, 3)} (above the built table: {fmt_x(sort_extra, 3)}); "
                  f"target <= 3; met: {'yes' if max(sort_peak) <= 3 else 'no'}")

    if failures:
        print()
        print("FAILED runs:", "; ".join(failures))
        return 1
    print()
    print(f"total {time.time() - t_start:.0f} s; loadavg {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
