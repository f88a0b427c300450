"""Under nbgrader, tinytorch_lib.timing.measure takes fewer repeats (NBGRADER_EXECUTION):
the grades of the reference and of the untouched release are the same as with full timings
(TINYTORCH_TIMING=full), and the light run really was light."""
import re

import nbformat
import pytest

from tito import classgrade, grading
from tito.modules import find_module

pytestmark = pytest.mark.pipeline
MODULES = [find_module("01"), find_module("02")]


def repeats_shown(notebook) -> set[int]:
    """The repeat counts the notebook's printed Timings show ('7 x 100 calls')."""
    text = "".join(o.get("text", "") for c in nbformat.read(notebook, as_version=4).cells
                   for o in c.get("outputs", []))
    return {int(n) for n in re.findall(r"p90 [^,]+, (\d+) x \d+ calls", text)}


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_light_timing_under_grading_changes_no_grade(tmp_path, monkeypatch, module):
    course = grading.new_course(tmp_path / "course", [module])
    grading.generate(course, module)
    lib = grading.reference_library(tmp_path / "lib")
    grades = {}
    for mode in ("light", "full"):
        if mode == "full":
            monkeypatch.setenv("TINYTORCH_TIMING", "full")
        subs = {f"{kind}_{mode}": nb for kind, nb in (("reference", module.source_ipynb),
                                                      ("release", module.release_ipynb))}
        for student, nb in subs.items():
            dest = course / "submitted" / student / module.name
            dest.mkdir(parents=True)
            (dest / nb.name).write_bytes(nb.read_bytes())
        assert classgrade.grade_class(course, module, subs, lib, jobs=2) == {}
        grades.update(grading.read_grades(course, module, list(subs)))
    for kind in ("reference", "release"):
        light, full = ([(c.grade_id, c.score) for c in grades[f"{kind}_{mode}"].cells] for mode in ("light", "full"))
        assert light == full, kind
    assert grades["reference_light"].score == grades["reference_light"].max_score > 0
    graded = course / "autograded" / "{}" / module.name / f"{module.name}.ipynb"
    # Default measures take 2 repeats under grading; a count a cell asks for (01 asks 5) is kept.
    light, full = (repeats_shown(str(graded).format(f"reference_{m}")) for m in ("light", "full"))
    assert 2 in light and 7 not in light, light
    assert 7 in full, full
