"""nbgrader's Autograde, refusing a submission folder with links or special files before reading it.

Plain `nbgrader autograde` (and formgrader's Autograde button) reads
submitted/<student>/<A>/ with the grader's rights: timestamp.txt (whose content
can end up in the log), the notebook (whose first bytes a JSON error prints) and
every other file (copied into autograded/). A symbolic link there hands the
grader somebody else's notebook or a file only the grader may read. This
subclass checks the folder with lstat (tito/intake.py) before nbgrader touches
it, and fails that one submission, naming the offending entries and nothing of
what they point to; the other students are graded as usual.

nbgrader builds its Autograde converter by name inside AutogradeApp and offers
no option for the class, so nbgrader_config.py puts this one in its place
(`install()`).
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbconvert.exporters import Exporter, NotebookExporter
from nbgrader.converters import Autograde, NbGraderException
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

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        # The first step nbgrader takes for a submission (it reads timestamp.txt when not --force).
        refused = submitted_refusal(Path(self.coursedir.root) / self.coursedir.submitted_directory,
                                    student_id, assignment_id) or self._unclear(assignment_id, student_id)
        if refused:
            self.log.error("Not grading %s's %s: %s", student_id, assignment_id, refused)
            raise NbGraderException(f"{student_id}'s {assignment_id}: {refused}")
        return super().init_destination(assignment_id, student_id)


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


def install() -> None:
    """Make `nbgrader autograde` (and formgrader) use SafeAutograde."""
    import nbgrader.apps.autogradeapp as app

    app.Autograde = SafeAutograde
