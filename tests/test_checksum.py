"""No "checksum has changed" warning for an untouched or honest submission, on the paths an instructor grades by.

nbgrader replaces every locked cell of a submission with the copy in gradebook.db and logs
"Attribute 'checksum' for cell X has changed!" for each one that differs. gradebook.db is the
instructor's own (git-ignored) and holds what their last `generate_assignment` recorded; release/
is committed. After a git pull that changed the test cells (as the "Locked test cell" line and
the task(...) test cells did), formgrader's Autograde button (nbgrader.apps.api) and `nbgrader
autograde` graded every student with the old tests and logged that warning for every test cell
of every untouched submission. tito grade records the current assignment first and showed none of
nbgrader's log. An edited locked cell must still be flagged and replaced by the course's copy; a
test cell handed in as an earlier release had it (fetched before the instructor changed it) is
graded with the current copy and noted, not flagged as an edit. Module 01 only; about 40 s of CPU.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from helpers import ROOT, fill_in, run_tito, scratch_root
from tito.modules import find_module

MODULE = find_module("01")
A = MODULE.name
TAMPERED = "test_01_1_tensor"


def _only_module_01(root: Path) -> None:
    for kind in ("source", "release"):
        for folder in (root / kind).iterdir():
            if folder.is_dir() and folder.name != A:
                shutil.rmtree(folder)


def _gradebook_before_pull(root: Path) -> tuple[bytes, bytes]:
    """(gradebook.db, the release notebook) as `tito release 01` wrote them at an earlier commit whose test
    cells read otherwise."""
    py = root / "source" / A / f"{A}.py"
    text = py.read_text()
    assert text.count("# Tests for Task") >= 6
    py.write_text(text.replace("# Tests for Task", "# Tests of Task"))
    released = run_tito(root, "release", "01")
    assert released.returncode == 0, released.stderr
    stale = (root / "gradebook.db").read_bytes(), (root / "release" / A / f"{A}.ipynb").read_bytes()
    # The pull: today's source/ and release/ (the gradebook stays), then `make lab-instructor`'s build.
    py.write_text(text)
    shutil.copy(ROOT / "release" / A / f"{A}.ipynb", root / "release" / A / f"{A}.ipynb")
    assert run_tito(root, "build", "01").returncode == 0
    return stale


def _submissions(root: Path, earlier_release: bytes) -> dict[str, Path]:
    release = root / "release" / A / f"{A}.ipynb"
    subs = {s: root / "submitted" / s / A / f"{A}.ipynb" for s in ("untouched", "honest", "edited", "earlier")}
    for path in subs.values():
        path.parent.mkdir(parents=True)
    shutil.copy(release, subs["untouched"])
    fill_in(MODULE, subs["honest"])
    nb = nbformat.read(release, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == TAMPERED)
    cell.source = cell.source.split("with task(")[0] + "pass  # every check removed\n"
    nbformat.write(nb, subs["edited"])
    subs["earlier"].write_bytes(earlier_release)  # fetched before the instructor changed the test cells
    return subs


# Formgrader's Autograde button: its handler calls NbGraderAPI.autograde in the server, whose
# configuration is the course's nbgrader_config.py (loaded as formgrader loads it).
FORMGRADER = """
import json, sys
from nbgrader.apps import NbGrader
from nbgrader.apps.api import NbGraderAPI
import nbgrader.apps.api as api, nbgrader.apps.autogradeapp as cli
app = NbGrader()
app.load_config_file()
assert api.Autograde is cli.Autograde and api.Autograde.__name__ == "SafeAutograde", api.Autograde
grader = NbGraderAPI(config=app.config)
grader.coursedir.root = sys.argv[1]
print(json.dumps({s: grader.autograde(sys.argv[2], s) for s in sys.argv[3:]}))
"""


def changed_cells(log: str) -> list[str]:
    return [line for line in log.splitlines() if "has changed" in line]


def test_no_checksum_warning_for_untouched_or_honest_submissions(tmp_path):
    root = scratch_root(tmp_path / "course")
    _only_module_01(root)
    stale, earlier_release = _gradebook_before_pull(root)
    subs = _submissions(root, earlier_release)
    env = dict(os.environ, TITO_ROOT=str(root), PYTHONPATH=str(ROOT),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

    # Formgrader's Autograde, on the gradebook from before the pull.
    proc = subprocess.run([sys.executable, "-c", FORMGRADER, str(root), A, *subs], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = json.loads(proc.stdout.splitlines()[-1])
    for student in ("untouched", "honest", "earlier"):
        assert logs[student]["success"], logs[student]
        assert changed_cells(logs[student]["log"]) == [], f"{student}: {logs[student]['log']}"
    assert "recording the current ones first" in logs["untouched"]["log"]
    assert "recording the current ones first" not in logs["honest"]["log"]  # once: the gradebook is current now
    flagged = changed_cells(logs["edited"]["log"])
    assert len(flagged) == 1 and f"cell {TAMPERED} has changed" in flagged[0], logs["edited"]["log"]
    release = nbformat.read(root / "release" / A / f"{A}.ipynb", as_version=4)
    graded = nbformat.read(root / "autograded" / "edited" / A / f"{A}.ipynb", as_version=4)
    course_copy = {c.metadata.nbgrader["grade_id"]: c.source for c in release.cells if "nbgrader" in c.metadata}
    graded_copy = {c.metadata.nbgrader["grade_id"]: c.source for c in graded.cells if "nbgrader" in c.metadata}
    assert graded_copy[TAMPERED] == course_copy[TAMPERED], "the edited test cell was graded as edited"
    assert logs["earlier"]["log"].count("is as an earlier release of the assignment had it") == 6, logs["earlier"]
    graded = nbformat.read(root / "autograded" / "earlier" / A / f"{A}.ipynb", as_version=4)
    assert {c.metadata.nbgrader["grade_id"]: c.source for c in graded.cells if "nbgrader" in c.metadata
            and c.metadata.nbgrader["grade_id"].startswith("test_")} == \
           {k: v for k, v in course_copy.items() if k.startswith("test_")}, "an earlier release graded with its own tests"

    # tito grade, on the same gradebook from before the pull: it shows nbgrader's warnings.
    (root / "gradebook.db").write_bytes(stale)
    shutil.rmtree(root / "autograded")
    graded = run_tito(root, "grade", "01", "--jobs", "2", timeout=240)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    out = graded.stdout
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.split()[:1] in ([s] for s in subs)}
    assert rows == {"untouched": "0/24", "honest": "24/24", "edited": "0/24", "earlier": "0/24"}, out
    assert "nbgrader's warnings" in out, out
    warned = out.split("nbgrader's warnings", 1)[1]
    assert f"locked cell {TAMPERED} differs from the course's copy (edited in the submission): graded with the " \
           f"course's copy: edited\n" in warned, out
    assert f"locked cell {TAMPERED} is as an earlier release of the assignment had it" in warned, out
    assert "untouched" not in warned and "honest" not in warned, out
    assert "has changed" not in out and warned.count(": earlier\n") == 6, out
