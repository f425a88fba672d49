#!/usr/bin/env python3
"""Compile time of a dx user's file against a standard-library hello world.

Compiles std_hello.cpp, dx_hello.cpp and dx_remote5.cpp alternately, N rounds, with the flags a
user of the installed package uses (g++ -std=c++20 -O2 -c, dx's include/ and the build's generated
include dir), and prints each file's median wall time with min-max and its ratio to std_hello.

  benchmarks/compile/run.py [--rounds 7] [--build build] [--cxx g++] [--include DIR] [--baseline DIR]

--baseline DIR also compiles the two dx files against another copy of dx's include/ (say, a
checkout of an earlier commit), in the same alternation, to compare before and after.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FILES = ["std_hello.cpp", "dx_hello.cpp", "dx_remote5.cpp"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--cxx", default="g++")
    ap.add_argument("--include", default=os.path.join(ROOT, "include"), help="dx's public include dir")
    ap.add_argument("--baseline", help="another dx include dir to compare with")
    args = ap.parse_args()

    def flags(include):
        return ["-std=c++20", "-O2", "-c", "-I" + include, "-I" + os.path.join(args.build, "include")]

    runs = [(f, f, args.include) for f in FILES]
    if args.baseline:
        runs += [("baseline " + f, f, args.baseline) for f in FILES[1:]]
    times = {label: [] for label, _, _ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label, f, include in runs:
                cmd = [args.cxx] + flags(include) + [os.path.join(HERE, f), "-o", os.path.join(tmp, f + ".o")]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True)
                times[label].append(time.perf_counter() - t0)
    print("command: " + " ".join([args.cxx] + flags(args.include) + ["FILE.cpp"]))
    if args.baseline:
        print("baseline: the dx files with -I" + args.baseline)
    print(f"{args.rounds} rounds, alternating")
    base = statistics.median(times[FILES[0]])
    for label, _, _ in runs:
        t = times[label]
        m = statistics.median(t)
        print(f"{label:25s} median {m:6.2f} s  (min {min(t):.2f}, max {max(t):.2f})  ratio {m / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
