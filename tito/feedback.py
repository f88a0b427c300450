"""What a graded notebook says beyond its scores, in words a student can act on:

- a non-test cell that raised before a failing test (a SyntaxError in a
  solution cell makes every later test fail with a NameError);
- test cells the student deleted, which nbgrader restored before grading;
- failures that come from the student's own export of an earlier module.
"""
from __future__ import annotations

import re

from .export import is_reference
from .modules import Module, all_modules

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")  # IPython's traceback frame of the cell itself
WHERE_SUFFIX = re.compile(r"\s*\([^()]*, line \d+\)$")  # SyntaxError's "(2537199664.py, line 4)"
STUB = re.compile(r"Module (\d\d) \((\w+)\), (Task \d\d\.\d+)")  # export.py's NotImplementedError text
NOT_RUN = {"NotRun"}  # safe_execute.py's marker for cells after a dead kernel: not a cause


def _is_test(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


def _error(cell):
    return next((o for o in cell.get("outputs", []) if o.output_type == "error"), None)


def _heading_above(cells, i: int) -> str:
    """The last markdown heading line ('### Task 11.2: ...') before cell i, or ''."""
    for cell in reversed(cells[:i]):
        if cell.cell_type == "markdown":
            heads = [line.strip() for line in cell.source.splitlines() if line.lstrip().startswith("#")]
            if heads:
                return heads[-1]
    return ""


def raised_before_tests(graded, submitted) -> list[str]:
    """One line for every non-test code cell of `graded` that raised before its last failing test cell:
    'Fix this first: cell 13 (id matmul; under "### Task 01.4: matmul") raised SyntaxError at line 9: ...'
    for the student's own (solution) cells, first; then 'Also raised: ...' for given cells, which
    usually fail because of a task above them. Cell numbers are those of the `submitted` notebook
    (nbgrader may have inserted cells); the heading is what a student can find in JupyterLab."""
    cells = graded.cells
    failing = [i for i, c in enumerate(cells) if c.cell_type == "code" and _is_test(c) and _error(c)]
    numbers = {c.get("id"): i + 1 for i, c in enumerate(submitted.cells)}
    own, given = [], []
    for i, cell in enumerate(cells[:failing[-1]] if failing else []):
        err = _error(cell) if cell.cell_type == "code" and not _is_test(cell) else None
        if err is None or err.ename in NOT_RUN:
            continue
        cid = cell.get("id", "?")
        what = WHERE_SUFFIX.sub("", err.get("evalue", "")).strip().splitlines()
        what = f" ({what[0][:200]})" if what else ""
        where = CELL_LINE.search(ANSI.sub("", "\n".join(err.get("traceback", []))))
        lines = cell.source.splitlines()
        heading = _heading_above(cells, i)
        under = f'; under "{heading}"' if heading else ""
        head = f"cell {numbers.get(cid, i + 1)} (id {cid}{under}) raised {err.ename}"
        if where and 0 < int(where.group(1)) <= len(lines):
            line = int(where.group(1))
            text = f"{head} at line {line}: {lines[line - 1].strip()}{what}"
        else:
            text = f"{head}{what}"
        if cell.metadata.get("nbgrader", {}).get("solution"):
            own.append(f"Fix this first: {text}")
        else:
            given.append(f"Also raised: {text} (a given cell: it runs your code from the tasks above it; "
                         f"it passes once they do)")
    return own + given


def restored_cells(graded, submitted) -> list[str]:
    """grade_ids of the test cells in `graded` that the `submitted` notebook did not have."""
    present = {c.metadata.get("nbgrader", {}).get("grade_id") for c in submitted.cells}
    return [c.metadata["nbgrader"]["grade_id"] for c in graded.cells
            if _is_test(c) and c.metadata["nbgrader"].get("grade_id") not in present]


def earlier_exports(module: Module) -> list[Module]:
    """Earlier modules whose tinytorch_lib file is the student's own export."""
    return [m for m in all_modules()
            if m.number < module.number and m.library_file.exists() and not is_reference(m.library_file)]


def blame_earlier_exports(errors: list[str], exports: list[Module]) -> list[str]:
    """Lines telling the student that the failures (`errors`) come from their own `exports`
    of earlier modules (see earlier_exports), and what to run; [] when nothing points there."""
    own = {m.number: m for m in exports}
    stubs: dict[str, list[str]] = {}
    for error in errors:
        for number, _, task in STUB.findall(error):
            if number in own and task not in stubs.setdefault(number, []):
                stubs[number].append(task)
    lines = []
    for number, tasks in stubs.items():
        m = own[number]
        lines.append(f"These failures come from your own export of Module {number} ({m.title}), not from this "
                     f"notebook: tinytorch_lib/{m.library_file.name} is unfinished ({', '.join(tasks)} "
                     f"{'raises' if len(tasks) == 1 else 'raise'} NotImplementedError).")
        lines.append(f"  Finish Module {number} and run `tito module export {number}`, or run "
                     f"`tito module reset {number}` to test on the course reference.")
    others = [m for n, m in own.items() if n not in stubs]
    if others and errors:
        files = ", ".join(f"tinytorch_lib/{m.library_file.name} (Module {m.number})" for m in others)
        lines.append(f"Your own exports of earlier modules are in tinytorch_lib: {files}. If a failure comes from "
                     f"one of them, `tito module reset NN` with that module's number puts the course reference back.")
    return lines
