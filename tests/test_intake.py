"""What a class hands in, before it is graded (issue 19): links, forged and odd submissions.

Each attack sits between honest students in one graded class. Every honest grade
must equal its grade in a run without attackers, every attacker must get a clear
outcome, and a root-only file holding a random token must never show up in any
output, log, autograded notebook or feedback. The exchange test creates two real
OS users (root only: CI runs as root) who submit with nbgrader's own commands.
"""
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from helpers import fill_in, run_tito, scratch_root
from tito import grading
from tito.modules import find_module
from tito.sandbox import INSTALL, OPT_OUT

pytestmark = pytest.mark.pipeline
MODULE = find_module("01")
A = MODULE.name
NB = f"{A}.ipynb"
COURSE_ID = "tinytorch-optimization"  # nbgrader_config.py


@pytest.fixture(autouse=True)
def sandboxed(monkeypatch):
    monkeypatch.delenv(OPT_OUT, raising=False)
    assert shutil.which("bwrap"), INSTALL


@pytest.fixture
def secret(tmp_path):
    """A root-only file (as /etc/shadow) holding a random token: (path, token)."""
    token = secrets.token_hex(16)
    path = tmp_path / "private" / "shadow"
    path.parent.mkdir()
    path.write_text(f"root-only {token}\n")
    path.chmod(0o600)
    return path, token


def folder(root: Path, student: str) -> Path:
    return root / "submitted" / student / A


def with_code(notebook: Path, code: str) -> Path:
    """Append `code` to the first solution cell of `notebook`."""
    nb = nbformat.read(notebook, as_version=4)
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")).source += "\n" + code
    nbformat.write(nb, notebook)
    return notebook


def partial(out: Path) -> Path:
    """A notebook with Task 01.4 left as the stub (20/24)."""
    fill_in(MODULE, out)
    stub = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source
            for c in nbformat.read(MODULE.release_ipynb, as_version=4).cells}
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "matmul":
            cell.source = stub["matmul"]
    nbformat.write(nb, out)
    return out


def scores(root: Path, students) -> dict[str, list[tuple[str, float]]]:
    grades = grading.read_grades(root, MODULE, list(students))
    return {s: [(c.grade_id, c.score) for c in g.cells] for s, g in grades.items()}


def not_graded(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+) +not graded: (.*)$", stdout, re.M))


def leaks(token: str, *places: Path, text: str = "") -> list[str]:
    """Where `token` shows up: in `text`, or in a regular file under `places` (links not followed)."""
    found = ["the output"] if token in text else []
    for place in places:
        for path in [place, *place.rglob("*")] if place.is_dir() else [place]:
            if path.is_file() and not path.is_symlink() and token.encode() in path.read_bytes():
                found.append(str(path))
    return found


# Prints what the kernel's working copy holds, and tries the files nbgrader keeps beside the notebook.
NOSY = '''
import os as _os
print("WORKING COPY", sorted(_os.listdir(".")))
for _name in ("timestamp.txt", "submission_secret.txt", "notes.txt"):
    try:
        print("READ", _name, open(_name).read())
    except OSError as _e:
        print("NO", _name, _e.strerror)
'''

# Publishes a display output nbformat rejects (text/plain must be text): nbgrader used to drop the notebook.
UNFIT = '''
from IPython.display import publish_display_data as _publish
_publish({"text/plain": {"not": "text"}})
'''


