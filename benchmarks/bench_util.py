"""What the benchmark drivers (benchmarks/*/run.py) share: RESULT-line parsing, the load average,
finding a built binary and the median [min-max] of a series. Standard library only."""
import csv
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(xs, digits=None):
    """The median [min-max] of xs, with `digits` decimals (3 under 10, else 1, when not given)."""
    if digits is None:
        digits = 3 if statistics.median(xs) < 10 else 1
    return f"{statistics.median(xs):,.{digits}f} [{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]"


def parse(line):
    """A `RESULT key=value ...` line as a dict."""
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def find_binary(path):
    """An executable at `path`, relative to here or to the repository; exits with a hint if none."""
    for cand in (path, os.path.join(REPO, path)):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    sys.exit(f"run.py: no executable at {path} (nor under {REPO}); build it first (see RESULTS.md)")


def run_results(cmd, timeout, env=None):
    """Runs a benchmark binary; its RESULT lines parsed, or None (reported) on a timeout or failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"TIMEOUT after {timeout:.0f} s: {' '.join(cmd)}", flush=True)
        return None
    if p.returncode != 0:
        print(f"exit code {p.returncode}: {' '.join(cmd)}: {p.stderr.strip()[-800:]}", flush=True)
        return None
    return [parse(line) for line in p.stdout.splitlines() if line.startswith("RESULT")]


def write_rows(path, rows, first=()):
    """Raw samples as CSV: the `first` keys that occur, in that order, then the others sorted."""
    present = {k for d in rows for k in d}
    keys = [k for k in first if k in present] + sorted(present - set(first))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def probe_dask(python):
    """Whether `python` can import dask.distributed, printed as the run's "Dask peer:" line.

    Returns True when it can; otherwise prints the last line of the import's error."""
    dask_ok = False
    try:
        p = subprocess.run([python, "-c", "import dask.distributed"], capture_output=True, text=True,
                           timeout=120)
        dask_ok = p.returncode == 0
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    print(f"Dask peer: {'available' if dask_ok else 'UNAVAILABLE (' + why + ')'} via {python}", flush=True)
    return dask_ok
