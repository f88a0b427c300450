"""`tito kit DEST`: the student repository, a git repository of its own.

What goes in (everything else stays with the instructor):

  release/NN_name/NN_name.ipynb   nbgrader's student notebooks (no solutions, no hidden tests)
  tinytorch_lib/                  hand-written files (__init__.py, testing.py, timing.py, plotting.py) and, per module, the
                                  export of its RELEASE notebook: given code + stubs that raise
                                  NotImplementedError naming module, task and function
  solutions/                      released solutions (`--solutions-through NN`), when there are any
  data/                           data sets and trained weights the notebooks load
  notebooks/06_2018_mlperf/       Milestone 06, when the kit holds every module
  notebooks/demos/                the lecture demos, likewise (no solution in them; they run on YOUR library)
  benchmarks/                     the two measurement scripts Modules 17 and 18 point to
  tito/                           the student commands only (tito/student.py)
  lab/student/                    the student JupyterLab setup (`make lab`)
  tests/                          the kit's own checks (`make test`)
  README.md, Makefile, pyproject.toml, constraints.txt, jupytext.toml, kit.json

Never: source/, the reference library (but released solutions), hidden tests, a gradebook,
the instructor's tito (grading, sandbox), tests or history. A new kit is `git init` + one
commit. `tito kit DEST` on an existing kit adds modules or released solutions as one more
commit, never touching a tinytorch_lib/ file that is already there: students `git pull`
without conflicts with their own exports, and `tito module reset NN` takes a released solution.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from . import student
from .export import reference_text
from .modules import LIBRARY, LIBRARY_FILES, ROOT, Module, TitoError, all_modules, find_module

KIT_FILES = Path(__file__).resolve().parent / "kit_files"  # README, Makefile, tests of the kit
TITO_FILES = ["__init__.py", "modules.py", "build.py", "export.py", "student.py", "student_exchange.py", "local_kernel.py"]
MILESTONE = "notebooks/06_2018_mlperf"
# The lecture demos hold no solution (tests/test_kit.py checks it by content) and run on the student's
# own library, so students can replay the lecture: they come with the milestone.
DEMOS = "notebooks/demos"
# Measurement scripts the release notebooks tell students to run (Modules 17 and 18), on their own library.
# Not the others: train_gpt.py holds its own training loop (Task 08.2's solution, near enough), and
# bench_compression/bench_quantization import train_digits; bench_grading/bench_sandbox are the grader's.
BENCHMARKS = ["bench_acceleration.py", "bench_kvcache.py"]
# Packages the student does not need: property tests, parallel tests, browsers, Voila (lecture demos).
INSTRUCTOR_ONLY = {"hypothesis", "pytest-xdist", "playwright", "voila", "jupyterhub"}
GIT = ["git", "-c", "user.name=tito kit", "-c", "user.email=tito-kit@localhost", "-c", "commit.gpgsign=false"]


def parse_modules(spec: str | None) -> list[Module]:
    """'01-06', '1-6,7', '07' -> modules in course order; None -> every module."""
    course = all_modules()
    if not spec:
        return course
    chosen = set()
    for part in spec.split(","):
        ends = part.strip().split("-")
        if len(ends) == 2 and all(e.strip().isdigit() for e in ends):
            lo, hi = (find_module(e) for e in ends)
            chosen |= {m for m in course if lo.number <= m.number <= hi.number}
        else:
            chosen.add(find_module(part))
    return [m for m in course if m in chosen]


def hand_written() -> list[str]:
    """tinytorch_lib files that no module exports (__init__.py, testing.py, timing.py, plotting.py)."""
    return sorted({p.name for p in LIBRARY.glob("*.py")} - set(LIBRARY_FILES.values()))


def _library_imports(path: Path) -> set[str]:
    """The tinytorch_lib files (stems) a script imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tinytorch_lib."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tinytorch_lib.")}
    return names


def _git(dest: Path, *args: str) -> str:
    proc = subprocess.run([*GIT, *args], cwd=dest, capture_output=True, text=True)
    if proc.returncode:
        raise TitoError(f"git {' '.join(args)} in {dest} failed: {proc.stderr.strip()}")
    return proc.stdout


