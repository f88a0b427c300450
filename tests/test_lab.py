"""JupyterLab + nbgrader as students and instructors see it, in a real browser (Chromium + Playwright).

Each test runs its own JupyterLab server (the student setup of `make lab` or the instructor
setup of `make lab-instructor`) on a free port, in its own scratch copy of the course with its
own Jupyter folders, so the tests run side by side under pytest-xdist. Both fail on any
`[C ServerApp]` or `ExchangeError` line in the server's log. Screenshots of every step land in
tests/screenshots/<test>/ (git-ignored). Needs Chromium: `make test` installs it (`make browser`).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from browser import browser_page, jupyter_server, run_command, server_errors, wait_for_kernel
from helpers import ROOT, STUB_LINE, run_tito, scratch_root
from tito import grading

pytestmark = pytest.mark.browser
COURSE_ID = "tinytorch-optimization"
KEEP = ("01_tensor", "02_activations")  # the modules these tests use; max scores from README's table
MAX_SCORES = {"01_tensor": 24, "02_activations": 12}


def small_course(where: Path) -> Path:
    """A scratch course holding only Modules 01 and 02 (Formgrader lists every source/ folder)."""
    root = scratch_root(where)
    (root / "workspace").mkdir()
    shutil.copy(ROOT / "workspace" / "nbgrader_config.py", root / "workspace")
    for kind in ("source", "release"):
        for folder in (root / kind).iterdir():
            if folder.is_dir() and folder.name not in KEEP:
                shutil.rmtree(folder)
    return root


def jupyter_env(root: Path, home: Path, setup: str) -> dict:
    """The environment of `make lab` / `make lab-instructor`, with this test's own Jupyter folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON", "PYTEST"))}
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    # No news pop-up over the page, no update check (no network in tests).
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(JUPYTER_CONFIG_PATH=str(ROOT / "lab" / setup), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               TITO_ROOT=str(root), PYTHONPATH=str(ROOT), MPLBACKEND="Agg",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return env


@contextmanager
def lab_server(root: Path, home: Path, setup: str):
    """JupyterLab on a free port in `root`; yields (base url, token, log path)."""
    token = os.urandom(16).hex()
    env = jupyter_env(root, home, setup)
    env["JUPYTER_TOKEN"] = token  # from the environment, never the command line (Formgrader shows the config)
    log = home / "server.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.root_dir={root}",
           "--ServerApp.ip=127.0.0.1", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with jupyter_server(cmd, env, root, log, f"/api/status?token={token}", "JupyterLab") as url:
        yield url, token, log


def has_command(page, command: str) -> bool:
    return page.evaluate("(c) => window.jupyterapp.commands.hasCommand(c)", command)


def is_dirty(page) -> bool:
    return page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty")


def answer_task_01_1_wrongly(notebook: Path) -> None:
    """A student's first attempt at Task 01.1: stores a list, not an np.ndarray."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "tensor_class")
    cell.source = STUB_LINE.sub("self.data = list(data)", cell.source, 1)
    nbformat.write(nb, notebook)


def test_course_config_is_serializable_and_keeps_nbgrader_autograde_steps(tmp_path):
    """Formgrader shows the configuration as JSON: importable names, no class objects; the
    autograde list is nbgrader's own with SandboxedExecute and OutsideChecks in place of Execute, then
    tito's sanitizer."""
    from nbgrader.apps import NbGrader
    from nbgrader.converters.autograde import Autograde

    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    os.chdir(tmp_path)
    try:
        app = NbGrader()
        app.load_config_file()
    finally:
        os.chdir(ROOT)
    json.dumps(app.config)
    default = [f"{c.__module__.rsplit('.', 1)[0]}.{c.__name__}" if c.__module__.startswith("nbgrader.preprocessors")
               else f"{c.__module__}.{c.__name__}" for c in Autograde.class_traits()["autograde_preprocessors"].default()]
    expected = [step for name in default for step in
                (["tito.sandbox_kernel.SandboxedExecute", "tito.checks.OutsideChecks"]
                 if name == "nbgrader.preprocessors.Execute" else [name])]
    names = [n.replace("nbconvert.preprocessors.clearmetadata", "nbconvert.preprocessors") for n in expected]
    # ... and, last, tito's sanitizer of what formgrader and the feedback HTML show (tito/sanitize.py).
    assert app.config.Autograde.autograde_preprocessors == names + ["tito.sanitize.SanitizeSubmission"]
    assert app.config.GenerateFeedback.exporter_class == "tito.sanitize.FeedbackExporter"
    # Sanitizing before grading: nbgrader's list with tito's OverwriteCells (tito/safe_autograde.py).
    sanitize = [f"{c.__module__.rsplit('.', 1)[0]}.{c.__name__}"
                for c in Autograde.class_traits()["sanitize_preprocessors"].default()]
    assert app.config.Autograde.sanitize_preprocessors == [
        "tito.safe_autograde.OverwriteCells" if n == "nbgrader.preprocessors.OverwriteCells" else n for n in sanitize]
    # generate_assignment: nbgrader's own list with tito's NameStubs right after ClearSolutions.
    from nbgrader.converters.generate_assignment import GenerateAssignment
    steps = [f"{c.__module__.rsplit('.', 1)[0]}.{c.__name__}"
             for c in GenerateAssignment.class_traits()["preprocessors"].default()]
    steps.insert(steps.index("nbgrader.preprocessors.ClearSolutions") + 1, "tito.hooks.NameStubs")
    assert app.config.GenerateAssignment.preprocessors == steps
    assert app.config.Exchange.root == str(tmp_path / "exchange")


def test_student_lab(tmp_path):
    """`make lab`: start a module, open it, Run All, a failing test's message, Validate,
    the Assignment List with the released assignment, no instructor tools."""
    root = small_course(tmp_path / "course")
    home = tmp_path / "home"
    env = jupyter_env(root, home, "student")
    # The instructor releases Module 01 into the course's exchange; the student starts it.
    assert run_tito(root, "release", "01").returncode == 0
    grading.nbgrader(root, "release_assignment", "01_tensor", "--force", env=env)
    started = run_tito(root, "module", "start", "01")
    assert started.returncode == 0, started.stderr
    notebook = root / "workspace" / "01_tensor" / "01_tensor.ipynb"
    answer_task_01_1_wrongly(notebook)

    with lab_server(root, home, "student") as (url, token, log), browser_page("student") as (page, shot):
        page.goto(f"{url}/lab/tree/workspace/01_tensor/01_tensor.ipynb?token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        wait_for_kernel(page)
        page.wait_for_timeout(1500)  # JupyterLab applies the kernel's metadata just after it starts
        assert not is_dirty(page), "a fresh notebook looks edited (unsaved) before any change"
        assert page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0
        shot("opened-clean")

        # Point 2: no instructor tools in the student setup.
        assert has_command(page, "nbgrader:open-assignment-list")
        for command in ("nbgrader:open-create-assignment", "nbgrader:open-formgrader"):
            assert not has_command(page, command), f"{command} is available to a student"
        assert page.request.get(f"{url}/formgrader?token={token}").status == 404

        # Points 6 and 7: locked test cells and Run All say so in the notebook.
        assert page.locator(".jp-Cell", has_text="Run All stops at the first task").count() >= 1
        locked = page.locator(".jp-CodeCell", has_text="Locked test cell").first
        locked.scroll_into_view_if_needed()
        locked.locator(".cm-content").click()
        locked.locator(".cm-content", has_text="Locked test cell").wait_for()
        before = locked.locator(".cm-content").inner_text()
        page.keyboard.type("zz")
        assert locked.locator(".cm-content").inner_text() == before, "a locked test cell took typing"
        shot("locked-test-cell")

        # Run All: stops at the first failing test and shows its message.
        message = page.locator(".jp-OutputArea-output", has_text="self.data should be an np.ndarray, got list")
        for attempt in range(2):  # a Run All sent before the kernel is attached runs nothing
            run_command(page, "notebook:run-all-cells")
            try:
                message.first.wait_for(timeout=60_000 if attempt else 20_000)
                break
            except Exception:
                if attempt:
                    raise
        message.first.scroll_into_view_if_needed()
        shot("run-all-failing-test")

        # Validate (nbgrader's toolbar button) with the course's configuration.
        run_command(page, "docmanager:save")
        page.locator(".jp-NotebookPanel-toolbar").get_by_text("Validate", exact=True).first.click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=120_000)
        page.wait_for_function("() => !document.querySelector('.jp-Dialog')?.innerText.includes('Validating')",
                               timeout=120_000)
        text = dialog.inner_text()
        shot("validate")
        assert "self.data should be an np.ndarray" in text or "failed" in text.lower(), text[:1000]
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached")

        # Assignment List: the released module, no exchange error.
        run_command(page, "nbgrader:open-assignment-list")
        panel_text = "() => window.jupyterapp.shell.currentWidget.node.innerText"
        page.wait_for_function(f"() => ({panel_text})().includes('01_tensor')")
        shot("assignment-list")
        text = page.evaluate(panel_text)
        for bad in ("Error", "does not exist", "could not be created"):
            assert bad not in text, text
    assert not server_errors(log), "\n".join(server_errors(log))


def test_instructor_lab(tmp_path):
    """`make lab-instructor`: the .py as a notebook with its points in Create Assignment,
    Formgrader lists the assignments with their points and no exchange error, and Generate
    after an edit to the .py releases the edited content; Release reaches the exchange."""
    root = small_course(tmp_path / "course")
    home = tmp_path / "home"
    assert run_tito(root, "build", *KEEP).returncode == 0  # what `make lab-instructor` runs first

    with lab_server(root, home, "instructor") as (url, token, log), browser_page("instructor") as (page, shot):
        page.goto(f"{url}/lab?token={token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
        page.locator(".jp-LauncherCard, .jp-DirListing").first.wait_for()
        run_command(page, "docmanager:open", {"path": "source/01_tensor/01_tensor.py", "factory": "Notebook"})
        wait_for_kernel(page)
        run_command(page, "nbgrader:open-create-assignment")
        points_js = """() => Object.fromEntries([...document.querySelectorAll('.nbgrader-CellId')]
            .map(id => [id.querySelector('input').value, id.parentElement.querySelector('.nbgrader-CellPoints input')])
            .filter(([id, points]) => points).map(([id, points]) => [id, points.value]))"""
        page.wait_for_function(f"() => ({points_js})()['test_01_1_tensor'] !== undefined")
        points = page.evaluate(points_js)
        assert points.get("test_01_1_tensor") == "4", points
        page.locator(".jp-CodeCell", has_text="Tests for Task 01.1").first.scroll_into_view_if_needed()
        shot("create-assignment-points")

        # Edit the .py after the last build, as an instructor editing it as text would.
        py = root / "source" / "01_tensor" / "01_tensor.py"
        marker = "Edited after the last build (browser test)"
        text = py.read_text()
        title = re.search(r"^# # .*$", text, re.M)
        py.write_text(text[:title.end()] + f"\n#\n# {marker}" + text[title.end():])
        os.utime(py, (time.time() + 2, time.time() + 2))

        # Formgrader: both assignments, the course-local exchange, a readable configuration.
        page.goto(f"{url}/formgrader/manage_assignments?token={token}")
        rows = page.locator("#main_table tr, table tr")
        for name in KEEP:
            rows.filter(has_text=name).first.wait_for()
        assert page.locator("#warning-exchange").count() == 0
        page.get_by_text("Current configuration (click to expand)").click()
        page.locator("#config pre").first.wait_for()
        # Bootstrap's collapse animates the panel open, moving the table below it: a click on Generate
        # during the animation can land on the panel instead. Its end: `.collapse.in`, no `.collapsing`.
        page.locator("#collapseConfig.collapse.in").wait_for()
        config = page.locator("#config pre").first.inner_text()
        assert "tito.sandbox_kernel.SandboxedExecute" in config and "[, ," not in config
        assert token not in page.content(), "Formgrader shows the server token"
        shot("formgrader")

        for name in KEEP:  # Generate (nbgrader generate_assignment, with the pre-generate build)
            rows.filter(has_text=name).first.locator("td.assign a").click()
            page.locator("#success-modal").wait_for(timeout=120_000)
            shot(f"generated-{name}")
            page.locator("#success-modal button", has_text="OK").first.click()
            page.locator("#success-modal").wait_for(state="hidden")
        released = (root / "release" / "01_tensor" / "01_tensor.ipynb").read_text()
        assert marker in released, "Generate released the old build, not the edited .py"

        rows.filter(has_text="01_tensor").first.locator("td.release a").click()  # into the exchange
        page.locator("#success-modal").wait_for(timeout=60_000)
        shot("released")
        assert (root / "exchange" / COURSE_ID / "outbound" / "01_tensor" / "01_tensor.ipynb").exists()

        found = page.request.get(f"{url}/formgrader/api/assignments?token={token}").json()
        assert {a["name"]: a["max_score"] for a in found} == MAX_SCORES
        page.goto(f"{url}/formgrader/gradebook?token={token}")
        page.get_by_text("02_activations").first.wait_for()
        shot("gradebook")
    assert not server_errors(log), "\n".join(server_errors(log))
