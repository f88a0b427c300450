"""Build source/NN_name/NN_name.ipynb from its jupytext percent file.

The build is deterministic (two builds are byte-identical): cell ids come from
the nbgrader grade_id or a hash of the cell's position and text, outputs and
execution counts are empty, and notebook metadata is fixed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jupytext
import nbformat

from .modules import Module, TitoError

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# What ipykernel reports for Python 3.11 (kernel_info_reply), minus the micro version. JupyterLab
# writes the kernel's language_info into the notebook when the kernel starts; any key missing
# here would make a fresh notebook look edited (unsaved) a few seconds after opening it.
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}
# The first line of every graded test cell: nbgrader locks these cells (read-only, not
# deletable) in the student's notebook, and JupyterLab gives no other sign of it.
LOCKED_NOTE = "# Locked test cell: read-only and cannot be deleted; the grader runs the course's own copy."
# Appended to the notebook's first cell: Run All stops at the first unfinished task.
RUN_ALL_NOTE = (
    "> **Run All stops at the first task you have not done yet** (its `NotImplementedError`), "
    "so a fresh notebook shows no measurements or plots below it. Finish the tasks in order, "
    "or run the cells below one by one (Shift+Enter) to see how far they get."
)


def _cell_id(cell, index: int, used: set[str]) -> str:
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    base = grade_id or "cell-" + hashlib.sha1(f"{index}:{cell.source}".encode()).hexdigest()[:10]
    cid, n = base[:64], 1
    while cid in used:
        n += 1
        cid = f"{base[:60]}-{n}"
    used.add(cid)
    return cid


def _check_nbgrader(module: Module, nb) -> None:
    seen = set()
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        gid = meta.get("grade_id")
        if not gid:
            raise TitoError(f"{module.source_py}: cell {i} has nbgrader metadata but no grade_id")
        if gid in seen:
            raise TitoError(f"{module.source_py}: grade_id '{gid}' is used twice")
        seen.add(gid)
        if meta.get("grade") and "points" not in meta:
            raise TitoError(f"{module.source_py}: graded cell '{gid}' has no points")


def _python_version() -> str:
    """The version ipykernel will report, pinned to the course's Python 3.11 series: the
    micro version of the machine that built the release (committed, so deterministic)."""
    return "3.11.7"


def read_source(module: Module, source_py: Path | None = None):
    """The module's notebook, read from its percent .py (or `source_py`), normalised."""
    source_py = source_py or module.source_py
    if not source_py.exists():
        raise TitoError(f"{source_py} is missing")
    nb = jupytext.read(source_py, fmt="py:percent")
    used: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cell.id = _cell_id(cell, i, used)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("nbgrader", "tags")}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            cell.source = f"{LOCKED_NOTE}\n{cell.source}"
    if nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source = f"{nb.cells[0].source.rstrip()}\n\n{RUN_ALL_NOTE}"
    nb.metadata = nbformat.NotebookNode(
        kernelspec=KERNELSPEC,
        language_info={**LANGUAGE_INFO, "version": _python_version()},
        # Where the instructor edits this notebook (`tito build` makes it from there).
        tinytorch={"built_from": f"source/{module.name}/{module.name}.py"},
    )
    nb.nbformat, nb.nbformat_minor = 4, 5
    _check_nbgrader(module, nb)
    return nb


def build(module: Module, source_py: Path | None = None) -> bool:
    """Write the module's .ipynb (next to `source_py` when given); return True when it changed."""
    nb = read_source(module, source_py)
    text = nbformat.writes(nb) + "\n"
    path = source_py.with_suffix(".ipynb") if source_py else module.source_ipynb
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic: parallel test workers may build too
    tmp.write_text(text)
    os.replace(tmp, path)
    return True
