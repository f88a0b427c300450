"""Grading untrusted code: submissions cannot touch the gradebook, the course or each other.

A hostile class is graded in one `tito grade` run on a scratch course, honest
students before and after each attacker (tests/hostile_submissions.py). Every
honest student must get the grade they get in a run without attackers, every
attacker what its notebook earns from the tests, and the course files, the
other submissions and the gradebook's stored tests must be unchanged. These
tests need bubblewrap (installed by .ci/run): without it they fail, saying so.
"""
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from helpers import fill_in, run_tito, scratch_root
from hostile_submissions import ATTACKERS, plant, reports
from tito import grading
from tito.modules import find_module
from tito.sandbox import INSTALL, OPT_OUT

pytestmark = pytest.mark.pipeline
MODULE = find_module("01")
NB = f"{MODULE.name}.ipynb"


@pytest.fixture(autouse=True)
def sandboxed(monkeypatch):
    """Every test here grades sandboxed, whatever the environment says; no bwrap is a failure."""
    monkeypatch.delenv(OPT_OUT, raising=False)
    assert shutil.which("bwrap"), INSTALL


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that records who connects: (port, connections)."""
    server = socket.create_server(("127.0.0.1", 0))
    seen = []

    def accept():
        while True:
            try:
                seen.append(server.accept())
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], seen
    server.close()


def notebook(kind: str, out: Path) -> Path:
    """An honest submission: "full" marks, untouched "stub", or "partial" (Task 01.4 left undone)."""
    if kind == "stub":
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(MODULE.release_ipynb, out))
    fill_in(MODULE, out)
    if kind == "partial":
        nb, release = (nbformat.read(p, as_version=4) for p in (out, MODULE.release_ipynb))
        stub = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in release.cells}
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "matmul":
                cell.source = stub["matmul"]
        nbformat.write(nb, out)
    return out


def submit(root: Path, student: str, kind: str) -> Path:
    return notebook(kind, root / "submitted" / student / MODULE.name / NB)


def scores(root: Path, students) -> dict[str, list[tuple[str, float]]]:
    grades = grading.read_grades(root, MODULE, list(students))
    return {s: [(c.grade_id, c.score) for c in g.cells] for s, g in grades.items()}


def digests(root: Path) -> dict[str, str]:
    """sha256 of every course file and submission (not the graded output or the gradebook)."""
    files = [p for d in ("source", "release", "tinytorch_lib", "submitted") for p in (root / d).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    files += [root / "nbgrader_config.py", root / "jupytext.toml"]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def stored_tests(root: Path) -> list[tuple]:
    """The test cells nbgrader restores from the gradebook: name, source, checksum, points."""
    with sqlite3.connect(root / "gradebook.db") as db:
        return db.execute("select s.name, s.source, s.checksum, g.max_score from source_cell s "
                          "join base_cell b on b.name = s.name join grade_cells g on g.id = b.id "
                          "order by s.name").fetchall()


def survivors() -> list[str]:
    """Processes left behind by the grades_daemon attack (it names itself tito-attack)."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "tito-attack":
                found.append(comm.parent.name)
        except OSError:
            pass
    return found


