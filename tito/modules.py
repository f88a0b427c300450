"""Where things live: the module map from DESIGN.md and the course paths.

A module is a folder ``source/NN_name/`` holding one jupytext percent file
``NN_name.py``. Its exported cells go to ``tinytorch_lib/<LIBRARY_FILES[NN]>``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# The course root; TITO_ROOT points tito at another checkout (the tests use a scratch copy).
ROOT = Path(os.environ.get("TITO_ROOT") or Path(__file__).resolve().parent.parent).resolve()
SOURCE = ROOT / "source"
RELEASE = ROOT / "release"
LIBRARY = ROOT / "tinytorch_lib"
WORKSPACE = ROOT / "workspace"

# NN -> library file (DESIGN.md, "Library map").
LIBRARY_FILES = {
    "01": "tensor.py",
    "02": "activations.py",
    "03": "layers.py",
    "04": "losses.py",
    "05": "autograd.py",
    "06": "optimizers.py",
    "07": "dataloader.py",
    "08": "training.py",
    "09": "spatial.py",
    "10": "tokenization.py",
    "11": "embeddings.py",
    "12": "attention.py",
    "13": "transformer.py",
    "14": "profiler.py",
    "15": "quantization.py",
    "16": "compression.py",
    "17": "acceleration.py",
    "18": "kvcache.py",
}


class TitoError(Exception):
    """A user-facing error: the CLI prints its message as one line, no traceback."""


@dataclass(frozen=True)
class Module:
    number: str  # "01"
    name: str    # "01_tensor": the nbgrader assignment id and notebook name

    @property
    def source_py(self) -> Path:
        return SOURCE / self.name / f"{self.name}.py"

    @property
    def source_ipynb(self) -> Path:
        return SOURCE / self.name / f"{self.name}.ipynb"

    @property
    def release_ipynb(self) -> Path:
        return RELEASE / self.name / f"{self.name}.ipynb"

    @property
    def workspace_ipynb(self) -> Path:
        return WORKSPACE / self.name / f"{self.name}.ipynb"

    @property
    def library_file(self) -> Path:
        return LIBRARY / LIBRARY_FILES[self.number]

    @property
    def title(self) -> str:
        return self.name.split("_", 1)[1]


def all_modules() -> list[Module]:
    """Every module folder in source/, in course order (in a student kit, which has no
    source/, every module folder in release/: the modules handed out)."""
    found = []
    for d in sorted((SOURCE if SOURCE.is_dir() else RELEASE).glob("[0-9][0-9]_*")):
        if not d.is_dir():
            continue
        number = d.name[:2]
        if number not in LIBRARY_FILES:
            raise TitoError(f"{d}: module number {number} is not in tito/modules.py LIBRARY_FILES")
        found.append(Module(number, d.name))
    return found


def find_module(spec: str) -> Module:
    """'1', '01', '01_tensor' or 'tensor' -> Module; anything else raises TitoError."""
    key = spec.strip().lower()
    m = re.fullmatch(r"(\d{1,2})(?:_(\w+))?", key)
    modules = all_modules()
    for mod in modules:
        if m and mod.number == f"{int(m.group(1)):02d}" and m.group(2) in (None, mod.title):
            return mod
        if key == mod.title:
            return mod
    known = ", ".join(f"{mod.number} ({mod.title})" for mod in modules)
    raise TitoError(f"unknown module '{spec}': this course has modules {known}; "
                    f"give a number or a name, e.g. `{modules[0].number}` or `{modules[0].title}`"
                    if modules else f"unknown module '{spec}': this course has no modules")
