"""Grading cannot be satisfied by the course's reference: a module's own library file is never
on its grading kernel's path.

A "delegating" submission replaces every solution cell of Module 06 with an import of the same
names from `tinytorch_lib.optimizers` (the course reference, in the instructor's checkout). It must
score 0 on every task, under `tito grade` and under plain `nbgrader autograde` in the course root,
with the honest students graded before and after it unchanged.
"""
import ast
import os

import nbformat
import pytest

from helpers import fill_in, run_tito, scratch_root
from tito import grading
from tito.modules import LIBRARY, TitoError, find_module
from tito.sandbox import visible_library

MODULE = find_module("06")
NB = f"{MODULE.name}.ipynb"
STUDENTS = ("a_honest", "b_delegates", "c_honest")


def delegating(out):
    """Module 06 with each solution cell replaced by `from tinytorch_lib.optimizers import <its names>`."""
    fill_in(MODULE, out)
    nb = nbformat.read(out, as_version=4)
    replaced = 0
    for cell in nb.cells:
        if not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        names = [node.name for node in ast.parse(cell.source).body
                 if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        if names:
            cell.source = f"from tinytorch_lib.{MODULE.library_file.stem} import {', '.join(names)}"
            replaced += 1
    assert replaced >= 4, f"expected a solution cell per task of {MODULE.name}, replaced {replaced}"
    nbformat.write(nb, out)
    return out


def submit_class(course):
    for student in STUDENTS:
        out = course / "submitted" / student / MODULE.name / NB
        if "delegates" in student:
            delegating(out)
        else:
            fill_in(MODULE, out)


def check(course):
    grades = grading.read_grades(course, MODULE, list(STUDENTS))
    for student in ("a_honest", "c_honest"):
        assert grades[student].score == grades[student].max_score == 16, (student, grades[student])
    cheat = grades["b_delegates"]
    assert [c.score for c in cheat.cells] == [0] * len(cheat.cells), cheat
    graded = nbformat.read(course / "autograded" / "b_delegates" / MODULE.name / NB, as_version=4)
    errors = [o for c in graded.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert any(o.ename in ("ImportError", "ModuleNotFoundError") and "tinytorch_lib.optimizers" in o.evalue
               for o in errors), [f"{o.ename}: {o.evalue}" for o in errors]


def test_the_grading_kernel_sees_only_the_earlier_modules_files():
    assert visible_library(LIBRARY.parent, "01_tensor") == ["__init__.py", "plotting.py", "testing.py", "timing.py"]
    seen = visible_library(LIBRARY.parent, "06_optimizers")
    assert seen == sorted(["__init__.py", "plotting.py", "testing.py", "timing.py", "tensor.py", "activations.py", "layers.py", "losses.py",
                           "autograd.py"]), seen
    with pytest.raises(TitoError, match="cannot tell which module"):
        visible_library(LIBRARY.parent, "homework")


def test_the_reference_library_for_a_module_stops_before_it(tmp_path):
    lib = grading.reference_library(tmp_path, MODULE) / "tinytorch_lib"
    assert (lib / "autograd.py").exists() and not (lib / "optimizers.py").exists()
    assert not (lib / "kvcache.py").exists()


@pytest.mark.pipeline
def test_a_submission_delegating_to_the_reference_scores_zero_under_tito_grade(tmp_path):
    root = scratch_root(tmp_path / "course")
    submit_class(root)
    proc = run_tito(root, "grade", MODULE.number)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check(root)


@pytest.mark.pipeline
def test_a_submission_delegating_to_the_reference_scores_zero_under_plain_nbgrader(tmp_path):
    course = grading.new_course(tmp_path / "course", [MODULE])
    grading.generate(course, MODULE)
    submit_class(course)
    # As an instructor runs it in the course root: the installed library (the checkout's reference,
    # every module exported) is what the kernel would import, and the sandbox shows it 01-05 only.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    grading.nbgrader(course, "autograde", MODULE.name, "--force", env=env)
    check(course)