def _copytree(src: Path, dest: Path, tracked: bool = True) -> None:
    """Copy `src` into `dest`: the files git tracks there (not an instructor's scratch files), or,
    outside a git checkout (or with tracked=False), every file but caches and generated notebooks."""
    proc = subprocess.run(["git", "ls-files", "-z", "--", "."], cwd=src, capture_output=True, text=True)
    if tracked and proc.returncode == 0 and proc.stdout:
        for name in proc.stdout.split("\0"):
            if name and (src / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / name, dest / name)
        return
    shutil.copytree(src, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.ipynb", "*.pyc"))


def pyproject_text() -> str:
    """The course's pyproject.toml for a student: same pins, no instructor-only packages, student tito."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    keep = [d for d in deps if re.split(r"[=<>!~\[ ]", d)[0] not in INSTRUCTOR_ONLY]
    lines = ",\n".join(f'    "{d}"' for d in keep)
    return (KIT_FILES / "pyproject.toml").read_text().replace("{dependencies}", lines)


def readme_text(modules: list[Module], milestone: bool, solutions: list[Module]) -> str:
    listed = ", ".join(f"{m.number} {m.title}" for m in modules)
    text = (KIT_FILES / "README.md").read_text().replace("{modules}", listed)
    if not milestone:
        text = text.replace("{milestone}", "Milestone 06 needs every module (01-18); it arrives with the kit "
                                           "update that hands out the last one (`git pull`). Until then "
                                           "`make run` says so and stops.")
    else:
        text = text.replace("{milestone}", (KIT_FILES / "milestone.md").read_text().strip())
    released = (", ".join(m.number for m in solutions) if solutions else "none yet")
    return text.replace("{solutions}", released)


def build_kit(dest: Path, modules: list[Module] | None = None, solutions_through: str | None = None) -> dict:
    """Write (or update) the student kit in `dest` and commit it; returns what it holds."""
    dest = dest.resolve()
    if dest == ROOT or ROOT in dest.parents:
        raise TitoError(f"{dest} is inside this course repository: write the kit elsewhere")
    marker = dest / "kit.json"
    update = marker.exists() and (dest / ".git").exists()
    if not update and dest.exists() and any(dest.iterdir()):
        raise TitoError(f"{dest} exists and is not a kit made by `tito kit`: give a new folder")
    course = all_modules()
    before = json.loads(marker.read_text()) if update else {"modules": [], "solutions_through": None}
    numbers = {m.number for m in (modules or [])} | set(before["modules"])
    if not numbers:
        numbers = {m.number for m in course}
    modules = [m for m in course if m.number in numbers]
    if modules != course[:len(modules)]:  # a notebook imports every earlier module's library file
        raise TitoError(f"a kit holds Modules {course[0].number} to NN without a gap (each notebook imports the "
                        f"earlier modules' library files); asked for {', '.join(sorted(numbers))}: "
                        f"--modules {course[0].number}-{modules[-1].number}")
    through = max(filter(None, [before["solutions_through"],
                                find_module(solutions_through).number if solutions_through else None]), default=None)
    if through and through > modules[-1].number:  # else a later update would hand out 07 with its solution
        raise TitoError(f"--solutions-through {through}: the kit's last module is {modules[-1].number}; "
                        f"release solutions of modules it holds")
    solutions = [m for m in modules if through and m.number <= through]
    milestone = len(modules) == len(course)
    for m in modules:
        if not m.release_ipynb.exists():
            raise TitoError(f"{m.release_ipynb} is missing: run `tito release {m.number}` first")

    dest.mkdir(parents=True, exist_ok=True)
    for m in modules:  # the student notebooks, as nbgrader released them
        (dest / "release" / m.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(m.release_ipynb, dest / "release" / m.name / m.release_ipynb.name)
    lib = dest / "tinytorch_lib"
    lib.mkdir(exist_ok=True)
    for name in hand_written():
        shutil.copy(LIBRARY / name, lib / name)
    if solutions:
        (dest / "solutions").mkdir(exist_ok=True)
    for m in modules:
        path = lib / m.library_file.name
        if m in solutions:
            text = reference_text(m)
            (dest / "solutions" / path.name).write_text(text)
            if not update or not path.exists():
                path.write_text(text)  # a new kit starts from the released solution
        elif not path.exists():  # never overwrite a file a student may have exported over (git pull)
            path.write_text(student.stub_text(m))
    _copytree(ROOT / "data", dest / "data")
    if milestone:  # both need most of the library; each stops naming the first unfinished task
        _copytree(ROOT / MILESTONE, dest / MILESTONE)
        _copytree(ROOT / DEMOS, dest / DEMOS)
    have = {m.library_file.stem for m in modules} | {Path(name).stem for name in hand_written()}
    for name in BENCHMARKS:  # those whose library files the kit holds
        if _library_imports(ROOT / "benchmarks" / name) <= have:
            (dest / "benchmarks").mkdir(exist_ok=True)
            for f in ("__init__.py", name):
                shutil.copy(ROOT / "benchmarks" / f, dest / "benchmarks" / f)
    (dest / "tito").mkdir(exist_ok=True)
    for name in TITO_FILES:
        shutil.copy(ROOT / "tito" / name, dest / "tito" / name)
    _copytree(ROOT / "lab" / "student", dest / "lab" / "student")
    _copytree(KIT_FILES / "tests", dest / "tests", tracked=False)
    for name in ("constraints.txt", "jupytext.toml"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copy(KIT_FILES / "Makefile", dest / "Makefile")
    shutil.copy(KIT_FILES / "gitignore", dest / ".gitignore")
    (dest / "pyproject.toml").write_text(pyproject_text())
    (dest / "README.md").write_text(readme_text(modules, milestone, solutions))
    info = {"modules": [m.number for m in modules], "solutions_through": through, "milestone": milestone}
    marker.write_text(json.dumps(info, indent=1) + "\n")

    if not update:
        _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A")
    if update and not _git(dest, "status", "--porcelain").strip():
        info["commit"] = None
        return info
    added = sorted(numbers - set(before["modules"]))
    parts = [f"Modules {modules[0].number}-{modules[-1].number}"] if not update else []
    if update and added:
        parts.append(f"Module{'s' if len(added) > 1 else ''} {', '.join(added)} handed out")
    if solutions and through != before["solutions_through"]:
        parts.append(f"solutions released through Module {through} (`tito module reset NN` takes one)")
    message = ("TinyTorch student kit: " if not update else "Kit update: ") + "; ".join(parts or ["files refreshed"])
    _git(dest, "commit", "-q", "-m", message)
    info["commit"] = _git(dest, "rev-parse", "HEAD").strip()
    return info
