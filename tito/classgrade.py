"""Grade a whole class: check every submission folder, autograde in parallel, merge the grades.

    intake = find_submissions(root, module)          # who can be graded, who cannot and why
    failed = grade_class(root, module, intake.ready, library, jobs=2)

Each student is autograded by its own `nbgrader autograde --student` process
(so one broken submission cannot stop or change the others: dead kernels, hangs
and memory hogs are handled per notebook by SandboxedExecute), and each of those
processes runs in its own scratch course: a copy of the course's gradebook.db
taken before grading starts, the course's nbgrader_config.py (so the sandbox is
on), source/ linked read-only, and only that student's notebook in submitted/.
No two processes ever write the same sqlite file. As each student finishes, the
one parent process copies the autograde results (auto scores, "needs manual
grade", auto comments, late penalty, timestamp) from the scratch gradebook into
the course's with nbgrader's Gradebook API, exactly the fields nbgrader's own
autograde writes, and moves autograded/<student>/<A>/ into the course.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .grading import env_with_library, failure_reason, logged_warnings, nbgrader
from .intake import changed_grade_ids, read_without_outputs, stripped_metadata, submitted_refusal
from .modules import Module, TitoError, all_modules
from .sandbox import grading_env, one_blas_thread
from . import roster


def default_jobs() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class Intake:
    """What submitted/<student>/<A>/ holds, checked before grading."""
    ready: dict[str, Path] = field(default_factory=dict)     # student -> the notebook to grade
    rejected: dict[str, str] = field(default_factory=dict)   # student -> one-line reason
    notes: dict[str, str] = field(default_factory=dict)      # student -> graded, but worth a word


def grade_ids(path_or_nb) -> set[str]:
    nb = nbformat.read(path_or_nb, as_version=4) if isinstance(path_or_nb, Path) else path_or_nb
    return {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}


def _unreadable(path: Path) -> str | None:
    """Why `path` is not a notebook nbgrader can read, else None."""
    try:
        read_without_outputs(path)
    except Exception as e:  # NotJSONError, ValidationError, UnicodeDecodeError, ...
        kind = type(e).__qualname__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__qualname__}"
        text = " ".join(str(e).split())[:120]
        return (f"{kind}: {text} ({path.name} is not a readable notebook: ask for the .ipynb file "
                "as saved by Jupyter)")
    return None


def _other_assignment(path: Path, module: Module, expected: set[str]) -> str | None:
    """Why `path` is not this assignment's notebook (none of its graded cells match), else None."""
    nb = read_without_outputs(path)
    found = grade_ids(nb)
    if found & expected:
        return None
    stripped = stripped_metadata(nb, nbformat.read(module.release_ipynb, as_version=4), path.name, module.name)
    if stripped:
        return stripped
    matches = [m.name for m in all_modules() if m != module and m.release_ipynb.exists()
               and found & grade_ids(m.release_ipynb)]
    what = f"it is the notebook of {', '.join(matches)}" if matches else "none of its cells are this assignment's"
    return (f"{path.name} is not {module.name}: {what} (no grade_id in common): "
            f"ask the student to submit {module.name}.ipynb")


def _changed_grade_ids(path: Path, module: Module) -> str | None:
    return changed_grade_ids(read_without_outputs(path), nbformat.read(module.release_ipynb, as_version=4))


def find_submissions(root: Path, module: Module) -> Intake:
    """Every folder submitted/<student>/<A>/, with the notebook to grade or why there is none."""
    intake = Intake()
    expected = grade_ids(module.release_ipynb)
    name = f"{module.name}.ipynb"
    for folder in sorted((root / "submitted").glob(f"*/{module.name}")):
        student = folder.parent.name
        if student.startswith("."):
            continue
        # Links, fifos, devices: refused before anything is read through them.
        refused = submitted_refusal(root / "submitted", student, module.name)
        if refused:
            intake.rejected[student] = refused
            continue
        if not folder.is_dir():
            continue
        notebooks = sorted(p.name for p in folder.glob("*.ipynb") if p.is_file())
        if name not in notebooks:
            found = f"found {', '.join(notebooks)}" if notebooks else "the folder has no .ipynb"
            intake.rejected[student] = (f"no {name} ({found}): rename it to {name}, or ask the student to "
                                        "resubmit")
            continue
        notebook = folder / name
        reason = (_unreadable(notebook) or _other_assignment(notebook, module, expected)
                  or _changed_grade_ids(notebook, module))
        if reason:
            intake.rejected[student] = reason
            continue
        others = [n for n in notebooks if n != name]
        if others:
            intake.notes[student] = (f"graded {name}; also submitted {', '.join(others)}, which nbgrader does "
                                     "not grade")
        intake.ready[student] = notebook
    # One file handed in by two students (a hard link, kept by tar or rsync -H): the instructor decides.
    inodes: dict[tuple[int, int], list[str]] = {}
    for student, notebook in intake.ready.items():
        st = os.lstat(notebook)
        if st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(student)
    for sharing in (s for s in inodes.values() if len(s) > 1):
        for student in sharing:
            others = ", ".join(f"submitted/{o}/" for o in sharing if o != student)
            note = (f"its {name} is the same file as {others}'s (a hard link): one of them did not write it; "
                    "replace the copy with the student's own file and regrade")
            intake.notes[student] = f"{intake.notes[student]}; {note}" if student in intake.notes else note
    return intake


