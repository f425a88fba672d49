#!/usr/bin/python3
"""The peer side of the dataframe benchmark: pandas and dask.dataframe (threaded scheduler, 2
threads, 8 partitions) on the data dx_bench_dataframe reads. The workloads are those of
../shared/peers/dataframe.py. Needs Debian's python3-pandas / python3-dask: run with /usr/bin/python3.

  peer.py generate DATA_DIR [--rows 10000000]
      Writes key.i64 (int64 uniform in [0, 1000)) and value.f64 (float64 uniform in [0, 1)) as raw
      little-endian arrays, numpy default_rng(42) drawn in that order (the data of
      peers/dataframe.py), and first_1M.csv: the first 1,000,000 rows, pandas to_csv(index=False).
  peer.py serve DATA_DIR [--no-dask]
      Loads the arrays once (untimed), checks dask against pandas, warms every (operation, system)
      up once, prints `READY`, then answers lines on stdin:
        run OP SYSTEM REPS   OP: groupby, filter_mean, sort, read_csv (pandas, dask_threads);
                             topk, join, join_agg (pandas only)
                             -> one RESULT line per timed call, then DONE
        quit
  peer.py memory DATA_DIR
      A fresh process: loads the frame, resets the peak RSS (/proc/self/clear_refs), runs one
      pandas groupby-sum and prints the peak RSS against the raw column bytes.

Timed calls (time.perf_counter around the call; the result is dropped after the clock stops):
  groupby      df.groupby("key")["value"].sum()                     dask: .compute(**TH)
  filter_mean  df[df["value"] > 0.5]["value"].mean()                dask: .compute(**TH)
  sort         df.sort_values("value")                              dask: .persist(**TH)
  read_csv     pd.read_csv(path)                                    dask: dd.read_csv(path,
                                                                      blocksize="4MB").persist(**TH)
  topk         df.nlargest(5, "value")
  join         df.merge(dim, on="key")           dim: key 0..999, weight = 1 + key / 1000
  join_agg     m = df.merge(dim, on="key"); (m["value"] * m["weight"]).groupby(m["key"]).sum()
with TH = dict(scheduler="threads", num_workers=2) and dd.from_pandas(df, npartitions=8).
"""
import argparse
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Running on a single-machine scheduler")

N_KEYS = 1000
CSV_ROWS = 1_000_000
NPART = 8
TH = dict(scheduler="threads", num_workers=2)
OPS = ["groupby", "filter_mean", "sort", "read_csv"]
SYSTEMS = ["pandas", "dask_threads"]


def paths(data_dir):
    return (os.path.join(data_dir, "key.i64"), os.path.join(data_dir, "value.f64"),
            os.path.join(data_dir, "first_1M.csv"))


def generate(data_dir, rows):
    import numpy as np
    import pandas as pd
    os.makedirs(data_dir, exist_ok=True)
    key_path, value_path, csv_path = paths(data_dir)
    t0 = time.perf_counter()
    rng = np.random.default_rng(42)
    keys = rng.integers(0, N_KEYS, rows, dtype=np.int64)
    values = rng.random(rows)
    keys.astype("<i8").tofile(key_path)
    values.astype("<f8").tofile(value_path)
    pd.DataFrame({"key": keys[:CSV_ROWS], "value": values[:CSV_ROWS]}).to_csv(csv_path, index=False)
    print(f"RESULT system=peer op=generate rows={rows} csv_rows={min(rows, CSV_ROWS)} "
          f"csv_bytes={os.path.getsize(csv_path)} seconds={time.perf_counter() - t0:.3f}", flush=True)


def load_frame(data_dir):
    import numpy as np
    import pandas as pd
    key_path, value_path, _ = paths(data_dir)
    return pd.DataFrame({"key": np.fromfile(key_path, dtype="<i8"), "value": np.fromfile(value_path, dtype="<f8")})


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def memory(data_dir):
    df = load_frame(data_dir)
    raw = len(df) * 16
    rss_built = status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = 1
    except OSError:
        reset = 0
    t0 = time.perf_counter()
    res = df.groupby("key")["value"].sum()
    seconds = time.perf_counter() - t0
    hwm = status_kb("VmHWM")
    assert len(res) == N_KEYS
    print(f"RESULT system=pandas op=memory rows={len(df)} raw_bytes={raw} rss_built_kb={rss_built} "
          f"hwm_reset={reset} hwm_kb={hwm} extra_over_raw={(hwm - rss_built) * 1024 / raw:.4f} "
          f"peak_over_raw={hwm * 1024 / raw:.4f} seconds={seconds:.4f}", flush=True)