def test_links_and_special_files_are_refused_unread(tmp_path, secret):
    shadow, token = secret
    root = scratch_root(tmp_path / "course")
    fill_in(MODULE, folder(root, "a_honest") / NB)
    partial(folder(root, "z_honest") / NB)
    proc = run_tito(root, "grade", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    baseline = scores(root, ["a_honest", "z_honest"])
    assert [sum(s for _, s in baseline[h]) for h in ("a_honest", "z_honest")] == [24, 20], baseline

    # The attackers (and a student whose submission holds what nbgrader collect writes beside it).
    link = lambda student, name, target: ((folder(root, student) / name).symlink_to(target), student)[1]  # noqa: E731
    folder(root, "link_victim").mkdir(parents=True)
    folder(root, "link_shadow").mkdir(parents=True)
    refused = {
        link("link_victim", NB, folder(root, "a_honest") / NB): f"{A}/{NB} is a symbolic link",
        link("link_shadow", NB, shadow): f"{A}/{NB} is a symbolic link",
    }
    for student, name in (("link_timestamp", "timestamp.txt"), ("link_secret", "submission_secret.txt")):
        fill_in(MODULE, folder(root, student) / NB)
        refused[link(student, name, shadow)] = f"{A}/{name} is a symbolic link"
    fill_in(MODULE, folder(root, "fifo") / NB)
    os.mkfifo(folder(root, "fifo") / "notes.txt")
    refused["fifo"] = f"{A}/notes.txt is a fifo"
    (root / "submitted" / "link_dir").symlink_to(root / "submitted" / "a_honest")
    refused["link_dir"] = "submitted/link_dir is a symbolic link"
    nosy = with_code(fill_in(MODULE, folder(root, "nosy") / NB), NOSY)
    (nosy.parent / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    nosy_secret = secrets.token_hex(16)
    (nosy.parent / "submission_secret.txt").write_text(nosy_secret)
    (nosy.parent / "notes.txt").write_text(f"notes {nosy_secret}")
    folder(root, "hard_link").mkdir(parents=True)
    os.link(folder(root, "z_honest") / NB, folder(root, "hard_link") / NB)  # as tar keeps it

    proc = run_tito(root, "grade", "01", "--jobs", "2")
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reasons = not_graded(proc.stdout)
    assert sorted(reasons) == sorted(refused), reasons
    for student, what in refused.items():
        assert reasons[student].startswith(f"refused unread: submitted/{student}"), reasons[student]
        assert what in reasons[student] and "ask the student to resubmit" in reasons[student], reasons[student]
        assert not (root / "autograded" / student).exists(), student
    assert str(shadow) not in proc.stdout + proc.stderr  # not even the target's path

    assert scores(root, ["a_honest", "z_honest"]) == baseline
    assert sum(s for _, s in scores(root, ["nosy"])["nosy"]) == 24
    # The hard link: both graded (one of them wrote it), both named in a note for the instructor.
    assert scores(root, ["hard_link"])["hard_link"] == baseline["z_honest"]
    assert re.search(r"^  hard_link: its 01_tensor.ipynb is the same file as submitted/z_honest/'s", proc.stdout, re.M)
    assert re.search(r"^  z_honest: its 01_tensor.ipynb is the same file as submitted/hard_link/'s", proc.stdout, re.M)

    # The kernel's working copy held the notebook only; nbgrader still keeps the secret for release_feedback.
    text = "".join(o.get("text", "") for c in nbformat.read(root / "autograded" / "nosy" / A / NB, 4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert f"WORKING COPY ['{NB}']" in text, text
    assert text.count("NO ") == 3 and nosy_secret not in text, text
    assert (root / "autograded" / "nosy" / A / "submission_secret.txt").read_text() == nosy_secret

    proc = run_tito(root, "feedback", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert leaks(token, root, text=proc.stdout + proc.stderr) == []


def test_plain_nbgrader_autograde_refuses_links_unread(tmp_path, secret):
    shadow, token = secret
    course = grading.new_course(tmp_path / "course", [MODULE])
    grading.generate(course, MODULE)
    fill_in(MODULE, folder(course, "a_honest") / NB)
    folder(course, "link_victim").mkdir(parents=True)
    (folder(course, "link_victim") / NB).symlink_to(folder(course, "a_honest") / NB)
    folder(course, "link_shadow").mkdir(parents=True)
    (folder(course, "link_shadow") / NB).symlink_to(shadow)
    fill_in(MODULE, folder(course, "link_timestamp") / NB)
    (folder(course, "link_timestamp") / "timestamp.txt").symlink_to(shadow)
    fill_in(MODULE, folder(course, "link_secret") / NB)
    (folder(course, "link_secret") / "submission_secret.txt").symlink_to(shadow)
    (course / "submitted" / "link_dir").symlink_to(course / "submitted" / "a_honest")
    saved = fill_in(MODULE, folder(course, "broken_saved_output") / NB)  # nbgrader: ValidationError
    raw = json.loads(saved.read_text())
    next(c for c in raw["cells"] if c["cell_type"] == "code")["outputs"] = [
        {"output_type": "display_data", "data": ["not", "a", "bundle"], "metadata": {}}]
    saved.write_text(json.dumps(raw))
    duplicated = fill_in(MODULE, folder(course, "duplicated_id") / NB)  # nbgrader: KeyError: 'grade_id'
    nb = nbformat.read(duplicated, as_version=4)
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_01_2_broadcast"
         ).metadata.nbgrader.grade_id = "test_01_1_tensor"
    nbformat.write(nb, duplicated)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # No --force: nbgrader would read timestamp.txt to decide whether to regrade.
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", A], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log  # some submissions failed, the others were graded
    for student in ("link_victim", "link_shadow", "link_timestamp", "link_secret", "link_dir"):
        assert re.search(rf"Not grading {student}'s {A}: refused unread: submitted/{student}\S* is a symbolic link",
                         log), (student, log)
        assert not (course / "autograded" / student / A / NB).exists(), student
    assert re.search(rf"Not grading duplicated_id's {A}: cell \d+'s grade_id was changed to test_01_1_tensor, "
                     r"which belongs to cell \d+ \(in the release it is test_01_2_broadcast\)", log), log
    totals = {s: sum(x for _, x in c) for s, c in scores(course, ["a_honest", "broken_saved_output"]).items()}
    assert totals == {"a_honest": 24, "broken_saved_output": 24}, totals
    assert leaks(token, course, text=log) == [] and str(shadow) not in log


def test_every_submission_gets_a_clear_outcome(tmp_path):
    root = scratch_root(tmp_path / "course")
    fill_in(MODULE, folder(root, "honest") / NB)
    with_code(fill_in(MODULE, folder(root, "unfit_output") / NB), UNFIT)  # its own output breaks the schema
    broken = fill_in(MODULE, folder(root, "broken_saved_output") / NB)  # a saved output nbformat cannot read
    raw = json.loads(broken.read_text())
    next(c for c in raw["cells"] if c["cell_type"] == "code")["outputs"] = [
        {"output_type": "display_data", "data": ["not", "a", "bundle"], "metadata": {}}]
    broken.write_text(json.dumps(raw))

    def edit(student: str, fn) -> None:
        path = fill_in(MODULE, folder(root, student) / NB)
        nb = nbformat.read(path, as_version=4)
        fn(nb)
        nbformat.write(nb, path)

    def grade_cell(nb, gid):
        return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)

    def index(gid) -> int:
        release = nbformat.read(MODULE.release_ipynb, as_version=4)
        return next(i for i, c in enumerate(release.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == gid) + 1

    edit("duplicated_id", lambda nb: grade_cell(nb, "test_01_2_broadcast").metadata.nbgrader.update(
        grade_id="test_01_1_tensor"))
    edit("renamed_id", lambda nb: grade_cell(nb, "test_01_2_broadcast").metadata.nbgrader.update(
        grade_id="my_test"))
    edit("no_metadata", lambda nb: [c.metadata.pop("nbgrader", None) for c in nb.cells])

    proc = run_tito(root, "grade", "01", "--jobs", "2")
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reasons = not_graded(proc.stdout)
    assert sorted(reasons) == ["duplicated_id", "no_metadata", "renamed_id"], reasons
    b, t = index("test_01_2_broadcast"), index("test_01_1_tensor")
    assert reasons["duplicated_id"] == (
        f"cell {b}'s grade_id was changed to test_01_1_tensor, which belongs to cell {t} (in the release it is "
        "test_01_2_broadcast): restore the cell from the release (nbgrader cannot grade it)"), reasons
    assert reasons["renamed_id"] == (
        f"cell {b}'s grade_id was changed to my_test, which is not in the release (in the release it is "
        "test_01_2_broadcast): restore the cell from the release (nbgrader cannot grade it)"), reasons
    assert reasons["no_metadata"].startswith(f"{NB} holds {A}'s test cells but no cell has nbgrader metadata"), reasons
    totals = {s: sum(x for _, x in c) for s, c in
              scores(root, ["honest", "unfit_output", "broken_saved_output"]).items()}
    assert totals == {"honest": 24, "unfit_output": 24, "broken_saved_output": 24}, totals
    text = "".join(o.get("text", "") for c in nbformat.read(root / "autograded" / "unfit_output" / A / NB, 4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "removed before grading: it does not fit the notebook format" in text, text


# ---- the exchange, with real OS users ----

# nbgrader run as an OS user. The interpreter may live where only root can read (a pyenv under
# /root), so it starts as root, loads nbgrader, then drops to the user's uid, gid and no groups
# before nbgrader reads a config file or touches the exchange (as setpriv would, after the loading).
AS_USER = '''
import os, pwd, sys
import nbgrader.apps.nbgraderapp as app
import nbgrader.exchange.default  # noqa: F401
user, home = sys.argv[1], sys.argv[2]
pw = pwd.getpwnam(user)
os.setgroups([])
os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
os.environ.update(HOME=home, USER=user, LOGNAME=user)
os.chdir(home)
sys.argv = ["nbgrader", *sys.argv[3:]]
app.main()
'''

# As the attacker: a folder in the victim's name (newer than anything) with an empty notebook, and a
# symbolic link to the secret in place of the submission_secret.txt of its own latest submission.
FORGE = '''
import json, os, pwd, sys
inbound, victim, attacker, secret, assignment = sys.argv[1:6]
pw = pwd.getpwnam(attacker)
os.setgroups([])
os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
try:
    open(secret).read()
    sys.exit("the attacker can read the secret: the test proves nothing")
except PermissionError:
    pass
forged = os.path.join(inbound, f"{victim}+{assignment}+2099-01-01 00:00:00.000000 UTC+forged")
os.mkdir(forged)
with open(os.path.join(forged, f"{assignment}.ipynb"), "w") as f:  # an empty notebook
    json.dump({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, f)
with open(os.path.join(forged, "timestamp.txt"), "w") as f:
    f.write("2099-01-01 00:00:00.000000 UTC")
mine = sys.argv[6]  # inbound is not listable, but submit printed where it wrote
os.remove(os.path.join(mine, "submission_secret.txt"))
os.symlink(secret, os.path.join(mine, "submission_secret.txt"))
print("forged", forged)
'''


@pytest.fixture
def users():
    """Two fresh OS users, removed afterwards: (victim, attacker)."""
    if os.geteuid() != 0:
        pytest.skip("creates OS users: run as root (CI does)")
    names = [f"tito{role}{secrets.token_hex(3)}" for role in ("v", "a")]
    for name in names:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    yield names
    for name in names:
        subprocess.run(["userdel", name], check=False)


def as_user(user: str, home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TITO_ROOT", "PYTHONPATH", "TITO_EXCHANGE")}
    proc = subprocess.run([sys.executable, "-c", AS_USER, user, str(home), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_collect_takes_only_what_each_student_handed_in_themselves(users, secret):
    victim, attacker = users
    shadow, token = secret
    base = Path(tempfile.mkdtemp(prefix="tito-intake-", dir="/tmp"))  # the users must reach it
    try:
        base.chmod(0o755)
        exchange = base / "exchange"
        exchange.mkdir(mode=0o777)
        exchange.chmod(0o777)  # as on the README's hub
        root = scratch_root(base / "course")
        grading.generate(root, MODULE)
        instructor = dict(os.environ, TITO_ROOT=str(root))
        ex = f"--Exchange.root={exchange}"
        grading.nbgrader(root, "release_assignment", A, ex, env=instructor)

        homes, destination = {}, {}
        for user in users:
            home = homes[user] = base / "home" / user
            home.mkdir(parents=True)
            shutil.chown(home, user, user)
            as_user(user, home, "fetch_assignment", A, f"--course={COURSE_ID}", ex)
            fetched = home / A / NB
            if user == victim:
                fill_in(MODULE, fetched)
            shutil.chown(fetched, user, user)
            out = as_user(user, home, "submit", A, f"--course={COURSE_ID}", ex)
            assert f"{user}+{A}+" in out, out
            destination[user] = re.search(r"Destination: (.*)$", out, re.M).group(1)
        inbound = exchange / COURSE_ID / "inbound"
        owners = {p.name.split("+")[0]: pwd.getpwuid(p.stat().st_uid).pw_name for p in inbound.iterdir()}
        assert owners == {victim: victim, attacker: attacker}, owners
        forge = subprocess.run([sys.executable, "-c", FORGE, str(inbound), victim, attacker, str(shadow), A,
                                destination[attacker]],
                               capture_output=True, text=True, timeout=120)
        assert forge.returncode == 0 and "forged" in forge.stdout, forge.stdout + forge.stderr

        collect = subprocess.run([sys.executable, "-m", "nbgrader", "collect", A, ex], cwd=root, env=instructor,
                                 capture_output=True, text=True, timeout=300)
        log = collect.stdout + collect.stderr
        print(log)
        assert collect.returncode == 0, log
        forged = f"{victim}+{A}+2099-01-01 00:00:00.000000 UTC+forged"
        assert re.search(rf"Not collecting {re.escape(forged)}: the folder is owned by {attacker}, not by {victim}; "
                         rf"{NB} is owned by {attacker}.*only {victim}'s own OS user hands in under {victim}'s name",
                         log), log
        assert re.search(rf"Not collecting {attacker}\+{A}\+[^+]*\+\S+: submission_secret.txt is a symbolic link", log), log
        assert (root / "submitted" / victim / A / NB).read_bytes() == (homes[victim] / A / NB).read_bytes()
        assert not (root / "submitted" / attacker).exists()

        proc = run_tito(root, "grade", "01")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(rf"^{victim} +(4/4 +){{6}}24/24$", proc.stdout, re.M), proc.stdout
        assert leaks(token, root, text=log + proc.stdout + proc.stderr) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
