"""Build source/NN_name/NN_name.ipynb from its jupytext percent file.

The build is deterministic (two builds are byte-identical): cell ids come from
the nbgrader grade_id or a hash of the cell's position and text, outputs and
execution counts are empty, and notebook metadata is fixed.
"""
from __future__ import annotations

import hashlib
import os

import jupytext
import nbformat

from .modules import Module, TitoError

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


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


def read_source(module: Module):
    """The module's notebook, read from its percent .py, normalised."""
    if not module.source_py.exists():
        raise TitoError(f"{module.source_py} is missing")
    nb = jupytext.read(module.source_py, fmt="py:percent")
    used: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cell.id = _cell_id(cell, i, used)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("nbgrader", "tags")}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata = nbformat.NotebookNode(
        kernelspec=KERNELSPEC,
        language_info={"name": "python"},
        # Where the instructor edits this notebook (`tito build` makes it from there).
        tinytorch={"built_from": f"source/{module.name}/{module.name}.py"},
    )
    nb.nbformat, nb.nbformat_minor = 4, 5
    _check_nbgrader(module, nb)
    return nb


def build(module: Module) -> bool:
    """Write the module's .ipynb; return True when it changed."""
    nb = read_source(module)
    text = nbformat.writes(nb) + "\n"
    path = module.source_ipynb
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic: parallel test workers may build too
    tmp.write_text(text)
    os.replace(tmp, path)
    return True
