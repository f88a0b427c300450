"""The student kit (`tito kit`, tito/kit.py): what it holds, and a student working through it.

- No solution and no hidden test of any source/ notebook is anywhere in the kit or its git
  history, checked by content: the distinctive lines of every `### BEGIN SOLUTION` and
  `### BEGIN HIDDEN TESTS` block, and of every module's outside checks (source/NN/checks.py),
  are searched for in every file and every git blob.
- The kit's own `make test` passes on a clean `git clone` (run with this checkout's .venv
  python and PYTHONPATH at the clone: no second virtual environment).
- Partial kits, released solutions, and updating a kit (one more commit, student files untouched).
- A whole student: every task of 01-18 filled in from the reference (test only), exported
  module by module with the kit's tito, then Milestone 06 (quick mode) to Tables 2 and 3.
"""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import fill_in
from tito import kit as kitmod
from tito.build import build
from tito.modules import ROOT, TitoError, all_modules

BLOCK = re.compile(r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS)[ \t]*\n(.*?)^[ \t]*### END \1[ \t]*$", re.M | re.S)
MIN_CHARS = 25  # shorter lines (`pass`, `return x`, `out = a + b`) prove nothing
# Ordinary Python that a solution shares with given code shipped in the kit (a lecture demo, a data script).
# What the kit's pyproject.toml installs that its code imports.
INSTALLED = {"numpy", "matplotlib", "tqdm", "ipywidgets", "IPython", "nbformat", "nbclient", "jupytext", "threadpoolctl",
             "nbgrader",  # nbgrader: the kit's tito/student_exchange.py (Assignment List, Submit)
             "jupyter_client",  # tito/local_kernel.py (installed with nbclient)
             "PIL"}  # PIL: Pillow, a dependency of matplotlib (the demos encode their PNGs with it)
GENERIC = {"new = copy.deepcopy(model)", "rng = np.random.default_rng(seed)"}


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


def secret_lines(modules=None) -> set[str]:
    """The distinctive lines of every solution and hidden-test block of source/NN/NN.py (of `modules`
    only, when given: the others count as handed out) and of every outside check (source/NN/checks.py,
    never handed out): long enough, and found neither in a release notebook nor outside those blocks
    in any source notebook."""
    secret, given = set(), set()
    for module in all_modules():
        checks = module.source_py.with_name("checks.py")
        if checks.exists():
            secret |= _lines(checks.read_text())
        text = module.source_py.read_text()
        for m in BLOCK.finditer(text):
            if modules is None or module in modules:
                secret |= _lines(m.group(2))
            elif m.group(1) == "SOLUTION":  # a released solution: its lines are out
                given |= _lines(m.group(2))
        given |= _lines(BLOCK.sub("", text))
        nb = nbformat.read(module.release_ipynb, as_version=4)
        for cell in nb.cells:
            given |= _lines(cell.source)
    return {line for line in secret - given - GENERIC if len(line) >= MIN_CHARS}


def _texts(data: bytes) -> str:
    """A file's text, plus every string inside it when it is JSON (a notebook's cells are escaped there)."""
    text = data.decode("utf-8", errors="ignore")
    try:
        found = []
        stack = [json.loads(text)]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, list):
                stack += item
            elif isinstance(item, dict):
                stack += list(item.values())
        return text + "\n" + "\n".join(found)
    except ValueError:
        return text


def leaks(blobs: dict[str, bytes], secret: set[str]) -> dict[str, list[str]]:
    out = {}
    for name, data in blobs.items():
        hit = sorted(_lines(_texts(data)) & secret)
        if hit:
            out[name] = hit
    return out


def kit_files(kit: Path) -> dict[str, bytes]:
    return {str(p.relative_to(kit)): p.read_bytes() for p in kit.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(kit).parts}


def git_blobs(kit: Path) -> dict[str, bytes]:
    """Every object reachable from any ref of the kit's repository, by id (commits, trees, blobs)."""
    ids = [line.split()[0] for line in subprocess.run(["git", "rev-list", "--all", "--objects"], cwd=kit,
                                                       capture_output=True, text=True, check=True).stdout.splitlines()]
    blobs = {}
    for oid in ids:
        blobs[oid] = subprocess.run(["git", "cat-file", "-p", oid], cwd=kit, capture_output=True, check=True).stdout
    return blobs


