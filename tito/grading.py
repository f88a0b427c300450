"""Run nbgrader: generate assignments and autograde notebooks.

nbgrader runs in a subprocess so its kernel sees the PYTHONPATH we choose:
autograding puts a fresh reference export of tinytorch_lib first, so each
module is graded on its own work against the reference of the earlier ones.
The graded module's own file and the later ones are never on the kernel's
path (reference_library(where, module); the sandbox shows a kernel only the
earlier modules' files, tito/sandbox.py visible_library): a solution cell that
imports the course's reference of its own task gets an ImportError.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import feedback
from .build import build
from .export import export_reference
from .intake import read_without_outputs
from .modules import LIBRARY, LIBRARY_FILES, ROOT, Module, TitoError, all_modules
from .sandbox import grading_env

TEST_ID = re.compile(r"^test_(\d\d)_(\d+)")


@dataclass
class CellGrade:
    grade_id: str
    score: float
    max_score: float
    error: str = ""  # first line of the failure, when the cell raised

    @property
    def task(self) -> str:
        m = TEST_ID.match(self.grade_id)
        return f"Task {m.group(1)}.{int(m.group(2))}" if m else self.grade_id


@dataclass
class NotebookGrade:
    student: str
    cells: list[CellGrade] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)    # non-test cells that raised before a failing test
    restored: list[str] = field(default_factory=list)  # grade_ids of test cells nbgrader put back

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells)

    def by_task(self) -> dict[str, tuple[float, float]]:
        tasks: dict[str, tuple[float, float]] = {}
        for c in self.cells:
            s, m = tasks.get(c.task, (0.0, 0.0))
            tasks[c.task] = (s + c.score, m + c.max_score)
        return tasks


# nbgrader's own address space (a soft RLIMIT_AS: its sandboxed kernels raise theirs to
# SandboxedKernelManager.memory_bytes). SafeExecute keeps at most 10 MiB of a notebook's outputs and
# the kernel's sockets refuse messages over 16 MiB, so nbgrader needs far less; this bounds what a
# bug of ours could take.
NBGRADER_MEMORY_BYTES = 4 << 30


def nbgrader(course: Path, *args: str, env: dict | None = None, timeout: float = 1800,
             on_cell=None) -> str:
    """Run `nbgrader ARGS` in `course`; raise TitoError with its log on failure.

    Its kernels' connection folders and memory cgroups go in a folder and a cgroup of this run
    (tito/limits.py), removed here whatever ends it: nbgrader killed at `timeout` included.
    on_cell(grade_id, passed, seconds), if given, is called as each graded cell finishes
    (tito/safe_execute.py report_graded_cell)."""
    from . import limits
    from .safe_execute import PROGRESS_ENV

    # The course is `course`, whatever a Jupyter config file says (a hub's instructor setup sets
    # CourseDirectory.root to the course directory, and tito grades in scratch courses).
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"]
    prlimit = shutil.which("prlimit")
    if prlimit:
        cmd = [prlimit, f"--as={NBGRADER_MEMORY_BYTES}:", "--", *cmd]
    env = dict(os.environ if env is None else env)
    # nbgrader runs `alembic` from PATH: put this interpreter's bin/ first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if on_cell is not None:
        env[PROGRESS_ENV] = "1"
    run = limits.RunLimits(env)
    try:
        if on_cell is None:
            proc = subprocess.run(cmd, cwd=course, env=run.env, capture_output=True, text=True, timeout=timeout)
            returncode, log = proc.returncode, proc.stdout + proc.stderr
        else:
            returncode, log = _streamed(cmd, course, run.env, timeout, on_cell)
    except subprocess.TimeoutExpired:
        raise TitoError(f"nbgrader {' '.join(args)} took longer than {timeout:.0f} s") from None
    finally:
        run.remove()
    if returncode != 0 or "Exception while loading config file" in log:
        # traitlets only logs a broken nbgrader_config.py and goes on with defaults: stop instead.
        lines = log.strip().splitlines()
        raise TitoError(f"nbgrader {' '.join(args)} failed:\n" + "\n".join(lines[-60:]))
    return log


def _streamed(cmd: list, cwd: Path, env: dict, timeout: float, on_cell) -> tuple[int, str]:
    """Run cmd, its stderr merged into stdout and read line by line: the progress lines go to on_cell,
    the others make up the log. -> (return code, log). Killed at `timeout` (TimeoutExpired)."""
    import threading

    from .safe_execute import PROGRESS_MARK

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = []

    def kill():
        killed.append(True)
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == PROGRESS_MARK and len(parts) == 4:
                on_cell(parts[1], parts[2] == "pass", float(parts[3]))
            else:
                lines.append(line)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if killed:
        raise subprocess.TimeoutExpired(cmd, timeout)
    return proc.returncode, "".join(lines)


NBGRADER_LINE = re.compile(r"^\[[\w.]+ \| (INFO|WARNING|ERROR|CRITICAL)\] (.+)$", re.M)
CHECKSUM_CHANGED = re.compile(r"Attribute 'checksum' for cell (\S+) has changed!")
# Said elsewhere in tito grade's report ("Test cells missing from the submission, restored ...").
ALREADY_REPORTED = ("Missing grade cell ",)


def logged_warnings(log: str) -> list[str]:
    """nbgrader's warning and error lines in a run's log, without their prefix, and the note on a locked
    cell of an earlier release (tito.safe_autograde.OverwriteCells); an edited locked cell (nbgrader:
    "Attribute 'checksum' for cell X has changed!") is said in plain words."""
    found = []
    for m in NBGRADER_LINE.finditer(log):
        level, text = m.group(1), m.group(2).strip()
        if level == "INFO" and not text.startswith("locked cell "):
            continue
        changed = CHECKSUM_CHANGED.match(text)
        if changed:
            text = (f"locked cell {changed.group(1)} differs from the course's copy (edited in the submission): "
                    "graded with the course's copy")
        if not text.startswith(ALREADY_REPORTED):
            found.append(text[:300])
    return found


def failure_reason(error: TitoError) -> str:
    """The last exception line of a failed nbgrader run ('NotJSONError: ...'), else its last line."""
    lines = str(error).splitlines()
    raised = [l.strip() for l in lines if re.match(r"\s*[\w.]*(Error|Exception)\b.*:", l)]
    return (raised or lines)[-1][:200]


def reference_library(where: Path, module: Module | None = None) -> Path:
    """A fresh reference export in `where`/tinytorch_lib of every module, or with `module`, of the
    modules before it only (what grading `module` may import); returns `where`."""
    lib = where / "tinytorch_lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name in sorted({p.name for p in LIBRARY.glob("*.py")} - set(LIBRARY_FILES.values())):  # hand-written
        shutil.copy(LIBRARY / name, lib / name)
    if not (where / "data").is_symlink():  # tinytorch_lib.data_dir(): data/ beside the package
        (where / "data").symlink_to(ROOT / "data", target_is_directory=True)
    for earlier in all_modules():
        if module is None or earlier.number < module.number:
            export_reference(earlier, lib)
    return where


def env_with_library(path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def new_course(where: Path, modules: list[Module]) -> Path:
    """A scratch nbgrader course in `where` with the built source of `modules`."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", where / "nbgrader_config.py")
    for module in modules:
        build(module)
        dest = where / "source" / module.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(module.source_ipynb, dest / module.source_ipynb.name)
    return where


