"""What the outside checks cost: seconds per notebook, and what grading a notebook costs with and without them.

    .venv/bin/python -m benchmarks.bench_checks [--repeats 3] [--modules 01 06 13]

1. For each module, runs its outside checks (source/NN/checks.py) on the reference solution, sandboxed as
   in grading: start the sandboxed process, load the export, every check (median and range of repeats).
2. For Module 01, autogrades the reference solution with nbgrader as `tito grade` does, with the outside
   checks on and off (`--OutsideChecks.enabled=False`), interleaved so machine load hits both alike.
Prints the load average beside the figures: wall-clock seconds move with load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import nbformat  # noqa: E402

from helpers import fill_in  # noqa: E402
from tito import grading  # noqa: E402
from tito.build import build  # noqa: E402
from tito.checks import load_checks, run_checks  # noqa: E402
from tito.modules import all_modules, find_module  # noqa: E402


def checks_seconds(module, repeats: int) -> list[float]:
    build(module)
    nb, checks = nbformat.read(module.source_ipynb, as_version=4), load_checks(module)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        failed = {g: m for g, m in run_checks(module, nb, checks).items() if m}
        times.append(time.perf_counter() - start)
        if failed:
            raise SystemExit(f"{module.name}: the reference fails its checks: {failed}")
    return times


def grade_seconds(repeats: int) -> tuple[list[float], list[float]]:
    module = find_module("01")
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        tmp = Path(tmp)
        course = grading.new_course(tmp / "course", [module])
        grading.generate(course, module)
        lib = grading.reference_library(tmp / "lib", module)
        notebook = fill_in(module, tmp / "in" / f"{module.name}.ipynb")
        on, off = [], []
        for i in range(repeats):
            for times, options in ((on, ()), (off, ("--OutsideChecks.enabled=False",))):
                start = time.perf_counter()
                grades = grading.autograde(course, module, {f"s{i}{len(times)}{len(options)}": notebook}, lib,
                                           options=options)
                times.append(time.perf_counter() - start)
                assert all(g.score == g.max_score for g in grades.values()), grades
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modules", nargs="*", default=None)
    args = parser.parse_args()
    modules = [find_module(m) for m in args.modules] if args.modules else all_modules()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print(f"{'module':<18} {'checks':>7} {'median s':>9} {'range s':>13}")
    total = 0.0
    for module in modules:
        times = checks_seconds(module, args.repeats)
        total += statistics.median(times)
        print(f"{module.name:<18} {len(load_checks(module)):>7} {statistics.median(times):>9.2f} "
              f"{min(times):>6.2f}-{max(times):<6.2f}", flush=True)
    print(f"{'all':<18} {'':>7} {total:>9.2f}   ({total / len(modules):.2f} s a notebook)")
    on, off = grade_seconds(args.repeats)
    print(f"\nModule 01 reference, nbgrader autograde of one notebook (median of {args.repeats}, interleaved):")
    print(f"  with outside checks    {statistics.median(on):6.2f} s  (range {min(on):.2f}-{max(on):.2f})")
    print(f"  without                {statistics.median(off):6.2f} s  (range {min(off):.2f}-{max(off):.2f})")
    print(f"  difference             {statistics.median(on) - statistics.median(off):+6.2f} s")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
