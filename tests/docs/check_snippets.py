#!/usr/bin/env python3
"""Compiles every ```cpp block of a Markdown file, as a user would paste it into a program that
includes dx, so the documentation cannot drift from the API.

A block is compiled after dx's headers, the standard headers snippets use, and the declarations of
an HTML comment `<!-- compile with: ... -->` just above it (placeholders such as `void urgent();`).
A block that defines `main`, or whose comment says `compile as a file, with: ...`, is compiled as
it is; any other is a sequence of statements, compiled as the body of a function.

  check_snippets.py --compiler g++ --flag=-std=c++20 --flag=-Iinclude ... README.md
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

HEADERS = """#include <dx/dx.hpp>
#include <dx/log.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>
"""

PRELUDE = re.compile(r"<!--\s*compile (as a file, )?with:(.*?)-->", re.S)


def snippets(text):
    """(line of the block's first code line, code, declarations) for each ```cpp block."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```cpp":
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise SystemExit(f"line {i + 1}: a ```cpp block is never closed")
            above = "\n".join(lines[max(0, i - 3):i])
            found = PRELUDE.search(above)
            out.append((start + 1, "\n".join(lines[start:j]), found.group(2).strip() if found else "",
                        bool(found and found.group(1))))
            i = j
        i += 1
    return out


def program(code, declarations, line, as_file):
    located = f"#line {line}\n{code}"  # errors point at the Markdown file's lines
    if not as_file and not re.search(r"\bint main\s*\(", code):
        located = f"[[maybe_unused]] static void snippet() {{\n{located}\n}}"
    return f"{HEADERS}\n{declarations}\n{located}\n"


def compile_one(compiler, flags, source_name, line, code, declarations, as_file):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snippet.cpp")
        with open(path, "w") as f:
            f.write(program(code, declarations, line, as_file))
        done = subprocess.run([compiler, *flags, "-fsyntax-only", "-x", "c++", path],
                              capture_output=True, text=True, timeout=600)
        errors = done.stderr.replace(path, source_name)
        return line, done.returncode, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compiler", required=True)
    ap.add_argument("--flag", action="append", default=[])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("markdown")
    args = ap.parse_args()
    with open(args.markdown) as f:
        blocks = snippets(f.read())
    if not blocks:
        raise SystemExit(f"{args.markdown}: no ```cpp block found")
    name = os.path.basename(args.markdown)
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(compile_one, args.compiler, args.flag, name, line, code, decl, as_file)
                for line, code, decl, as_file in blocks]
        for job in jobs:
            line, rc, errors = job.result()
            if rc != 0:
                failed += 1
                print(f"{name}:{line}: the block starting here does not compile:\n{errors}")
            else:
                print(f"{name}:{line}: compiles")
    print(f"{len(blocks) - failed} of {len(blocks)} blocks compile")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
