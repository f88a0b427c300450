"""nbgrader's Autograde, refusing a submission folder with links or special files before reading it.

Plain `nbgrader autograde` (and formgrader's Autograde button) reads
submitted/<student>/<A>/ with the grader's rights: timestamp.txt (whose content
can end up in the log), the notebook (whose first bytes a JSON error prints) and
every other file (copied into autograded/). A symbolic link there hands the
grader somebody else's notebook or a file only the grader may read. This
subclass checks the folder with lstat (tito/intake.py) before nbgrader touches
it, and fails that one submission, naming the offending entries and nothing of
what they point to; the other students are graded as usual.

It also grades every submission against the course's current test cells. nbgrader
replaces each locked cell of a submission with the copy recorded in gradebook.db, and
logs "Attribute 'checksum' for cell ... has changed!" for each one that differs. The
gradebook holds what the last `generate_assignment` recorded; release/ is committed and
changes with a git pull. A gradebook recorded before the pull would grade every student
with the old tests and log that warning for every test cell of every untouched
submission, which reads as tampering. So before grading an assignment, its locked cells
in the gradebook are compared with the current source (source/NN/NN.py as
`tito.hooks.build_before_generate` builds it, which is what release/ is made from);
when they differ, `nbgrader generate_assignment` records the current ones first (into a
scratch release folder: release/ is left alone), as `tito grade` always does.

nbgrader builds its Autograde converter by name inside AutogradeApp, and formgrader's
Autograde button by a name imported in nbgrader.apps.api, and offers no option for the
class, so nbgrader_config.py puts this one in both places (`install()`).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nbformat
from nbconvert.exporters import Exporter, NotebookExporter
from nbgrader import utils
from nbgrader.converters import Autograde, NbGraderException
from nbgrader.preprocessors import OverwriteCells as _OverwriteCells
from traitlets import Type

from .intake import changed_grade_ids, read_without_outputs, stripped_metadata, submitted_refusal


class OutputlessExporter(NotebookExporter):
    """nbconvert's notebook exporter, reading a notebook without its saved outputs (nbgrader clears
    them before grading anyway): a saved output that breaks the notebook schema cannot stop it."""

    def from_file(self, file_stream, resources=None, **kw):
        from nbformat.reader import parse_json

        raw = parse_json(file_stream.read())
        for cell in raw.get("cells", []) if isinstance(raw, dict) and isinstance(raw.get("cells"), list) else []:
            if isinstance(cell, dict) and cell.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
        return self.from_notebook_node(nbformat.reads(json.dumps(raw), as_version=4), resources=resources, **kw)


class SafeAutograde(Autograde):
    """Autograde that refuses a submission holding links or special files, unread, and reads
    notebooks without their saved outputs."""

    exporter_class = Type(OutputlessExporter, klass=Exporter).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recorded: set[str] = set()  # assignments whose gradebook cells were checked in this run

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        # The first step nbgrader takes for a submission (it reads timestamp.txt when not --force).
        refused = submitted_refusal(Path(self.coursedir.root) / self.coursedir.submitted_directory,
                                    student_id, assignment_id) or self._unclear(assignment_id, student_id)
        if refused:
            self.log.error("Not grading %s's %s: %s", student_id, assignment_id, refused)
            raise NbGraderException(f"{student_id}'s {assignment_id}: {refused}")
        return super().init_destination(assignment_id, student_id)

    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        self._record_current_cells(assignment_id)
        super().init_assignment(assignment_id, student_id)

    def _record_current_cells(self, assignment_id: str) -> None:
        """Record the assignment's current locked cells in the gradebook when it holds others (once a run)."""
        if assignment_id in self._recorded:
            return
        stale = stale_cells(self.coursedir, assignment_id)
        if not stale:
            self._recorded.add(assignment_id)
            return
        from .grading import nbgrader
        from .modules import TitoError

        cells = [f"{name}: {', '.join(ids[:3])}{f' and {len(ids) - 3} more' if len(ids) > 3 else ''}"
                 for name, ids in stale.items()]
        self.log.info("gradebook.db holds other locked cells for %s than its current source (%s): recording the "
                      "current ones first (nbgrader generate_assignment; release/ is not touched)",
                      assignment_id, "; ".join(cells))
        with tempfile.TemporaryDirectory(prefix="tito-record-") as tmp:
            try:
                nbgrader(Path(self.coursedir.root), "generate_assignment", assignment_id, "--force",
                         f"--CourseDirectory.release_directory={tmp}/release")
            except TitoError as error:
                msg = (f"gradebook.db holds other locked cells for {assignment_id} than its source, and recording "
                       f"the current ones failed: {error}")
                self.log.error(msg)
                raise NbGraderException(msg) from None
        left = stale_cells(self.coursedir, assignment_id)
        if left:  # cannot happen unless generate_assignment converts something else than we read
            msg = f"gradebook.db still holds other locked cells for {assignment_id} than its source: {left}"
            self.log.error(msg)
            raise NbGraderException(msg)
        self._recorded.add(assignment_id)  # not before: after a failure, every student of the run fails likewise

    def _unclear(self, assignment_id: str, student_id: str) -> str | None:
        """Why a notebook cannot be graded (nbgrader metadata stripped, a grade_id changed), when the
        course has the release to compare with; else None."""
        source = Path(self._format_source(assignment_id, student_id))
        release = Path(self.coursedir.format_path(self.coursedir.release_directory, ".", assignment_id))
        for notebook in sorted(source.glob("*.ipynb")):
            if not (release / notebook.name).is_file():
                continue
            try:
                nb = read_without_outputs(notebook)
            except Exception:
                continue  # nbgrader says why it cannot read it
            released = nbformat.read(release / notebook.name, as_version=4)
            reason = (stripped_metadata(nb, released, notebook.name, assignment_id)
                      or changed_grade_ids(nb, released))
            if reason:
                return reason
        return None