def generate(course: Path, module: Module, release_dir: Path | None = None) -> None:
    """nbgrader generate_assignment (also records the assignment in the gradebook)."""
    args = ["generate_assignment", module.name, "--force"]
    if release_dir is not None:
        args.append(f"--CourseDirectory.release_directory={release_dir}")
    nbgrader(course, *args)


MESSAGE_CHARS = 1500  # of a failing test's message, all its lines: expected and got arrays included


def _errors(autograded_nb: Path) -> dict[str, str]:
    """grade_id -> the first error in that cell's outputs (the notebook's own test; a failed outside check is appended after it)."""
    errors = {}
    if not autograded_nb.exists():
        return errors
    nb = nbformat.read(autograded_nb, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if gid and out.output_type == "error" and gid not in errors:  # the first: the notebook's own test
                text = f"{out.ename}: {out.evalue}" if out.evalue else out.ename
                errors[gid] = text if len(text) <= MESSAGE_CHARS else \
                    text[:MESSAGE_CHARS] + f" ... (cut at {MESSAGE_CHARS} characters; the notebook shows all of it)"
    return errors


def _notes(course: Path, module: Module, student: str) -> tuple[list[str], list[str]]:
    """(cells that raised before a failing test, restored test cells) of a graded submission."""
    graded = course / "autograded" / student / module.name / f"{module.name}.ipynb"
    submitted = course / "submitted" / student / module.name / f"{module.name}.ipynb"
    if not (graded.exists() and submitted.exists()):
        return [], []
    graded, submitted = nbformat.read(graded, as_version=4), read_without_outputs(submitted)
    return feedback.raised_before_tests(graded, submitted), feedback.restored_cells(graded, submitted)


def autograde(course: Path, module: Module, submissions: dict[str, Path], library: Path | None,
              options: tuple[str, ...] = (), sandboxed: bool = True, on_cell=None) -> dict[str, NotebookGrade]:
    """Autograde each student's notebook for `module`; returns student -> grade.

    `library`: a folder holding the tinytorch_lib to import first (None: the installed one).
    `options`: extra nbgrader flags, e.g. ("--Execute.timeout=5",).
    `sandboxed`: False runs the kernels with our own rights (see tito/sandbox.py).
    The assignment must already be in the course's gradebook (see `generate`).
    """
    for student, notebook in submissions.items():
        dest = course / "submitted" / student / module.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(notebook, dest / f"{module.name}.ipynb")
    failed = autograde_each(course, module, list(submissions), library, options, sandboxed=sandboxed,
                            on_cell=on_cell)
    if failed:
        raise next(iter(failed.values()))
    return read_grades(course, module, list(submissions))


def autograde_each(course: Path, module: Module, students: list[str], library: Path | None,
                   options: tuple[str, ...] = (), progress: bool = False,
                   sandboxed: bool = True, on_cell=None) -> dict[str, TitoError]:
    """Run `nbgrader autograde` once per student already in course/submitted/, so one
    broken submission cannot stop the others; returns student -> error for those that failed."""
    from tqdm import tqdm

    env = grading_env(env_with_library(library) if library else dict(os.environ), sandboxed)
    failed = {}
    for student in tqdm(students, desc=f"autograding {module.name}", unit="student", disable=not progress):
        try:
            nbgrader(course, "autograde", module.name, "--student", student, "--force", *options, env=env,
                     on_cell=on_cell)
        except TitoError as e:
            failed[student] = e
    return failed


def read_grades(course: Path, module: Module, students: list[str]) -> dict[str, NotebookGrade]:
    from nbgrader.api import Gradebook  # slow import: only when grading

    grades = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in students:
            sub = gb.find_submission_notebook(module.name, module.name, student)
            errors = _errors(course / "autograded" / student / module.name / f"{module.name}.ipynb")
            cells = [CellGrade(g.name, float(g.score or 0), float(g.max_score), errors.get(g.name, ""))
                     for g in sub.grades if g.max_score]
            grades[student] = NotebookGrade(student, sorted(cells, key=lambda c: c.grade_id),
                                            *_notes(course, module, student))
    return grades


def generated_course(where: Path, module: Module) -> Path:
    """A scratch course in `where` with `module` generated (its gradebook knows the assignment).

    `nbgrader generate_assignment` costs a few seconds of a `tito module test`, the same every time for
    the same notebook: its result is kept per user in the temporary folder, under the digest of the
    built notebook and the course config, and copied from there."""
    import hashlib

    build(module)
    key = hashlib.sha256(module.source_ipynb.read_bytes() + (ROOT / "nbgrader_config.py").read_bytes()).hexdigest()
    cache_root = Path(tempfile.gettempdir()) / f"tito-generated-{os.getuid()}"
    cache_root.mkdir(mode=0o700, exist_ok=True)
    cached = cache_root / f"{module.name}-{key[:20]}"
    if cache_root.stat().st_uid != os.getuid() or not (cached / "gradebook.db").is_file():
        fresh = Path(tempfile.mkdtemp(prefix=f".{module.name}-", dir=cache_root))
        new_course(fresh, [module])
        generate(fresh, module)
        if cache_root.stat().st_uid != os.getuid():  # someone else's folder: use it once, keep nothing there
            shutil.copytree(fresh, where)
            shutil.rmtree(fresh, ignore_errors=True)
            return where
        try:
            os.replace(fresh, cached)  # atomic; a parallel run that got there first wins
        except OSError:
            shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(cached, where, ignore=shutil.ignore_patterns("release", "*.log"))
    return where


def grade_one(module: Module, notebook: Path, student: str = "me", on_cell=None) -> NotebookGrade:
    """Autograde one notebook in a scratch course against this checkout's
    tinytorch_lib, the student's own exports included (`tito module test`): their own
    code on their own machine, so no sandbox. on_cell: see `nbgrader`."""
    with tempfile.TemporaryDirectory(prefix="tito-grade-") as tmp:
        course = generated_course(Path(tmp) / "course", module)
        return autograde(course, module, {student: notebook}, ROOT, sandboxed=False, on_cell=on_cell)[student]
