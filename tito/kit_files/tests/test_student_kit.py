"""The kit's own checks (`make test`, seconds): the library imports whoever wrote each file,
every file is a stub, your export or a released solution, and tito's student commands work.
Your notebooks' own tests run with `tito module test NN`."""
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
KIT = json.loads((ROOT / "kit.json").read_text())
sys.path.insert(0, str(ROOT))

from tito.modules import all_modules  # noqa: E402
from tito.student import owner  # noqa: E402

MODULES = all_modules()
STUB = re.compile(r"NotImplementedError\('Module (\d\d) \((\w+)\), Task (\d\d)\.\d+, [\w.]+: not implemented yet")


def tito(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TITO_ROOT=str(root), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tito.student", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_kit_holds_its_modules():
    assert [m.number for m in MODULES] == KIT["modules"]
    for m in MODULES:
        assert m.release_ipynb.exists() and m.library_file.exists(), m.name


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_each_library_file_imports_and_says_whose_it_is(module):
    importlib.import_module(f"tinytorch_lib.{module.library_file.stem}")
    who = owner(module.library_file)
    assert who in ("stub", "your export", "released solution"), who
    text = module.library_file.read_text()
    if who == "stub":  # every unfinished task names its own module and task
        found = STUB.findall(text)
        assert found and all(n == t == module.number and title == module.title for n, title, t in found), found


def test_release_notebooks_have_visible_tests_only():
    for m in MODULES:
        nb = nbformat.read(m.release_ipynb, as_version=4)
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
                 and not c.metadata["nbgrader"].get("solution")]
        assert tests and all(c.metadata["nbgrader"]["grade_id"].startswith(f"test_{m.number}_") for c in tests)
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


def test_the_milestone_runs_or_names_the_first_unfinished_task():
    if not KIT["milestone"]:
        pytest.skip("this kit does not hold every module yet: no Milestone 06 (counted in the summary)")
    import tinytorch_lib
    names = [m.library_file.stem for m in MODULES]
    try:
        lines = tinytorch_lib.check_ready(*names)
    except RuntimeError as e:
        assert re.search(r"Module \d\d \(\w+\), Task \d\d\.\d+", str(e)), e
    else:
        assert len(lines) == len(names)


def test_status_start_export_reset(tmp_path):
    root = tmp_path / "kit"
    for name in ("release", "tinytorch_lib", "tito", "solutions"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    first = MODULES[0]
    lib = root / "tinytorch_lib" / first.library_file.name
    status = tito(root, "module", "status")
    assert status.returncode == 0, status.stderr
    assert all(m.name in status.stdout for m in MODULES), status.stdout
    assert tito(root, "module", "start", first.number).returncode == 0
    export = tito(root, "module", "export", first.number)
    assert export.returncode == 0, export.stderr
    assert owner(lib) == "your export"
    assert re.search(rf"^{first.name} +not tested yet +{lib.name}: your export$",
                     tito(root, "module", "status").stdout, re.M)
    assert tito(root, "module", "reset", first.number).returncode == 0
    assert owner(lib) == ("released solution" if (root / "solutions" / lib.name).exists() else "stub")