def serve(data_dir, with_dask=True):
    import numpy as np
    import pandas as pd
    if with_dask:
        import dask
        import dask.dataframe as dd
    _, _, csv_path = paths(data_dir)

    t0 = time.perf_counter()
    df = load_frame(data_dir)
    ddf = dd.from_pandas(df, npartitions=NPART) if with_dask else None
    load_s = time.perf_counter() - t0

    def pandas_sort():
        return df.sort_values("value")

    dim = pd.DataFrame({"key": np.arange(N_KEYS, dtype=np.int64), "weight": 1 + np.arange(N_KEYS) / 1000})

    def pandas_join_agg():
        m = df.merge(dim, on="key")
        return (m["value"] * m["weight"]).groupby(m["key"]).sum()

    ops = {
        ("topk", "pandas"): lambda: df.nlargest(5, "value"),
        ("join", "pandas"): lambda: df.merge(dim, on="key"),
        ("join_agg", "pandas"): pandas_join_agg,
        ("groupby", "pandas"): lambda: df.groupby("key")["value"].sum(),
        ("groupby", "dask_threads"): lambda: ddf.groupby("key")["value"].sum().compute(**TH),
        ("filter_mean", "pandas"): lambda: df[df["value"] > 0.5]["value"].mean(),
        ("filter_mean", "dask_threads"): lambda: ddf[ddf["value"] > 0.5]["value"].mean().compute(**TH),
        ("sort", "pandas"): pandas_sort,
        ("sort", "dask_threads"): lambda: ddf.sort_values("value").persist(**TH),
        ("read_csv", "pandas"): lambda: pd.read_csv(csv_path),
        ("read_csv", "dask_threads"): lambda: dd.read_csv(csv_path, blocksize="4MB").persist(**TH),
    }
    if not with_dask:
        ops = {k: v for k, v in ops.items() if k[1] != "dask_threads"}
    rows_of = {"groupby": len(df), "filter_mean": len(df), "sort": len(df), "read_csv": CSV_ROWS, "topk": len(df),
               "join": len(df), "join_agg": len(df)}

    # Checks (untimed), which are also the warm-up of every (operation, system).
    t0 = time.perf_counter()
    ref_g = ops[("groupby", "pandas")]().sort_index()
    assert abs(ref_g.sum() - df["value"].sum()) < 1e-6, "pandas groupby total"
    ref_m = ops[("filter_mean", "pandas")]()
    s = ops[("sort", "pandas")]()
    assert len(s) == len(df) and s["value"].is_monotonic_increasing, "pandas sort"
    del s
    c = ops[("read_csv", "pandas")]()
    assert len(c) == CSV_ROWS and int(c["key"].sum()) == int(df["key"].iloc[:CSV_ROWS].sum()), "pandas read_csv"
    del c
    if with_dask:
        g = ops[("groupby", "dask_threads")]().sort_index()
        assert len(ref_g) == N_KEYS and np.allclose(g.values, ref_g.values), "dask groupby"
        assert abs(ops[("filter_mean", "dask_threads")]() - ref_m) < 1e-9, "dask filter_mean"
        s = ops[("sort", "dask_threads")]()
        mono = s.map_partitions(lambda p: pd.Series([p["value"].is_monotonic_increasing]),
                                meta=(None, bool)).compute(**TH)
        mins = s.map_partitions(lambda p: pd.Series([p["value"].min() if len(p) else np.nan]),
                                meta=(None, float)).compute(**TH).dropna()
        assert bool(mono.all()) and mins.is_monotonic_increasing and len(s) == len(df), "dask sort"
        del s
        assert len(ops[("read_csv", "dask_threads")]()) == CSV_ROWS, "dask read_csv"
    top = ops[("topk", "pandas")]()
    assert list(top["value"]) == sorted(df["value"].nlargest(5), reverse=True), "pandas topk"
    assert len(ops[("join", "pandas")]()) == len(df), "pandas join"
    ja = ops[("join_agg", "pandas")]()
    assert len(ja) == N_KEYS and abs(ja.sum() - (df["value"] * (1 + df["key"] / 1000)).sum()) < 1e-3, "pandas join_agg"
    dask_version = dask.__version__ if with_dask else "none"
    print(f"RESULT system=peer op=setup rows={len(df)} pandas={pd.__version__} dask={dask_version} "
          f"numpy={np.__version__} load_s={load_s:.3f} check_and_warmup_s={time.perf_counter() - t0:.3f}",
          flush=True)
    print("READY", flush=True)

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] != "run" or len(words) != 4 or (words[1], words[2]) not in ops:
            print(f"ERROR bad command: {line.strip()}", flush=True)
            continue
        op, system, reps = words[1], words[2], int(words[3])
        fn = ops[(op, system)]
        for rep in range(1, reps + 1):
            t0 = time.perf_counter()
            res = fn()
            seconds = time.perf_counter() - t0
            del res
            print(f"RESULT system={system} op={op} phase=timed rep={rep} rows={rows_of[op]} seconds={seconds:.6f}",
                  flush=True)
        print("DONE", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["generate", "serve", "memory"])
    ap.add_argument("data_dir")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--no-dask", action="store_true", help="serve: pandas alone")
    a = ap.parse_args()
    if a.mode == "generate":
        generate(a.data_dir, a.rows)
    elif a.mode == "serve":
        return serve(a.data_dir, with_dask=not a.no_dask)
    else:
        memory(a.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
