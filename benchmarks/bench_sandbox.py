"""What the grading sandbox costs: seconds per notebook, with and without it.

    .venv/bin/python benchmarks/bench_sandbox.py [--repeats 5]

Autogrades Module 01's reference solution in a scratch course, one
`nbgrader autograde --student` run per notebook as `tito grade` does, with the
sandbox and with TITO_NO_SANDBOX=1, interleaved so machine load hits both
alike; then starts and stops a bare kernel both ways (the sandbox's share of
it). Prints medians side by side, the difference and the ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import fill_in  # noqa: E402
from tito import grading, sandbox  # noqa: E402
from tito.modules import find_module  # noqa: E402


def grade_seconds(course: Path, module, lib: Path, student: str, sandboxed: bool) -> float:
    start = time.perf_counter()
    failed = grading.autograde_each(course, module, [student], lib, sandboxed=sandboxed)
    if failed:
        raise failed[student]
    return time.perf_counter() - start


async def kernel_seconds(sandboxed: bool) -> float:
    """Start a kernel, run `1 + 1`, shut it down."""
    from tito.sandbox_kernel import SandboxedKernelManager

    os.environ.pop(sandbox.OPT_OUT, None) if sandboxed else os.environ.update({sandbox.OPT_OUT: "1"})
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        km = SandboxedKernelManager(kernel_name="python3")
        await km.start_kernel(cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        await kc.execute_interactive("1 + 1", timeout=60, output_hook=lambda msg: None)
        kc.stop_channels()
        await km.shutdown_kernel()
        return time.perf_counter() - start


def row(name: str, with_: list[float], without: list[float]) -> str:
    a, b = statistics.median(with_), statistics.median(without)
    return f"{name:<34} {a:>9.2f} s {b:>9.2f} s {a - b:>+9.2f} s {a / b:>7.2f}x"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    repeats = p.parse_args().repeats
    sandbox.bwrap()  # the comparison needs the sandbox
    module = find_module("01")
    times = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        tmp = Path(tmp)
        course = grading.new_course(tmp / "course", [module])
        grading.generate(course, module)
        lib = grading.reference_library(tmp / "lib")
        for i in range(repeats):
            for sandboxed in (True, False):
                student = f"s{i}_{'sandboxed' if sandboxed else 'plain'}"
                fill_in(module, course / "submitted" / student / module.name / f"{module.name}.ipynb")
                times[sandboxed].append(grade_seconds(course, module, lib, student, sandboxed))
        scores = grading.read_grades(course, module, [f"s{i}_{m}" for i in range(repeats)
                                                      for m in ("sandboxed", "plain")])
        assert all(g.score == g.max_score for g in scores.values()), "the reference lost points"
    kernel = {True: [], False: []}
    for _ in range(repeats):
        for sandboxed in (True, False):
            kernel[sandboxed].append(asyncio.run(kernel_seconds(sandboxed)))
    print(f"median of {repeats}, {os.cpu_count()} CPUs")
    print(f"{'':<34} {'sandboxed':>11} {'unsandboxed':>11} {'difference':>11} {'ratio':>8}")
    print(row(f"autograde one {module.name} notebook", times[True], times[False]))
    print(row("start kernel, run 1 + 1, stop", kernel[True], kernel[False]))


if __name__ == "__main__":
    main()
