"""Grading a class: seconds per notebook with `--jobs 1` and `--jobs 2`, side by side.

    .venv/bin/python -m benchmarks.bench_grading [--students 30] [--modules 01 02]

Makes a synthetic class per module (default 30 submissions each, 60 in all):
the reference solution filled into the release, the untouched release, and
varied mistakes (one task left as a stub, a syntax error in a solution cell, a
deleted test cell), plus a few hostile ones (os._exit, a 16 GiB allocation,
rewriting the gradebook's tests). Each class is graded twice, in two scratch
courses, by tito/classgrade.py as `tito grade` does (sandboxed, reference
library): once one student at a time, once two at a time. Prints seconds per
notebook for both, and checks that no submission is lost (every student has
a grade and one row in gradebook.db) and that both runs give the same score
in every cell. Target (issue 12): at most 3 s per notebook at 2 jobs for Module 02.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import fill_in  # noqa: E402
from hostile_submissions import plant  # noqa: E402
from tito import classgrade, grading, sandbox  # noqa: E402
from tito.build import build  # noqa: E402
from tito.modules import Module, find_module  # noqa: E402

KINDS = ["full", "full", "full", "stub", "partial", "partial", "syntax", "deleted_test", "exits", "hog", "tamper"]


def _cells(nb, kind: str):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get(kind)]


def submission(module: Module, kind: str, out: Path, rng: random.Random) -> Path:
    """One synthetic notebook of `kind` (see KINDS) at `out`."""
    if kind == "stub":
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(module.release_ipynb, out))
    fill_in(module, out)
    if kind == "tamper":  # tries to rewrite the gradebook's stored tests (the sandbox hides it)
        plant(out, ["tamper_tests"], 0)
        return out
    nb = nbformat.read(out, as_version=4)
    solution = rng.choice(_cells(nb, "solution"))
    if kind == "partial":  # one task left undone
        stub = {c.metadata["nbgrader"]["grade_id"]: c.source
                for c in _cells(nbformat.read(module.release_ipynb, as_version=4), "solution")}
        solution.source = stub[solution.metadata["nbgrader"]["grade_id"]]
    elif kind == "syntax":
        solution.source += "\ndef broken(:\n    pass\n"
    elif kind == "deleted_test":
        nb.cells.remove(rng.choice(_cells(nb, "grade")))
    elif kind == "exits":
        solution.source += "\nimport os\nos._exit(1)\n"
    elif kind == "hog":
        solution.source = "import numpy as _np\n_np.ones(2 << 30)\n" + solution.source
    nbformat.write(nb, out)
    return out


def make_class(module: Module, n: int, where: Path) -> dict[str, Path]:
    rng = random.Random(0)
    return {f"s{i:03d}_{kind}": submission(module, kind, where / f"s{i:03d}" / f"{module.name}.ipynb", rng)
            for i, kind in ((i, KINDS[i % len(KINDS)]) for i in range(n))}


def grade(module: Module, subs: dict[str, Path], lib: Path, course: Path, jobs: int):
    """(seconds, student -> [(grade_id, score)], gradebook rows) of grading `subs` with `jobs`."""
    grading.new_course(course, [module])
    grading.generate(course, module)
    for student, nb in subs.items():
        dest = course / "submitted" / student / module.name
        dest.mkdir(parents=True)
        shutil.copy(nb, dest / nb.name)
    start = time.perf_counter()
    failed = classgrade.grade_class(course, module, subs, lib, jobs=jobs, progress=True)
    seconds = time.perf_counter() - start
    print(f"{module.name} --jobs {jobs}: {seconds:.0f} s for {len(subs)} notebooks; {load()}", flush=True)
    if failed:
        raise SystemExit(f"{module.name} --jobs {jobs}: not graded: {failed}")
    grades = grading.read_grades(course, module, list(subs))
    with sqlite3.connect(course / "gradebook.db") as db:
        rows = db.execute("select count(*) from submitted_assignment").fetchone()[0]
    return seconds, {s: [(c.grade_id, c.score) for c in g.cells] for s, g in grades.items()}, rows


def load() -> str:
    """The machine's load (other users' work included) the figures were measured under."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30, help="submissions per module")
    p.add_argument("--modules", nargs="+", default=["01", "02"])
    args = p.parse_args()
    sandbox.bwrap()  # grading as `tito grade` does: sandboxed
    print(f"start: {load()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        lib = grading.reference_library(tmp / "lib")
        for module in map(find_module, args.modules):
            build(module)
            subs = make_class(module, args.students, tmp / "class" / module.name)
            runs = {jobs: grade(module, subs, lib, tmp / f"{module.name}-jobs{jobs}", jobs) for jobs in (1, 2)}
            (t1, s1, r1), (t2, s2, r2) = runs[1], runs[2]
            lost = len(subs) - min(len(s1), len(s2), r1, r2)
            same = s1 == s2
            rows.append((module.name, len(subs), t1 / len(subs), t2 / len(subs), lost, same))
            print(f"{module.name}: --jobs 1 {t1 / len(subs):.2f} s/notebook, --jobs 2 {t2 / len(subs):.2f} "
                  f"s/notebook", flush=True)
    print(f"\n{'module':<16} {'notebooks':>9} {'--jobs 1':>12} {'--jobs 2':>12} {'speedup':>8} "
          f"{'lost':>5}  same scores")
    for name, n, a, b, lost, same in rows:
        print(f"{name:<16} {n:>9} {a:>10.2f} s {b:>10.2f} s {a / b:>7.2f}x {lost:>5}  {'yes' if same else 'NO'}")
    print("(seconds per notebook, wall time of the whole class / notebooks; sandboxed, reference library)")
    print(f"end: {load()}: a load above the core count means other work shared the cores")
    if not all(same and lost == 0 for *_, lost, same in rows):
        raise SystemExit("FAILED: a submission was lost or the two runs disagree")


if __name__ == "__main__":
    main()