def kit_tito(kit: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The kit's own tito (tito/student.py in the kit), as a student runs it there."""
    env = dict(os.environ, PYTHONPATH=str(kit))
    env.pop("TITO_ROOT", None)
    return subprocess.run([sys.executable, "-m", "tito.student", *args], cwd=kit, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    dest = tmp_path_factory.mktemp("kit") / "tinytorch-kit"
    info = kitmod.build_kit(dest)
    assert info["milestone"] and info["solutions_through"] is None and info["commit"]
    return dest


def test_no_solution_or_hidden_test_in_the_kit_or_its_history(kit):
    secret = secret_lines()
    assert len(secret) > 1000, len(secret)
    # The search finds them where they are: every one in the built source notebooks (JSON, escaped) or
    # the outside checks, and the solutions in the reference library.
    for module in all_modules():
        build(module)
    notebooks = {m.name: m.source_ipynb.read_bytes() for m in all_modules()}
    notebooks.update({f"{m.name}/checks.py": m.source_py.with_name("checks.py").read_bytes() for m in all_modules()
                      if m.source_py.with_name("checks.py").exists()})
    assert set().union(*leaks(notebooks, secret).values()) == secret
    reference = {p.name: p.read_bytes() for p in (ROOT / "tinytorch_lib").glob("*.py")}
    assert sum(len(v) for v in leaks(reference, secret).values()) > 500

    assert leaks(kit_files(kit), secret) == {}
    assert leaks(git_blobs(kit), secret) == {}
    log = subprocess.run(["git", "log", "--all", "--oneline"], cwd=kit, capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 1, log  # one commit, no history from the course repository
    names = set(kit_files(kit))
    assert not any(n.startswith(("source/", "autograded/", "submitted/", "feedback/")) for n in names)
    assert not any(n.endswith((".db", "nbgrader_config.py")) for n in names)
    assert not {"tito/grading.py", "tito/cli.py", "tito/sandbox.py", "tito/kit.py"} & names
    for module in all_modules():  # every library file is the stub: the export of the release notebook
        first = (kit / "tinytorch_lib" / module.library_file.name).read_text().splitlines()[0]
        assert first == f"# AUTOGENERATED from release/{module.name}/{module.name}.ipynb - edit that file"
        assert (kit / "release" / module.name / f"{module.name}.ipynb").read_bytes() == module.release_ipynb.read_bytes()


def test_the_kit_imports_only_what_it_holds(kit):
    """Every tinytorch_lib / local import in a release notebook, the milestone and the demos resolves in the kit."""
    wanted = set()
    files = [*kit.glob("release/*/*.ipynb"), *kit.glob("notebooks/*/*.py"), *kit.glob("benchmarks/*.py"),
             *kit.glob("tinytorch_lib/*.py"), *kit.glob("tito/*.py")]
    for path in files:
        codes = ([c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
                 if path.suffix == ".ipynb" else [path.read_text()])
        for code in codes:
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    wanted |= {(alias.name, path.parent) for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    wanted.add((node.module, path.parent))
                elif isinstance(node, ast.ImportFrom) and node.level == 1:  # `from .x import y` in a package
                    # (The tests run the kit's tito with this checkout's interpreter, whose editable install
                    # would quietly supply a tito file the kit lacks: only this check sees it missing.)
                    package = ".".join(path.parent.relative_to(kit).parts)
                    if node.module:
                        wanted.add((f"{package}.{node.module}", path.parent))
                    else:  # `from . import x`: a file of the package, or a name its __init__.py defines
                        init = ast.parse((path.parent / "__init__.py").read_text())
                        defined = {n.name for n in init.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
                        wanted |= {(f"{package}.{a.name}", path.parent) for a in node.names if a.name not in defined}
    for name, folder in sorted(wanted):
        top = name.split(".")[0]
        if top in ("tinytorch_lib", "benchmarks", "tito"):
            assert (kit / (name.replace(".", "/") + ".py")).exists() or (kit / name.replace(".", "/")).is_dir(), name
        elif (ROOT / "notebooks" / folder.name / f"{top}.py").exists():  # a helper beside the notebook
            assert (folder / f"{top}.py").exists(), (name, folder)
        else:  # a package the kit's pyproject installs, or the standard library
            assert top in sys.stdlib_module_names or top in INSTALLED, name


@pytest.mark.pipeline
def test_the_kits_own_tests_pass_on_a_clean_clone(kit, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(kit), str(clone)], check=True)
    env = dict(os.environ, PYTHONPATH=str(clone))
    env.pop("TITO_ROOT", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"], cwd=clone,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


@pytest.mark.pipeline
def test_partial_kit_solutions_and_an_update(tmp_path):
    dest = tmp_path / "kit"
    info = kitmod.build_kit(dest, kitmod.parse_modules("01-03"), solutions_through="01")
    assert info["modules"] == ["01", "02", "03"] and not info["milestone"]
    with pytest.raises(TitoError, match="without a gap"):
        kitmod.build_kit(tmp_path / "gap", kitmod.parse_modules("01-03,05"))
    with pytest.raises(TitoError, match="the kit's last module is 03"):
        kitmod.build_kit(dest, solutions_through="05")
    assert sorted(p.name for p in (dest / "release").iterdir()) == ["01_tensor", "02_activations", "03_layers"]
    assert not (dest / "notebooks").exists()
    assert sorted(p.name for p in (dest / "solutions").iterdir()) == ["tensor.py"]
    assert (dest / "tinytorch_lib" / "tensor.py").read_text().startswith("# AUTOGENERATED from source/01_tensor/")
    assert not (dest / "tinytorch_lib" / "losses.py").exists()
    # Modules 02-18's solutions are nowhere; Module 01's is there, released.
    later = secret_lines([m for m in all_modules() if m.number > "01"])
    assert leaks(kit_files(dest), later) == {} and leaks(git_blobs(dest), later) == {}

    status = kit_tito(dest, "module", "status")
    assert status.returncode == 0, status.stderr
    assert re.search(r"^01_tensor +not started +tensor.py: released solution$", status.stdout, re.M), status.stdout
    assert re.search(r"^02_activations +not started +activations.py: stub$", status.stdout, re.M), status.stdout
    assert "04_losses" not in status.stdout

    # A student (a clone) exports and commits their own Module 02; then the instructor hands out Module 04
    # and Module 02's solution (one more commit in the kit), and the student pulls it: a clean merge.
    clone = tmp_path / "student"
    subprocess.run(["git", "clone", "-q", str(dest), str(clone)], check=True)
    assert kit_tito(clone, "module", "start", "02").returncode == 0
    assert kit_tito(clone, "module", "export", "02").returncode == 0
    mine = (clone / "tinytorch_lib" / "activations.py").read_text()
    subprocess.run([*kitmod.GIT, "add", "workspace", "tinytorch_lib"], cwd=clone, check=True)
    subprocess.run([*kitmod.GIT, "commit", "-q", "-m", "my Module 02"], cwd=clone, check=True)
    info = kitmod.build_kit(dest, kitmod.parse_modules("04"), solutions_through="02")
    assert info["modules"] == ["01", "02", "03", "04"] and info["solutions_through"] == "02"
    log = subprocess.run(["git", "log", "--format=%s"], cwd=dest, capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 2 and "Module 04 handed out" in log and "through Module 02" in log, log
    changed = subprocess.run(["git", "diff", "--name-only", "HEAD~1"], cwd=dest, capture_output=True,
                             text=True).stdout.split()
    assert "tinytorch_lib/activations.py" not in changed  # so a student's pull never conflicts with an export
    assert {"solutions/activations.py", "tinytorch_lib/losses.py", "release/04_losses/04_losses.ipynb"} <= set(changed)
    pull = subprocess.run([*kitmod.GIT, "pull", "-q", "--no-rebase", "--no-edit"], cwd=clone, capture_output=True,
                          text=True)
    assert pull.returncode == 0, pull.stderr
    assert (clone / "tinytorch_lib" / "activations.py").read_text() == mine
    status = kit_tito(clone, "module", "status").stdout
    assert re.search(r"^04_losses +not started +losses.py: stub$", status, re.M), status
    assert re.search(r"activations.py: your export$", status, re.M), status
    reset = kit_tito(clone, "module", "reset", "02")
    assert reset.returncode == 0 and "released solution" in reset.stdout
    assert re.search(r"activations.py: released solution$", kit_tito(clone, "module", "status").stdout, re.M)
    reset = kit_tito(clone, "module", "reset", "03")
    assert reset.returncode == 0 and "untouched stub" in reset.stdout


@pytest.mark.pipeline
def test_a_student_works_through_the_whole_kit(kit, tmp_path):
    student = tmp_path / "student"
    subprocess.run(["git", "clone", "-q", str(kit), str(student)], check=True)
    env = dict(os.environ, MLPERF_QUICK="1", MLPERF_RESULTS=str(tmp_path / "results"), MPLBACKEND="Agg",
               PYTHONPATH=str(student))
    env.pop("TITO_ROOT", None)
    milestone = student / "notebooks" / "06_2018_mlperf"

    def run_milestone(script):
        return subprocess.run([sys.executable, script], cwd=milestone, env=env, capture_output=True, text=True,
                              timeout=600)

    # All stubs: the milestone stops at once, naming the first unfinished task.
    proc = run_milestone("01_optimization_olympics.py")
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "the first: Module 01 (tensor), Task 01.1, Tensor.__init__\n" in proc.stderr, proc.stderr[-2000:]
    assert "Module 02 (activations)" not in proc.stderr  # the first one, then a count per file
    assert "tito module export 01" in proc.stderr and "Traceback" not in proc.stderr and not (tmp_path / "results" / "table2_static.json").exists()

    # The untouched notebook: visible tests only, every task fails, and it says who runs the hidden ones.
    assert kit_tito(student, "module", "start", "01").returncode == 0
    test = kit_tito(student, "module", "test", "01")
    assert test.returncode == 1 and "VISIBLE tests only" in test.stdout
    assert "Hidden tests are run by the instructor after the deadline" in test.stdout
    assert re.search(r"^Task 01\.1 +FAIL$", test.stdout, re.M) and "0/6 tasks pass" in test.stdout, test.stdout
    assert re.search(r"^  Task 01\.1 +test_01_1_\w+ +FAIL +[\d.]+ s$", test.stdout, re.M), test.stdout  # as it runs

    # Every task of every module solved (test only: the reference pasted into the release notebook),
    # then exported module by module with the kit's tito (one process running its CLI for each module).
    for module in all_modules():
        build(module)
        fill_in(module, student / "workspace" / module.name / f"{module.name}.ipynb")
    numbers = [m.number for m in all_modules()]
    driver = ("import sys; from tito.student import main\n"
              f"for n in {numbers!r}:\n"
              "    assert main(['module', 'export', n]) == 0, n\n")
    proc = subprocess.run([sys.executable, "-c", driver], cwd=student, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "still to implement" not in proc.stdout, proc.stdout
    status = kit_tito(student, "module", "status").stdout
    assert status.count(": your export") == len(numbers), status

    test = kit_tito(student, "module", "test", "02")  # on the student's own export of Module 01
    assert test.returncode == 0 and "4/4 tasks pass their visible tests" in test.stdout, test.stdout + test.stderr
    assert re.search(r"^02_activations +visible tests pass \(4/4 tasks\)", kit_tito(student, "module", "status").stdout,
                     re.M)

    for script, table, title in (("01_optimization_olympics.py", "table2_static.json", "Table 2, static optimization"),
                                 ("02_generation_speedup.py", "table3_generation.json", "Table 3, generation")):
        proc = run_milestone(script)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert title in proc.stdout and (tmp_path / "results" / table).exists()
        assert f"your own export (exported from workspace/" in proc.stdout
        assert f"loaded from {student / 'tinytorch_lib'}" in proc.stdout
    assert all(r["identical"] for r in json.loads((tmp_path / "results" / "table3_generation.json").read_text())["table3"])
