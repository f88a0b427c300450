"""nbgrader hooks named in nbgrader_config.py (as importable strings, so Formgrader can show them).

`build_before_generate` runs before `nbgrader generate_assignment` converts an assignment,
Formgrader's Generate button included: it rebuilds source/NN_name/NN_name.ipynb from the
NN_name.py next to it, so Generate releases the .py the instructor edits, never a stale build.
"""
from __future__ import annotations

from pathlib import Path

from traitlets.log import get_logger

from .build import build, read_source
from .modules import Module, TitoError

import nbformat


def _hand_edited(py: Path, ipynb: Path, module: Module) -> bool:
    """The .ipynb was saved after the .py and is not what the .py builds: someone edited it."""
    if not ipynb.exists() or ipynb.stat().st_mtime <= py.stat().st_mtime:
        return False
    return ipynb.read_text() != nbformat.writes(read_source(module, py)) + "\n"


def current_source(ipynb: Path):
    """The notebook `nbgrader generate_assignment` would convert for `ipynb` now, read without writing
    anything: what build_before_generate would build from the .py next to it, else the .ipynb as it is
    (hand-edited, a broken .py, or a course with notebooks only). None when neither file exists."""
    py = ipynb.with_suffix(".py")
    if py.exists():
        module = Module(py.stem[:2], py.stem)
        try:
            if not _hand_edited(py, ipynb, module):
                return read_source(module, py)
        except TitoError:
            pass  # generate_assignment logs it and converts the last build
    return nbformat.read(ipynb, as_version=4) if ipynb.exists() else None


def build_before_generate(assignment: str, student: str, notebooks: list[str], **_) -> None:
    log = get_logger()
    for notebook in notebooks:
        ipynb = Path(notebook).resolve()
        py = ipynb.with_suffix(".py")
        if not py.exists():  # a scratch course holds only the built notebook
            continue
        module = Module(py.stem[:2], py.stem)
        try:
            if _hand_edited(py, ipynb, module):
                log.warning(f"{ipynb.name} was edited after {py.name}: generating from the edited "
                            f"{ipynb.name}; copy the change into {py.name}, or `tito build` discards it")
                continue
            changed = build(module, py)
        except TitoError as error:
            log.error(f"{py}: {error}: generating from the last build of {ipynb.name}")
            continue
        log.info(f"{ipynb.name}: {'rebuilt' if changed else 'up to date'} from {py.name}")


from nbgrader.preprocessors import NbGraderPreprocessor  # noqa: E402


class NameStubs(NbGraderPreprocessor):
    """After ClearSolutions: each bare `raise NotImplementedError()` stub in a solution cell names its
    module, task and function, as a student's export does (tito/export.py), so Run All in the
    student's notebook says which task is unfinished, not a bare `NotImplementedError:`."""

    def preprocess(self, nb, resources):
        from .export import STUB, _stub_message

        name = resources.get("nbgrader", {}).get("notebook") or resources.get("unique_key", "")
        if not (name[:2].isdigit() and name[2:3] == "_"):
            return nb, resources
        module = Module(name[:2], name)
        for cell in nb.cells:
            if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
                continue
            lines = cell.source.splitlines()
            for i, line in enumerate(lines):
                m = STUB.match(line)
                if m:
                    lines[i] = f"{m.group('indent')}raise NotImplementedError({_stub_message(module, lines, i)!r})"
            cell.source = "\n".join(lines)
        return nb, resources