def _scratch_course(where: Path, root: Path, module: Module, student: str, notebook: Path, snapshot: Path) -> Path:
    """A course in `where` for one student: config, source/ (linked), the gradebook snapshot, the notebook."""
    where.mkdir(parents=True)
    shutil.copy(root / "nbgrader_config.py", where / "nbgrader_config.py")
    (where / "source").symlink_to(root / "source", target_is_directory=True)
    shutil.copy(snapshot, where / "gradebook.db")
    dest = where / "submitted" / student / module.name
    dest.mkdir(parents=True)
    nbformat.write(read_without_outputs(notebook), dest / notebook.name)  # checked by find_submissions
    # nbgrader collect writes them: the submission time, and the secret release_feedback names the
    # feedback file by (autograde carries it to autograded/, generate_feedback to feedback/).
    for name in ("timestamp.txt", "submission_secret.txt"):
        if (notebook.parent / name).is_file() and not (notebook.parent / name).is_symlink():
            shutil.copy(notebook.parent / name, dest / name)
    return where


def merge(course_db: Path, scratch_db: Path, assignment: str, student: str) -> None:
    """Copy what `nbgrader autograde` wrote for `student` in the scratch gradebook into the course's, with
    the student's name (roster.csv or the OS user's full name: tito/roster.py) where it has none."""
    from nbgrader.api import Gradebook  # slow import: only when grading
    from sqlalchemy.exc import SAWarning

    with Gradebook(f"sqlite:///{scratch_db}") as src, Gradebook(f"sqlite:///{course_db}") as gb, \
            warnings.catch_warnings():
        # nbgrader's add_submission autoflushes half-made rows ("not in session") and commits them
        # whole; the tests count the rows it leaves.
        warnings.simplefilter("ignore", SAWarning)
        done = src.find_submission(assignment, student)
        roster.fill_in(gb, course_db.parent, student)
        sub = gb.update_or_create_submission(assignment, student, timestamp=done.timestamp)
        for nb in done.notebooks:
            to = gb.find_submission_notebook(nb.name, assignment, student)
            to.late_submission_penalty = nb.late_submission_penalty
            for g in nb.grades:
                grade = gb.find_grade(g.name, nb.name, assignment, student)
                grade.auto_score, grade.needs_manual_grade = g.auto_score, g.needs_manual_grade
            for c in nb.comments:
                gb.find_comment(c.name, nb.name, assignment, student).auto_comment = c.auto_comment
        sub.timestamp = done.timestamp
        gb.db.commit()


def _grade_one(scratch: Path, root: Path, module: Module, student: str, notebook: Path, snapshot: Path,
               env: dict, options: tuple[str, ...]) -> tuple[Path, str]:
    course = _scratch_course(scratch, root, module, student, notebook, snapshot)
    log = nbgrader(course, "autograde", module.name, "--student", student, "--force", *options, env=env)
    return course, log


def grade_class(root: Path, module: Module, students: dict[str, Path], library: Path | None,
                jobs: int | None = None, options: tuple[str, ...] = (), sandboxed: bool = True,
                progress: bool = False, warnings: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Autograde `students` (student -> notebook) for `module` with `jobs` nbgrader processes at once,
    into root/gradebook.db and root/autograded/; returns student -> one-line reason for those that
    could not be graded. The assignment must already be in the gradebook (grading.generate).
    `warnings`, when given, gets student -> nbgrader's warning lines for each graded student that had any
    (an edited locked cell among them: grading.logged_warnings)."""
    from nbgrader.api import MissingEntry
    from tqdm import tqdm

    jobs = jobs or default_jobs()
    if jobs < 1:
        raise TitoError(f"--jobs must be at least 1, got {jobs}")
    course_db = root / "gradebook.db"
    if not course_db.exists():
        raise TitoError(f"{course_db} does not exist: run `nbgrader generate_assignment {module.name}` first")
    env = one_blas_thread(grading_env(env_with_library(library) if library else dict(os.environ), sandboxed))
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tito-classgrade-") as tmp:
        tmp = Path(tmp)
        snapshot = Path(shutil.copy(course_db, tmp / "gradebook.db"))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running = {pool.submit(_grade_one, tmp / f"s{i}", root, module, student, notebook, snapshot,
                                   env, options): student
                       for i, (student, notebook) in enumerate(sorted(students.items()))}
            bar = tqdm(as_completed(running), total=len(running), desc=f"autograding {module.name}",
                       unit="student", disable=not progress)
            for done in bar:
                student = running[done]
                try:
                    course, log = done.result()
                    if warnings is not None and logged_warnings(log):
                        warnings[student] = logged_warnings(log)
                    merge(course_db, course / "gradebook.db", module.name, student)
                    graded = root / "autograded" / student / module.name
                    if graded.exists():
                        shutil.rmtree(graded)
                    graded.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(course / "autograded" / student / module.name, graded)
                    shutil.rmtree(course)
                except TitoError as e:
                    failed[student] = failure_reason(e)
                except MissingEntry as e:  # nbgrader ran but recorded nothing for this student
                    failed[student] = (f"nbgrader recorded no grades ({e}): grade it alone with "
                                       f"`nbgrader autograde {module.name} --student <id>` to read its log")
    return failed