# What OverwriteCells logs (INFO) for a locked cell of an earlier release; tito grade shows it (grading.logged_warnings).
EARLIER_RELEASE = ("locked cell {name} is as an earlier release of the assignment had it (it matches the checksum "
                   "it was released with), not as the course has it now: graded with the current copy")


class OverwriteCells(_OverwriteCells):
    """nbgrader's OverwriteCells (it puts the course's copy of every locked cell back), telling a cell
    from an earlier release apart from an edited one. A student who got the assignment before the
    instructor changed a test cell hands in that cell untouched: nbgrader logs it as "Attribute
    'checksum' ... has changed!", as if edited. Such a cell still matches the checksum nbgrader wrote into
    its metadata when it was released; an edit in JupyterLab or in the file leaves that checksum behind,
    and is logged by nbgrader as before. The cell is replaced either way: only the log line differs
    (a student who recomputes nbgrader's md5 by hand gets this line instead of the warning)."""

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.metadata.get("nbgrader", {})
        try:
            self._as_released = bool(meta.get("checksum")) and meta["checksum"] == utils.compute_checksum(cell)
        except (KeyError, TypeError, ValueError):  # metadata nbgrader cannot checksum: nbgrader reports it
            self._as_released = False
        return super().preprocess_cell(cell, resources, cell_index)

    def report_change(self, name, attr, old, new):
        if attr == "checksum" and self._as_released:
            self.log.info(EARLIER_RELEASE.format(name=name))
        else:
            super().report_change(name, attr, old, new)


def stale_cells(coursedir, assignment_id: str) -> dict[str, list[str]]:
    """notebook -> grade_ids of the locked cells whose text the gradebook records differently from the
    assignment's current source (tito.hooks.current_source), or not at all, or no longer has."""
    from nbgrader.api import Gradebook, MissingEntry

    from .hooks import current_source

    source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment_id))
    stale = {}
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            notebooks = gb.find_assignment(assignment_id).notebooks
        except MissingEntry:
            return {}  # nbgrader says so
        for notebook in notebooks:
            nb = current_source(source / f"{notebook.name}.ipynb")
            if nb is None:
                continue
            recorded = {c.name: c.checksum for c in notebook.source_cells if c.locked}
            current = {}
            for cell in nb.cells:
                if "grade_id" in cell.metadata.get("nbgrader", {}) and utils.is_locked(cell):
                    current[cell.metadata.nbgrader["grade_id"]] = utils.compute_checksum(cell)
            differ = sorted(gid for gid in recorded.keys() | current.keys() if recorded.get(gid) != current.get(gid))
            if differ:
                stale[f"{notebook.name}.ipynb"] = differ
    return stale


def install() -> None:
    """Make `nbgrader autograde` and formgrader's Autograde button use SafeAutograde."""
    import nbgrader.apps.api as api
    import nbgrader.apps.autogradeapp as app

    app.Autograde = SafeAutograde
    api.Autograde = SafeAutograde
