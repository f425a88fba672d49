#!/usr/bin/env python3
"""Observability: what metrics, /metrics and the dashboard cost (standard library only).

Builds nothing: give it the benchmarks directory of a Release build (--bin-dir). Three parts, each
preceded by a load check (the 1-minute load average must be at most --max-load; otherwise it waits
60 s at a time, up to 20 minutes, and says so):

  (a) metrics on against off: `dx_bench_distributed throughput N REPS` and the same with
      --metrics-off (options .metrics(false).task_history(0)), a fresh process each, the order
      alternating from round to round; tasks/s and the head's CPU per task. Ratio on/off of the
      medians, and the median [min-max] of each round's ratio.
  (b) /metrics rendering: `dx_bench_metrics_render registry CALLS` (dx::metrics, 10,100 samples)
      and prom_peer.py CALLS (Python's prometheus_client, the same samples, generate_latest()),
      alternating; then `dx_bench_metrics_render cluster CALLS` (a live cluster's runtime metrics
      of 200 task kinds, then combined with the same user series, then GET /metrics). Before the
      rounds both registries are dumped once and compared sample by sample.
  (c) the dashboard with 100,000 tasks: `dx_bench_dashboard N --poll` (two threads polling
      /api/state and /api/tasks as the page does), `dx_bench_dashboard N` (no poller) and
      `dx_bench_dashboard N --history 0` (no poller, no task history: for the head's peak RSS),
      the order rotating from round to round. Then `dx_bench_dashboard N --hold`: once the job is
      done, headless Chromium loads the page (--dump-dom --virtual-time-budget=5000) and must show
      #completed-count = N; a screenshot goes to --artefacts (not into the repository).

Prints Markdown tables: median [min-max] over the rounds.

Usage:  python3 benchmarks/observability/run.py [--bin-dir build/benchmarks] [--only a,b,c]
            [--rounds-a 7] [--reps-a 3] [--rounds-b 5] [--rounds-c 5] [--n 100000] [--calls 50]
            [--max-load 1.5] [--python /usr/bin/python3] [--chromium /usr/bin/chromium]
            [--artefacts DIR] [--csv FILE]
"""
import argparse
import datetime
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import find_binary, loadavg, parse, run_results, write_rows  # noqa: E402  (benchmarks/bench_util.py)


def run(cmd, timeout, env=None):
    return run_results(cmd, timeout, env)


def wait_for_load(max_load, what):
    """Waits (60 s steps, at most 20 minutes) until the 1-minute load is at most max_load."""
    waited = 0
    while True:
        one = float(loadavg().split()[0])
        if one <= max_load or waited >= 1200:
            note = "" if one <= max_load else " (still above the limit after 20 minutes: measuring anyway)"
            print(f"{what}: loadavg {loadavg()} after waiting {waited} s{note}", flush=True)
            return loadavg()
        print(f"{what}: loadavg {loadavg()} > {max_load}: waiting 60 s", flush=True)
        time.sleep(60)
        waited += 60


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(xs, digits=1, scale=1.0):
    med, lo, hi = summary([x * scale for x in xs])
    return f"{med:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


# ---- (b) sample-by-sample comparison of the two registries ---------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples_of(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        labels = tuple(sorted(LABEL.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def compare_registries(render_bin, python, env):
    dx = subprocess.run([render_bin, "dump"], capture_output=True, text=True, timeout=120).stdout
    py = subprocess.run([python, os.path.join(HERE, "prom_peer.py"), "--dump"], capture_output=True, text=True,
                        timeout=300, env=env).stdout
    a, b = samples_of(dx), samples_of(py)
    differ = [k for k in a if k in b and not math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=0)]
    only_dx = [k for k in a if k not in b]
    only_py = [k for k in b if k not in a]
    ok = not differ and not only_dx and not only_py
    print(f"(b) check: dx {len(a):,} samples ({len(dx):,} bytes), prometheus_client {len(b):,} samples "
          f"({len(py):,} bytes): {'the same samples and values' if ok else 'DIFFERENT'}"
          f"{'' if ok else f' ({len(differ)} values differ, {len(only_dx)} only in dx, {len(only_py)} only in Python; e.g. {(differ + only_dx + only_py)[:3]})'}",
          flush=True)
    return ok, len(a)


