"""Helpers shared by the pipeline and tito tests."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from tito.build import build
from tito.export import MARKERS
from tito.modules import Module

# A released stub: `raise NotImplementedError('Module 01 (tensor), Task 01.1, ...')` (tito.hooks.NameStubs).
STUB_LINE = re.compile(r"raise NotImplementedError\([^\n]*\)")

ROOT = Path(__file__).resolve().parent.parent


def fill_in(module: Module, out: Path) -> Path:
    """The release notebook with the reference solutions pasted into its stubs
    (markers removed), as a student who solved every task would hand it in."""
    build(module)  # source/NN/NN.ipynb is git-ignored: a fresh checkout has not built it yet
    release = nbformat.read(module.release_ipynb, as_version=4)
    source = nbformat.read(module.source_ipynb, as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in release.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions:
            cell.source = "\n".join(l for l in solutions[gid].splitlines() if l.strip() not in MARKERS)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(release, out)
    return out


def scratch_root(where: Path) -> Path:
    """A copy of the course (source, release, library, config) for tito to mutate."""
    for name in ("source", "release", "tinytorch_lib"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb_checkpoints"))
    for name in ("nbgrader_config.py", "jupytext.toml"):
        shutil.copy(ROOT / name, where / name)
    return where


def run_tito(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TITO_ROOT=str(root), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tito.cli", *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=timeout)
