"""A class run the JupyterHub way, with nbgrader's own exchange in a temporary folder:
instructor release_assignment -> students fetch_assignment, fill in, submit -> instructor
collect -> `tito grade` -> generate_feedback -> release_feedback -> students fetch_feedback.

Every step is nbgrader's command with standard options (--Exchange.root, --course); each
student has their own HOME, working directory and user name, as on a hub.
"""
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fill_in, run_tito, scratch_root
from tito import grading
from tito.modules import find_module

pytestmark = pytest.mark.pipeline
MODULE = find_module("02")
COURSE_ID = "tinytorch-optimization"  # nbgrader_config.py


# nbgrader names a submission after the OS user (pwd), except that user "jovyan" (the single-user
# image of a DockerSpawner hub) is named by $JUPYTERHUB_USER. The test runs every student under one
# uid, so it runs nbgrader as such a hub container would: OS user jovyan, JUPYTERHUB_USER=<student>.
STUDENT_NBGRADER = ("import sys, nbgrader.utils as u; u.get_osusername = lambda: 'jovyan'; "
                    "from nbgrader.apps.nbgraderapp import main; sys.argv[0] = 'nbgrader'; main()")


def as_student(home: Path, name: str, exchange: Path, *args: str) -> str:
    """nbgrader ARGS run by student `name` in their home folder, as in a hub container."""
    env = {k: v for k, v in os.environ.items() if k not in ("TITO_ROOT", "PYTHONPATH")}
    env.update(HOME=str(home), USER=name, LOGNAME=name, JUPYTERHUB_USER=name)
    proc = subprocess.run([sys.executable, "-c", STUDENT_NBGRADER, *args, f"--course={COURSE_ID}",
                           f"--Exchange.root={exchange}"], cwd=home, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{name}+" in proc.stdout + proc.stderr or args[0] != "submit", proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_release_fetch_submit_collect_grade_feedback_round_trip(tmp_path):
    root = scratch_root(tmp_path / "course")
    exchange = tmp_path / "exchange"
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)  # as on a hub: every user writes their submissions here
    as_instructor = dict(os.environ, TITO_ROOT=str(root))
    ex = f"--Exchange.root={exchange}"
    a = MODULE.name

    assert run_tito(root, "release", MODULE.number).returncode == 0  # generate_assignment into release/
    grading.nbgrader(root, "release_assignment", a, ex, env=as_instructor)
    homes = {s: tmp_path / "home" / s for s in ("alice", "bob")}
    for student, home in homes.items():
        home.mkdir(parents=True)
        as_student(home, student, exchange, "fetch_assignment", a)
        fetched = home / a / f"{a}.ipynb"
        assert fetched.read_bytes() == (root / "release" / a / f"{a}.ipynb").read_bytes()
        if student == "alice":
            fill_in(MODULE, fetched)  # alice solves every task; bob hands in the stubs
        as_student(home, student, exchange, "submit", a)

    # Every student here is the test's own OS user, as all are jovyan in a DockerSpawner hub: collect
    # cannot tell them apart by owner, so its owner check is off (tests/test_intake.py has real users).
    grading.nbgrader(root, "collect", a, ex, "--ExchangeCollect.check_owner=False", env=as_instructor)
    for student in homes:
        assert (root / "submitted" / student / a / f"{a}.ipynb").exists()
        assert (root / "submitted" / student / a / "timestamp.txt").exists()

    proc = run_tito(root, "grade", a, "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^alice +(3/3 +){4}12/12$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^bob +(0/3 +){4}0/12$", proc.stdout, re.M), proc.stdout
    with sqlite3.connect(root / "gradebook.db") as db:  # the submission time collect recorded
        stamps = dict(db.execute("select s.id, a.timestamp from submitted_assignment a "
                                 "join student s on s.id = a.student_id").fetchall())
    for student in homes:
        written = (root / "submitted" / student / a / "timestamp.txt").read_text().strip()
        assert stamps[student] and stamps[student][:19] == written[:19].replace("T", " "), (stamps, written)

    grading.nbgrader(root, "generate_feedback", a, env=as_instructor)
    grading.nbgrader(root, "release_feedback", a, ex, env=as_instructor)
    for student, home in homes.items():
        as_student(home, student, exchange, "fetch_feedback", a)
        html, = (home / a / "feedback").glob(f"*/{a}.html")
        score = "12" if student == "alice" else "0"
        assert re.search(rf"Score: {score}(\.0)? / 12(\.0)?", html.read_text()), student