def test_a_hostile_class_changes_nothing_but_its_own_outputs(tmp_path, listener):
    port, connections = listener
    root = scratch_root(tmp_path / "course")
    honest = ["full", "stub", "partial"]

    # Without attackers: what each honest notebook earns.
    for kind in honest:
        submit(root, f"baseline_{kind}", kind)
    proc = run_tito(root, "grade", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    baseline = scores(root, [f"baseline_{kind}" for kind in honest])
    earned = {kind: baseline[f"baseline_{kind}"] for kind in honest}
    assert sum(s for _, s in earned["full"]) == 24 and sum(s for _, s in earned["stub"]) == 0
    assert 0 < sum(s for _, s in earned["partial"]) < 24
    shutil.rmtree(root / "submitted")
    shutil.rmtree(root / "autograded")

    # The hostile class, graded in name order: honest, attacker, honest, ..., honest.
    expected = {}
    for i, (attacker, (base, attacks)) in enumerate(ATTACKERS.items()):
        kind = honest[i % len(honest)]
        submit(root, f"{2 * i:02d}_honest_{kind}", kind)
        expected[f"{2 * i:02d}_honest_{kind}"] = earned[kind]
        plant(submit(root, f"{2 * i + 1:02d}_{attacker}", base), attacks, port)
        expected[f"{2 * i + 1:02d}_{attacker}"] = earned[base]
    last = f"{2 * len(ATTACKERS):02d}_honest_full"
    submit(root, last, "full")
    expected[last] = earned["full"]
    before, tests_before = digests(root), stored_tests(root)

    proc = run_tito(root, "grade", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    outcomes = {}
    for student in expected:
        lines = reports(root / "autograded" / student / MODULE.name / NB)
        if "honest" in student:
            assert lines == [], f"{student} reports an attack: {lines}"
            continue
        attacks = ATTACKERS[student[3:]][1]
        assert [line.split(":")[0] for line in lines] == [f"ATTACK {a}" for a in attacks], (student, lines)
        assert all(": blocked: " in line for line in lines), (student, lines)
        outcomes.update(zip(attacks, lines))
        # No copies of other notebooks, no filled disk: the working copy vanished with the sandbox.
        assert sorted(os.listdir(root / "autograded" / student / MODULE.name)) == [NB]
    print("\n" + "\n".join(outcomes.values()))
    assert "Resource temporarily unavailable" in outcomes["fork_bomb"]
    assert "No space left on device" in outcomes["fill_disk"]
    assert int(outcomes["fill_disk"].split("wrote ")[1].split(" MiB")[0]) <= 256
    assert "read-only" in outcomes["write_course"] or "course not found" in outcomes["write_course"]

    assert scores(root, expected) == expected, "a grade differs from what the notebook earns"
    assert survivors() == [], "a process started by a submission outlived its kernel"
    assert connections == [], "a submission reached a server on 127.0.0.1"
    assert digests(root) == before, "course files or other submissions changed"
    assert stored_tests(root) == tests_before, "the gradebook's stored tests changed"


def test_plain_nbgrader_autograde_is_sandboxed_too(tmp_path):
    """An instructor running nbgrader's own command in the course gets the same sandbox."""
    course = grading.new_course(tmp_path / "course", [MODULE])
    grading.generate(course, MODULE)
    plant(submit(course, "mallory", "full"), ["tamper_tests"], 0)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    grading.nbgrader(course, "autograde", MODULE.name, "--force", env=env)
    lines = reports(course / "autograded" / "mallory" / MODULE.name / NB)
    assert lines == [f"ATTACK tamper_tests: blocked: no gradebook.db above "
                     f"{(course / 'autograded' / 'mallory' / MODULE.name).resolve()}"], lines
    assert sum(s for _, s in scores(course, ["mallory"])["mallory"]) == 24


def test_an_ordinary_user_gets_the_same_sandbox(tmp_path, monkeypatch):
    """Instructors seldom grade as root: then the kernel keeps their uid, in a user namespace
    where the process limit counts only the sandbox. Run as nobody, with the system Python."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "this test runs the system python3 as an ordinary user: install python3"
    work, connection = tmp_path / "course" / "autograded" / "s" / "A", tmp_path / "kernel"
    work.mkdir(parents=True)
    connection.mkdir()
    (work / "mine.txt").write_text("my own file")
    (tmp_path / "course" / "gradebook.db").write_text("")
    for path in [tmp_path, *tmp_path.rglob("*"), *(p for p in tmp_path.parents if len(p.parts) > 2)]:
        path.chmod(path.stat().st_mode | 0o055)  # nobody may read them, as an instructor's files
    code = ("import os, time\nprint(os.getuid(), sorted(os.listdir('.')), os.path.exists('../../../gradebook.db'))\n"
            "n = 0\ntry:\n    while n < 1000:\n        if os.fork() == 0:\n            time.sleep(10)\n"
            "            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.strerror)\n")
    from tito import sandbox
    monkeypatch.setattr(sandbox, "python_roots", lambda: [])  # the system python lives in /usr
    (work / "timestamp.txt").write_text("not for the kernel")  # only the files named in keep go in
    argv = sandbox.bwrap_argv([python, "-c", code], work, connection, None, None, 1 << 20, 1 << 20, 50,
                              keep=("mine.txt",))
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    proc = subprocess.run([*as_nobody, *argv], capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    seen, forks = proc.stdout.splitlines()
    assert seen == f"{os.geteuid() if not as_nobody else 65534} ['mine.txt'] False", seen
    assert int(forks.split()[0]) < 50 and "Resource temporarily unavailable" in forks, forks


def test_without_bwrap_grading_refuses_unless_told_to_run_unsandboxed(tmp_path, monkeypatch):
    root = scratch_root(tmp_path / "course")
    submit(root, "alice", "full")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # the venv's bin/: no bwrap
    assert shutil.which("bwrap") is None

    refused = run_tito(root, "grade", "01")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    line, = refused.stderr.strip().splitlines()
    assert line.startswith("tito: ") and "apt-get install bubblewrap" in line and "--no-sandbox" in line, line
    assert not (root / "autograded" / "alice").exists()

    # Plain nbgrader refuses too: the kernel never starts, the log says what to install.
    course = grading.new_course(tmp_path / "plain", [MODULE])
    grading.generate(course, MODULE)
    submit(course, "alice", "full")
    with pytest.raises(grading.TitoError, match="apt-get install bubblewrap"):
        grading.nbgrader(course, "autograde", MODULE.name, "--force")

    unsandboxed = run_tito(root, "grade", "01", "--no-sandbox")
    assert unsandboxed.returncode == 0, unsandboxed.stdout + unsandboxed.stderr
    assert unsandboxed.stdout.splitlines()[1].split()[-1] == "24/24", unsandboxed.stdout


def test_the_kernel_sees_nbgrader_execution_and_no_secrets():
    from tito.sandbox import kernel_env

    env = kernel_env({"NBGRADER_EXECUTION": "autograde", "JUPYTER_TOKEN": "secret", "PATH": "/usr/bin"}, None)
    assert env["NBGRADER_EXECUTION"] == "autograde"  # notebooks size their measurements down while graded
    assert "JUPYTER_TOKEN" not in env and env["HOME"] == "/tmp"
