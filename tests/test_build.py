"""The source format and the deterministic build (fast; no nbgrader run)."""
import re
import tomllib

import jupytext
from jupytext.config import load_jupytext_configuration_file
import nbformat
import pytest

from tito.build import build, read_source
from tito.modules import ROOT, all_modules

MODULES = all_modules()
IDS = [m.name for m in MODULES]


def test_modules_exist():
    assert [m.number for m in MODULES][:2] == ["01", "02"]


def test_jupytext_config_keeps_nbgrader_metadata_and_tags():
    conf = tomllib.loads((ROOT / "jupytext.toml").read_text())
    kept = conf["cell_metadata_filter"].split(",")
    assert "nbgrader" in kept and "tags" in kept


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_saving_from_jupyterlab_keeps_the_source_file_as_it_is(module):
    """An instructor opens the .py as a notebook and saves: jupytext must keep the
    nbgrader metadata and tags, and drop what JupyterLab adds."""
    config = load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
    nb = jupytext.read(module.source_py)
    for cell in nb.cells:
        cell.metadata.update(collapsed=False, execution={"iopub.status.busy": "2026-11-28T10:00:00Z"})
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    assert jupytext.writes(nb, fmt="py:percent", config=config) == module.source_py.read_text()


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_build_is_byte_identical_and_clean(module):
    build(module)
    first = module.source_ipynb.read_bytes()
    assert build(module) is False  # nothing changed
    assert nbformat.writes(read_source(module)) + "\n" == first.decode()
    nb = nbformat.reads(first.decode(), as_version=4)
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert len(ids) == len(set(ids))
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_jupytext_reads_the_nbgrader_metadata_from_cell_headers(module):
    nb = jupytext.read(module.source_py)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    exported = [c for c in nb.cells if "export" in c.metadata.get("tags", [])]
    assert graded and exported


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_solution_markers_sit_inside_function_bodies(module):
    for cell in read_source(module).cells:
        meta = cell.metadata.get("nbgrader", {})
        lines = cell.source.splitlines()
        begins = [l for l in lines if l.strip() == "### BEGIN SOLUTION"]
        if meta.get("solution"):
            assert begins, f"solution cell {meta['grade_id']} has no BEGIN SOLUTION marker: nbgrader would replace it whole"
        for line in begins:
            assert line.startswith(" "), f"{meta.get('grade_id')}: a marker at column 0 would stub out the signature"


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_every_task_has_graded_tests_with_hidden_tests(module):
    """Hidden cases live in source/NN/checks.py (run outside the kernel, tito/checks.py), one check per
    test cell, and nowhere in the notebook: nothing hidden enters the grading sandbox."""
    from tito.checks import load_checks

    nb = read_source(module)
    checks = load_checks(module)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    tasks = sorted(set(re.findall(rf"### Task ({module.number}\.\d+)", text)))
    assert tasks, "no '### Task NN.M' headings"
    for task in tasks:
        number = task.split(".")[1]
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith(
            f"test_{module.number}_{number}_")]
        assert cells, f"Task {task} has no test cell named test_{module.number}_{number}_*"
        assert all(c.metadata["nbgrader"]["points"] > 0 for c in cells)
        missing = [c.metadata["nbgrader"]["grade_id"] for c in cells if c.metadata["nbgrader"]["grade_id"] not in checks]
        assert not missing, f"Task {task}: no outside check for {missing} in source/{module.name}/checks.py"
    graded = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert set(checks) <= graded, f"checks for test cells the notebook does not have: {sorted(set(checks) - graded)}"
    assert not any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells), \
        "hidden tests in the notebook would run beside the student's code: move them to checks.py"


def test_release_never_ships_the_solution_source():
    shipped = [p for p in (ROOT / "release").rglob("*") if p.is_file() and p.suffix != ".ipynb"]
    assert not shipped, f"release/ holds files students must not get: {shipped}"
    for module in MODULES:
        text = module.release_ipynb.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