# ---- (c) Chromium on the page of a finished 100,000-task run -------------------------------------

def chromium_check(dash_bin, n, chromium, artefacts, timeout):
    proc = subprocess.Popen([dash_bin, str(n), "--hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url, run_row = None, None
    deadline = time.time() + timeout
    for line in proc.stdout:
        if line.startswith("RESULT"):
            d = parse(line)
            if d.get("mode") == "run":
                run_row = d
            if d.get("mode") == "hold":
                url = d["url"]
                break
        if time.time() > deadline:
            break
    result = {"url": url, "run": run_row}
    try:
        if not url:
            print("(c) chromium: the program did not reach the hold point", flush=True)
            return result
        profile = tempfile.mkdtemp(prefix="obench-chromium-")
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}"]
        t0 = time.time()
        p = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True,
                           timeout=180)
        result["dump_s"] = time.time() - t0
        dom = p.stdout
        m = re.search(r'id="completed-count"[^>]*>([^<]*)<', dom)
        result["completed_count"] = m.group(1) if m else None
        m = re.search(r'<body[^>]*data-events="(\d+)"', dom)
        result["events_kept"] = m.group(1) if m else None
        m = re.search(r'id="conn"[^>]*>([^<]*)<', dom)
        result["badge"] = m.group(1) if m else None
        os.makedirs(artefacts, exist_ok=True)
        shot = os.path.join(artefacts, "dashboard_100k.png")
        with open(os.path.join(artefacts, "dashboard_100k.html"), "w") as f:
            f.write(dom)
        shutil.rmtree(profile, ignore_errors=True)
        profile = tempfile.mkdtemp(prefix="obench-chromium-")
        flags[-1] = f"--user-data-dir={profile}"
        subprocess.run(flags + ["--virtual-time-budget=5000", f"--screenshot={shot}", "--window-size=1400,900", url],
                       capture_output=True, text=True, timeout=180)
        shutil.rmtree(profile, ignore_errors=True)
        result["screenshot"] = shot if os.path.exists(shot) else None
        print(f"(c) chromium: #completed-count = {result['completed_count']}, events kept by the page "
              f"{result['events_kept']}, badge '{result['badge']}', --dump-dom took {result['dump_s']:.1f} s, "
              f"screenshot {result['screenshot']}", flush=True)
    finally:
        try:
            proc.communicate("\n", timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join("build", "benchmarks"))
    ap.add_argument("--only", default="a,b,c")
    ap.add_argument("--rounds-a", type=int, default=7)
    ap.add_argument("--reps-a", type=int, default=3, help="timed throughput reps per process")
    ap.add_argument("--n-a", type=int, default=100000)
    ap.add_argument("--rounds-b", type=int, default=5)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--rounds-c", type=int, default=5)
    ap.add_argument("--n", type=int, default=100000, help="tasks of the dashboard run")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with prometheus_client")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--artefacts", default="/tmp/obench-artefacts", help="where the screenshot goes")
    ap.add_argument("--csv", help="write the raw samples here")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per process")
    a = ap.parse_args()
    only = set(a.only.split(","))
    dist_bin = find_binary(os.path.join(a.bin_dir, "distributed", "dx_bench_distributed")) if "a" in only else None
    render_bin = find_binary(os.path.join(a.bin_dir, "observability", "dx_bench_metrics_render")) if "b" in only else None
    dash_bin = find_binary(os.path.join(a.bin_dir, "observability", "dx_bench_dashboard")) if "c" in only else None
    peer_env = dict(os.environ, PROMETHEUS_DISABLE_CREATED_SERIES="True")

    print("date:", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "| host:", platform.platform(), "| cpus:", os.cpu_count(), "| loadavg:", loadavg(), flush=True)
    rows = []
    loads = {}

    def add(ds, part, rnd, **extra):
        for d in ds or []:
            d.update(part=part, round=rnd, **extra)
            rows.append(d)

    if "a" in only:
        loads["a"] = wait_for_load(a.max_load, "(a)")
        for r in range(a.rounds_a):
            variants = [("on", []), ("off", ["--metrics-off"])]
            for name, extra in (variants if r % 2 == 0 else variants[::-1]):
                add(run([dist_bin, "throughput", str(a.n_a), str(a.reps_a)] + extra, a.timeout), "a", r + 1)
            print(f"(a) round {r + 1}/{a.rounds_a} done ({'on first' if r % 2 == 0 else 'off first'}), "
                  f"loadavg {loadavg()}", flush=True)
        loads["a_end"] = loadavg()

    check_ok, check_samples = None, 0
    chrome = None
    if "b" in only:
        loads["b"] = wait_for_load(a.max_load, "(b)")
        check_ok, check_samples = compare_registries(render_bin, a.python, peer_env)
        for r in range(a.rounds_b):
            jobs = [("dx", [render_bin, "registry", str(a.calls)], None),
                    ("py", [a.python, os.path.join(HERE, "prom_peer.py"), str(a.calls)], peer_env)]
            for system, cmd, env in (jobs if r % 2 == 0 else jobs[::-1]):
                add(run(cmd, a.timeout, env), "b", r + 1)
            add(run([render_bin, "cluster", str(a.calls)], a.timeout), "b", r + 1)
            print(f"(b) round {r + 1}/{a.rounds_b} done ({'dx first' if r % 2 == 0 else 'Python first'}), "
                  f"loadavg {loadavg()}", flush=True)
        loads["b_end"] = loadavg()

    if "c" in only:
        loads["c"] = wait_for_load(a.max_load, "(c)")
        variants = [("poll", ["--poll"]), ("nopoll", []), ("history0", ["--history", "0"])]
        for r in range(a.rounds_c):
            k = r % len(variants)
            for name, extra in variants[k:] + variants[:k]:
                add(run([dash_bin, str(a.n)] + extra, a.timeout), "c", r + 1, variant=name)
            print(f"(c) round {r + 1}/{a.rounds_c} done (order "
                  f"{', '.join(v for v, _ in variants[k:] + variants[:k])}), loadavg {loadavg()}", flush=True)
        loads["c_end"] = loadavg()
        chrome = chromium_check(dash_bin, a.n, a.chromium, a.artefacts, a.timeout)

    if a.csv:
        write_rows(a.csv, rows, first=("part", "round", "mode"))

    def sel(part, mode, key, **match):
        return [float(d[key]) for d in rows if d.get("part") == part and d.get("mode") == mode
                and all(d.get(k) == v for k, v in match.items())]

    def per_round_ratio(part, mode, key, rounds, numerator, denominator):
        """Each round's median of `key` under `numerator` over its median under `denominator`."""
        ratios = []
        for rr in range(1, rounds + 1):
            x = sel(part, mode, key, round=rr, **numerator)
            y = sel(part, mode, key, round=rr, **denominator)
            if x and y:
                ratios.append(statistics.median(x) / statistics.median(y))
        return ratios

    print()
    print("loadavg at the start of each part / at its end:",
          "; ".join(f"{k}: {v}" for k, v in loads.items()))
    print()
    print("| benchmark | dx | peer / other side | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    if "a" in only:
        on = sel("a", "throughput", "tasks_per_s", metrics="on")
        off = sel("a", "throughput", "tasks_per_s", metrics="off")
        if on and off:
            per_round = per_round_ratio("a", "throughput", "tasks_per_s", a.rounds_a, {"metrics": "on"},
                                        {"metrics": "off"})
            ratio = statistics.median(on) / statistics.median(off)
            print(f"| (a) {a.n_a:,} no-op tasks, tasks/s, metrics on | {fmt(on, 0)} | metrics off {fmt(off, 0)} | "
                  f"{ratio:.3f} on/off of the medians; per round {fmt(per_round, 3)} | >= 0.97 (cost <= 3%) | "
                  f"{'yes' if ratio >= 0.97 else 'no'} |")
            hon = sel("a", "throughput", "head_cpu_us_per_task", metrics="on")
            hoff = sel("a", "throughput", "head_cpu_us_per_task", metrics="off")
            print(f"| (a) head CPU us/task | on {fmt(hon, 2)} | off {fmt(hoff, 2)} | "
                  f"{statistics.median(hon) / statistics.median(hoff):.3f} | | |")
            won = sel("a", "throughput", "workers_cpu_us_per_task", metrics="on")
            woff = sel("a", "throughput", "workers_cpu_us_per_task", metrics="off")
            print(f"| (a) CPU us/task, 2 workers together | on {fmt(won, 2)} | off {fmt(woff, 2)} | "
                  f"{statistics.median(won) / statistics.median(woff):.3f} | | |")
            print(f"| (a) samples | {len(on)} | {len(off)} | | | |")
    if "b" in only:
        dx_med = sel("b", "registry", "median_ms")
        py_med = sel("b", "prometheus_client", "median_ms")
        if dx_med and py_med:
            dx_p99 = sel("b", "registry", "p99_ms")
            py_p99 = sel("b", "prometheus_client", "p99_ms")
            samples = int(sel("b", "registry", "samples")[0])
            nbytes = int(sel("b", "registry", "bytes")[0])
            pysamples = int(sel("b", "prometheus_client", "samples")[0])
            pybytes = int(sel("b", "prometheus_client", "bytes")[0])
            ratio = statistics.median(py_med) / statistics.median(dx_med)
            worst = max(dx_p99)
            print(f"| (b) render {samples:,} user samples ({nbytes:,} B), ms: median of {a.calls} calls | "
                  f"{fmt(dx_med, 3)} | prometheus_client generate_latest() {pysamples:,} samples ({pybytes:,} B): "
                  f"{fmt(py_med, 2)} | dx {ratio:.1f}x faster | < 50 ms | "
                  f"{'yes' if statistics.median(dx_med) < 50 and worst < 50 else 'no'} (worst call {worst:.2f} ms) |")
            print(f"| (b) same, p99 of {a.calls} calls (the slowest call), ms | {fmt(dx_p99, 3)} | {fmt(py_p99, 2)} | "
                  f"{statistics.median(py_p99) / statistics.median(dx_p99):.1f}x | | |")
            print(f"| (b) registering the series, ms | {fmt(sel('b', 'registry', 'register_ms'), 1)} | "
                  f"{fmt(sel('b', 'prometheus_client', 'register_ms'), 1)} | | | |")
            print(f"| (b) outputs compared sample by sample | {check_samples:,} samples | | "
                  f"{'same samples and values' if check_ok else 'DIFFERENT'} | | |")
        for mode, label in (("cluster_runtime", "live cluster, runtime dx_* metrics only (200 kinds, 9 workers)"),
                            ("cluster_combined", "live cluster, runtime + the 10,100 user samples"),
                            ("cluster_http_metrics", "live cluster, GET /metrics (keep-alive, loopback), combined")):
            med = sel("b", mode, "median_ms")
            if med:
                s = int(statistics.median(sel("b", mode, "samples")))
                dxs = int(statistics.median(sel("b", mode, "dx_samples")))
                nb = int(statistics.median(sel("b", mode, "bytes")))
                worst = max(sel("b", mode, "max_ms"))
                print(f"| (b) {label}: {s:,} samples ({dxs:,} dx_*), {nb:,} B, ms median / p99 | "
                      f"{fmt(med, 3)} / {fmt(sel('b', mode, 'p99_ms'), 3)} | | | < 50 ms | "
                      f"{'yes' if statistics.median(med) < 50 and worst < 50 else 'no'} (worst call {worst:.2f} ms) |")
        fams = [d["families"] for d in rows if d.get("mode") == "cluster_families"]
        if fams:
            print(f"\n(b) runtime samples per family (last round): {fams[-1]}\n")
    if "c" in only:
        poll = sel("c", "run", "wall_s", variant="poll")
        nopoll = sel("c", "run", "wall_s", variant="nopoll")
        h0 = sel("c", "run", "wall_s", variant="history0")
        if poll and nopoll:
            per_round = per_round_ratio("c", "run", "wall_s", a.rounds_c, {"variant": "poll"}, {"variant": "nopoll"})
            ratio = statistics.median(poll) / statistics.median(nopoll)
            print(f"| (c) {a.n:,} tasks of 100 us, job time s, dashboard polling | {fmt(poll, 3)} | "
                  f"no poller {fmt(nopoll, 3)}; no poller + task_history(0) {fmt(h0, 3) if h0 else '-'} | "
                  f"{ratio:.3f} poll/no poll of the medians; per round {fmt(per_round, 3)} | none set | |")
            hc_poll = sel("c", "run", "head_cpu_s", variant="poll")
            hc_no = sel("c", "run", "head_cpu_s", variant="nopoll")
            print(f"| (c) head CPU s during the job (poller threads' CPU excluded) | {fmt(hc_poll, 3)} | "
                  f"no poller {fmt(hc_no, 3)} | +{(statistics.median(hc_poll) - statistics.median(hc_no)) * 1e3:,.0f} ms | | |")
            print(f"| (c) poller threads' CPU s during the job (client side) | {fmt(sel('c', 'run', 'pollers_cpu_s', variant='poll'), 3)} | | | | |")
            for path in ("state", "tasks"):
                q = f"/api/{path}" + ("?since=NEXT&limit=5000" if path == "tasks" else "")
                print(f"| (c) {q}: requests per run; latency ms median / p99 / max | "
                      f"{fmt(sel('c', 'poll', 'requests', path=path), 0)}; "
                      f"{fmt(sel('c', 'poll', 'median_ms', path=path), 2)} / {fmt(sel('c', 'poll', 'p99_ms', path=path), 2)} / "
                      f"{fmt(sel('c', 'poll', 'max_ms', path=path), 2)} | | | | |")
                print(f"| (c) {q}: response bytes median / max | {fmt(sel('c', 'poll', 'median_bytes', path=path), 0)} / "
                      f"{fmt(sel('c', 'poll', 'max_bytes', path=path), 0)} | | | | |")
            seen = sel("c", "poll_check", "events_seen")
            missed = sel("c", "poll_check", "missed")
            disorder = sel("c", "poll_check", "disorder")
            completed = sel("c", "poll_check", "state_completed_last")
            all_ok = all(s == a.n for s in seen) and not any(missed) and not any(disorder)
            print(f"| (c) events seen by the task poller / missed / out of order, per run | "
                  f"{', '.join(f'{int(s):,}/{int(m)}/{int(o)}' for s, m, o in zip(seen, missed, disorder))} | | | "
                  f"every event, no gap | {'yes' if all_ok else 'no'} |")
            print(f"| (c) after the job: catch-up of the task poller, s; last /api/state completed | "
                  f"{fmt(sel('c', 'poll_check', 'catch_up_s'), 3)}; {', '.join(str(int(c)) for c in completed)} | | | | |")
        hwm = sel("c", "run", "head_hwm_kb", variant="nopoll")
        hwm0 = sel("c", "run", "head_hwm_kb", variant="history0")
        hwmp = sel("c", "run", "head_hwm_kb", variant="poll")
        if hwm and hwm0:
            print(f"| (c) head peak RSS (VmHWM) after the job, MB: task_history 100,000 (default) | {fmt(hwm, 1, 1 / 1024)} | "
                  f"task_history(0) {fmt(hwm0, 1, 1 / 1024)} | +{(statistics.median(hwm) - statistics.median(hwm0)) / 1024:.1f} MB | | |")
            if hwmp:
                print(f"| (c) same, default history, with the poller | {fmt(hwmp, 1, 1 / 1024)} | | | | |")
            rss = sel("c", "run", "head_rss_kb", variant="nopoll")
            rss0 = sel("c", "run", "head_rss_kb", variant="history0")
            print(f"| (c) head RSS (VmRSS) after the job, MB: task_history 100,000 (default) | {fmt(rss, 1, 1 / 1024)} | "
                  f"task_history(0) {fmt(rss0, 1, 1 / 1024)} | +{(statistics.median(rss) - statistics.median(rss0)) / 1024:.1f} MB | | |")
        if chrome and chrome.get("url"):
            ok = chrome.get("completed_count") == str(a.n)
            print(f"| (c) headless Chromium on the finished run: #completed-count | {chrome.get('completed_count')} "
                  f"(page keeps {chrome.get('events_kept')} events; badge '{chrome.get('badge')}'; --dump-dom "
                  f"{chrome.get('dump_s', 0):.1f} s) | | | reads {a.n} | {'yes' if ok else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
