"""`tito grade A --jobs N` on a small class (tito/classgrade.py): parallel grading gives the
same grades as one at a time, the gradebook has one row per thing graded (none lost, none
doubled, also after a regrade), and bad submission folders are reported, one line each,
while everyone else is graded."""
import re
import shutil
import sqlite3
from pathlib import Path

import nbformat
import pytest

from helpers import fill_in, run_tito, scratch_root
from tito import grading
from tito.modules import find_module

pytestmark = pytest.mark.pipeline
MODULE = find_module("01")
NB = f"{MODULE.name}.ipynb"
GRADED = ["alice", "ann marie", "zoë", "j.doe", "stubby", "partial", "exits"]  # odd ids are fine
REJECTED = {  # student -> what the summary line must say
    "wrongname": "no 01_tensor.ipynb (found tensor.ipynb): rename it to 01_tensor.ipynb",
    "notjson": "nbformat.reader.NotJSONError: Notebook does not appear to be JSON",
    "otherassign": "01_tensor.ipynb is not 01_tensor: it is the notebook of 02_activations",
    "empty": "no 01_tensor.ipynb (the folder has no .ipynb)",
}


def _edit(path: Path, grade_id: str, fn) -> None:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source = fn(cell.source)
    nbformat.write(nb, path)


def make_class(root: Path) -> Path:
    sub = lambda s: root / "submitted" / s / MODULE.name  # noqa: E731
    for s in ("alice", "ann marie", "zoë", "j.doe", "partial", "exits"):
        fill_in(MODULE, sub(s) / NB)
    sub("stubby").mkdir(parents=True)
    shutil.copy(MODULE.release_ipynb, sub("stubby") / NB)
    stub = next(c.source for c in nbformat.read(MODULE.release_ipynb, as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "matmul")
    _edit(sub("partial") / NB, "matmul", lambda _: stub)
    _edit(sub("exits") / NB, "reduce", lambda s: s + "\nimport os\nos._exit(1)\n")  # a dead kernel
    fill_in(MODULE, sub("alice") / "Untitled.ipynb")  # a second notebook: noted, not graded
    fill_in(MODULE, sub("wrongname") / "tensor.ipynb")
    sub("notjson").mkdir(parents=True)
    (sub("notjson") / NB).write_text("{not a notebook")
    fill_in(find_module("02"), sub("otherassign") / NB)
    sub("empty").mkdir(parents=True)
    return root


def rows(root: Path) -> dict[str, int]:
    with sqlite3.connect(root / "gradebook.db") as db:
        return {t: db.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")}


def cells(root: Path) -> dict[str, list[tuple[str, float, str]]]:
    grades = grading.read_grades(root, MODULE, GRADED)
    return {s: [(c.grade_id, c.score, c.error) for c in g.cells] for s, g in grades.items()}


def check_summary(proc) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some could not be graded
    out = proc.stdout
    assert f"Graded {len(GRADED)} of {len(GRADED) + len(REJECTED)} submissions" in out, out
    summary = out.split(f"Not graded ({len(REJECTED)}):\n")[1].splitlines()
    assert [line.split(" not graded: ")[0].strip() for line in summary] == sorted(REJECTED), summary
    for line in summary:
        student, reason = line.split(" not graded: ")
        assert reason.startswith(REJECTED[student.strip()]), line
    assert "  alice: graded 01_tensor.ipynb; also submitted Untitled.ipynb, which nbgrader does not grade" in out
    for student in GRADED:
        assert re.search(rf"^{re.escape(student)} +(\d+/4 +){{6}}\d+/24$", out, re.M), (student, out)
    # The class summary: Task 01.4 tripped stubby and partial. partial's first error is 01.4's own stub;
    # stubby's points at Task 01.1 first (01.4 uses it), so the two count apart.
    assert f"Class summary ({len(GRADED)} graded):" in out, out
    assert re.search(r"^Task 01.1 +3.4/4 +1/7  NotImplementedError", out, re.M), out
    assert re.search(r"^Task 01.4 +2.9/4 +2/7  NotImplementedError: Task 01.4: matmul raised.* \(1 student\)$", out, re.M), out


def test_jobs_2_grades_exactly_as_jobs_1_and_reports_bad_input(tmp_path):
    one, two = (make_class(scratch_root(tmp_path / name)) for name in ("one", "two"))
    proc1 = run_tito(one, "grade", "01", "--jobs", "1")
    check_summary(proc1)
    proc2 = run_tito(two, "grade", "01", "--jobs", "2")
    check_summary(proc2)

    by_cell = cells(one)
    assert cells(two) == by_cell
    totals = {s: sum(score for _, score, _ in c) for s, c in by_cell.items()}
    assert totals == {"alice": 24, "ann marie": 24, "zoë": 24, "j.doe": 24, "stubby": 0, "partial": 20,
                      "exits": 16}, totals
    assert "the kernel stopped" in dict((g, e) for g, _, e in by_cell["exits"])["test_01_5_reduce"]

    n, graded_cells = len(GRADED), len(by_cell["alice"])
    comments = rows(one)["comment"] // n
    expected = {"student": n, "submitted_assignment": n, "submitted_notebook": n, "grade": n * graded_cells,
                "comment": n * comments}
    assert rows(one) == rows(two) == expected
    for student in GRADED:
        assert (two / "autograded" / student / MODULE.name / NB).exists(), student

    # A regrade replaces, never doubles: same rows, same grades.
    check_summary(run_tito(two, "grade", "01", "--jobs", "2"))
    assert rows(two) == expected
    assert cells(two) == by_cell

    # Feedback: one HTML file per graded student, odd ids included, with that student's score.
    proc = run_tito(two, "feedback", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for student, total in totals.items():
        html = (two / "feedback" / student / MODULE.name / f"{MODULE.name}.html").read_text()
        assert re.search(rf"Score: {total:g}(\.0)? / 24(\.0)?", html), (student, re.findall(r"Score: [^<]*", html))
