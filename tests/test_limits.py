"""Resource bounds of grading (issue 19): disk, memory, output bytes, wall time.

A hostile-student trial found that a grading kernel could fill the host's /tmp
through its connection folder (and a killed grading run left it behind), hold
more than the 8 GiB cap with a few children, make nbgrader itself hold a
gigabyte of printed output, and keep plain `nbgrader autograde` busy for
37 minutes with cells each under the cell timeout. Each test plants the attack
in a student's Module 01 notebook, grades it sandboxed with a small limit, and
checks the bound held, nothing was left on the host, and an honest student
graded in the same run still gets full marks. These tests need bubblewrap.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from helpers import fill_in
from tito import grading, limits
from tito.modules import find_module
from tito.sandbox import INSTALL, OPT_OUT

pytestmark = pytest.mark.pipeline
MODULE = find_module("01")
NB = f"{MODULE.name}.ipynb"


@pytest.fixture(autouse=True)
def sandboxed(monkeypatch):
    monkeypatch.delenv(OPT_OUT, raising=False)
    assert shutil.which("bwrap"), INSTALL


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A scratch course with Module 01 generated (gradebook included); each test adds students."""
    course = grading.new_course(tmp_path_factory.mktemp("limits") / "course", [MODULE])
    grading.generate(course, MODULE)
    return course


@pytest.fixture
def kernels(monkeypatch):
    """A folder of our own for the kernels' connection folders (short: it holds unix sockets)."""
    folder = Path(tempfile.mkdtemp(prefix="tl", dir="/tmp"))
    monkeypatch.setenv("TITO_KERNEL_TMP", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def submit(course: Path, student: str, code: str = "", cells: list[str] = ()) -> Path:
    """The reference solution, `code` appended to its first solution cell, `cells` added after it."""
    path = fill_in(MODULE, course / "submitted" / student / MODULE.name / NB)
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    nb.cells[first].source += "\n" + code
    for k, source in enumerate(cells):
        nb.cells.insert(first + 1 + k, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)
    return path


def outputs(course: Path, student: str) -> str:
    nb = nbformat.read(course / "autograded" / student / MODULE.name / NB, as_version=4)
    return "".join(o.get("text", "") + f"{o.get('ename', '')}: {o.get('evalue', '')}\n"
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def score(course: Path, student: str) -> float:
    return grading.read_grades(course, MODULE, [student])[student].score


def leftovers(folder: Path) -> list[str]:
    """Files, mounts and memory cgroups of graders this process started that are still there."""
    found = [str(p) for p in folder.iterdir()]
    found += [line.split()[4] for line in open("/proc/self/mountinfo") if str(folder) in line.split()[4]]
    base = limits._own_memory_cgroup()
    if base is not None:
        # This process's own (its pid in the name): another test worker may be grading right now.
        found += [str(g) for g in base.iterdir() if g.is_dir() and g.name.startswith(f"{limits.PREFIX}{os.getpid()}-")]
    return found


def grade(course: Path, students: str, options=(), timeout: float = 300) -> str:
    """Autograde the students matching the glob `students` in one plain `nbgrader autograde` run."""
    return grading.nbgrader(course, "autograde", MODULE.name, "--force", f"--student={students}", *options,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=timeout)


# Inside the kernel: its connection folder is the folder of the connection file it was started with.
FIND_FOLDER = '''
import glob as _glob, os as _os, sys as _sys
_conn = _os.path.dirname(next(a for a in _sys.argv if a.endswith(".json")))
'''

FILL_FOLDER = FIND_FOLDER + '''
_n = _bytes = 0
_err1 = _err2 = None
try:
    with open(_os.path.join(_conn, "fill.bin"), "wb") as _f:
        for _ in range(1024):                    # 1 GiB in 1 MiB blocks
            _f.write(b"x" * (1 << 20)); _f.flush(); _bytes += 1 << 20
except OSError as _e:
    _err1 = _e.strerror
try:
    for _n in range(100_000):                    # 100,000 files
        open(_os.path.join(_conn, f"f{_n}"), "w").close()
except OSError as _e:
    _err2 = _e.strerror
_fs = [l.split(" - ")[1].split()[0] for l in open("/proc/self/mountinfo") if l.split()[4] == _conn]
print(f"FILLED {_bytes} bytes ({_err1}), {_n} files ({_err2}), folder {_conn}, fs {_fs[0] if _fs else '?'}")
'''


def test_the_connection_folder_is_a_small_tmpfs_removed_after_a_kill(course, kernels):
    """Attack 5: 1 GiB and 100,000 files into the connection folder; then a run killed at its timeout."""
    submit(course, "filler", FILL_FOLDER)
    grade(course, "filler")
    line = next(l for l in outputs(course, "filler").splitlines() if l.startswith("FILLED"))
    print("\n" + line)
    written, files = int(line.split()[1]), int(line.split(", ")[1].split()[0])
    if os.geteuid() == 0:  # a tmpfs of 1 MiB and 64 files of its own
        assert written <= limits.FOLDER_BYTES and files <= limits.FOLDER_FILES, line
        assert "No space left on device" in line and line.endswith("fs tmpfs"), line
    assert score(course, "filler") == 24
    assert leftovers(kernels) == []

    # nbgrader killed by tito's timeout while the kernel fills the folder and sleeps: nothing stays.
    submit(course, "stuck", FIND_FOLDER + "open(_os.path.join(_conn, 'junk'), 'wb').write(b'x' * 500_000)\n"
                                          "import time\ntime.sleep(600)\n")
    seen = []

    def watch():  # what the kernel's folder holds while it runs
        end = time.monotonic() + 60
        while time.monotonic() < end and not seen:
            seen.extend(str(p) for p in kernels.rglob("junk"))
            time.sleep(0.2)
    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.monotonic()
    with pytest.raises(grading.TitoError, match="took longer than 25 s"):
        grade(course, "stuck", options=("--Execute.timeout=120", "--SafeExecute.notebook_timeout=600"), timeout=25)
    watcher.join()
    print(f"killed after {time.monotonic() - start:.1f} s; the kernel's junk was at {seen}")
    assert seen, "the kernel never wrote into its connection folder"
    assert leftovers(kernels) == [], "a killed grading run left its kernel's folder, mount or cgroup"


MEMORY = 2 << 30  # the sandbox's memory in this test (8 GiB when grading)

CHILDREN = '''
import os as _os, time as _time
_kids = []
for _ in range(3):                               # three children, 1 GiB each, touched
    _pid = _os.fork()
    if _pid == 0:
        try:
            _block = b"x" * (1 << 30)
            _time.sleep(3)
        finally:
            _os._exit(0)
    _kids.append(_pid)
_how = [_os.waitpid(_p, 0)[1] for _p in _kids]
print("CHILDREN", ["killed" if _os.WIFSIGNALED(s) and _os.WTERMSIG(s) == 9 else f"exit {_os.WEXITSTATUS(s)}"
                   for s in _how])
'''


def test_one_memory_limit_for_the_whole_sandbox(course, kernels):
    """Attack 6: three children of 1 GiB under a 2 GiB sandbox, each under the per-process cap."""
    submit(course, "mem_hog", CHILDREN)
    submit(course, "mem_honest")
    log = grade(course, "mem_*", options=(f"--SandboxedKernelManager.memory_bytes={MEMORY}",))
    summaries = re.findall(r"sandbox memory: peak (\d+) MiB of (\d+) MiB, (\d+) processes killed", log)
    print("\n" + "\n".join(l for l in log.splitlines() if "sandbox memory" in l or "cgroup" in l))
    text = outputs(course, "mem_hog")
    print(next((l for l in text.splitlines() if l.startswith("CHILDREN") or "KernelDied" in l), text[-500:]))
    if "no memory cgroup" in log:
        pytest.skip("no memory cgroup on this machine: each process keeps RLIMIT_AS only (the log says so)")
    assert len(summaries) == 2, log
    (peak, limit, killed), honest = sorted(summaries, key=lambda s: -int(s[2]))
    assert int(limit) == MEMORY >> 20 and int(peak) <= int(limit) and int(killed) >= 1, summaries
    # A killed child is the cell's business; a killed kernel costs the later cells (KernelDied).
    assert "killed" in text or "KernelDied" in text, text[-2000:]
    assert score(course, "mem_honest") == 24
    assert leftovers(kernels) == []


def peak_rss(cmd: list[str], cwd: Path, env: dict) -> tuple[int, subprocess.CompletedProcess]:
    """(peak resident memory of the process in bytes, its result): VmHWM, read until it exits."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, out = 0, []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) << 10)
        except (OSError, AttributeError):
            pass
        time.sleep(0.1)
    reader.join()
    return peak, subprocess.CompletedProcess(cmd, proc.returncode, out[0], "")


def test_a_gigabyte_of_output_never_reaches_the_notebook(course, kernels):
    """Attack 6 (outputs): 1 GiB printed in 1 MiB pieces, then 100 MB in one print."""
    submit(course, "chatty", cells=["for _ in range(1024):\n    print('x' * (1 << 20))\n",
                                    "print('y' * 100_000_000)\n", "print('z' * 3_000_000)\n", "print('after')\n"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    run = limits.RunLimits(env)
    try:
        start = time.monotonic()
        rss, proc = peak_rss([sys.executable, "-m", "nbgrader", "autograde", MODULE.name, "--force",
                              "--student", "chatty"], course, run.env)
        seconds = time.monotonic() - start
    finally:
        run.remove()
    assert proc.returncode == 0, proc.stdout[-3000:]
    graded = course / "autograded" / "chatty" / MODULE.name / NB
    grading.nbgrader(course, "generate_feedback", MODULE.name, "--force", "--student", "chatty")
    html = next((course / "feedback" / "chatty" / MODULE.name).glob("*.html"))
    print(f"\nnbgrader peak RSS {rss / 2**20:.0f} MiB, {seconds:.0f} s; notebook {graded.stat().st_size / 2**20:.1f} "
          f"MiB, feedback {html.stat().st_size / 2**20:.1f} MiB")
    text = outputs(course, "chatty")
    # One note in each flooding cell: messages over 16 MiB never reach nbgrader; under it, the cell keeps 1 MiB.
    assert text.count("[output cut") == 3, text[:3000]
    assert "[output cut at this cell's limit of 1048576 bytes" in text
    assert "after" in text  # the cells after the flood ran and kept their output
    assert rss < 600 << 20, rss
    assert graded.stat().st_size < 12 << 20 and html.stat().st_size < 12 << 20
    assert score(course, "chatty") == 24


# The notebook's 10 s start before its kernel does. Under load the kernel can take seconds to start, which
# moves the cells' ends: one could end right at the limit, and the run would stop between cells instead of
# interrupting one. So the first cell waits until the kernel process is 3 s old (kernel start-up included):
# the 4 s cells then end about 7 and 11 s in, and the limit falls inside the second (start-ups up to ~5 s).
KERNEL_AGE = ("import os, time\nstart = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])"
              " / os.sysconf('SC_CLK_TCK')\nage = float(open('/proc/uptime').read().split()[0]) - start\n"
              "time.sleep(max(0.0, 3.0 - age))\nprint('kernel age', round(age, 2))\n")
SLEEPS = [KERNEL_AGE] + [f"import time\ntime.sleep(4)\nprint('slept', {i})\n" for i in (1, 2, 3, 4)]


def test_a_notebook_time_limit_stops_many_slow_cells(course, kernels):
    """Attack 7: cells of 4 s each under a 5 s cell limit and a 10 s notebook limit, then an honest student."""
    submit(course, "time_slow", cells=SLEEPS)
    submit(course, "time_zz_honest")
    start = time.monotonic()
    grade(course, "time_*", options=("--SafeExecute.notebook_timeout=10", "--Execute.timeout=5"))
    seconds = time.monotonic() - start
    text = outputs(course, "time_slow")
    print(f"\ngraded both in {seconds:.1f} s\n" + "\n".join([l for l in text.splitlines() if "time limit" in l][:2]))
    assert "slept 1" in text and "slept 2" not in text, text
    assert "NotebookTimeout: notebook time limit of 10 s reached" in text
    assert "NotRun: not run: the notebook time limit of 10 s was reached" in text
    assert score(course, "time_slow") == 0  # every test cell comes after the time ran out
    assert score(course, "time_zz_honest") == 24
    assert leftovers(kernels) == []


def test_output_caps_count_bytes_and_keep_errors():
    """SafeExecute.output on its own: a cell's cap, the notebook's cap, and errors always kept."""
    from tito.safe_execute import SafeExecute

    ex = SafeExecute(cell_output_bytes=100, notebook_output_bytes=250)
    ex._notebook_kept, ex.clear_before_next_output = 0, False

    def cell(*msgs):
        ex._cell_kept, ex._cut, outs = 0, False, []
        for msg_type, content in msgs:
            ex.output(outs, {"msg_type": msg_type, "content": content, "header": {"msg_type": msg_type},
                             "parent_header": {"msg_id": "m"}}, None, 0)
        return outs

    def stream(text):
        return "stream", {"name": "stdout", "text": text}

    outs = cell(stream("é" * 30), stream("b" * 60), stream("c" * 60))  # 60 + 60 bytes: cut at 100
    assert [o.text for o in outs[:2]] == ["é" * 30, "b" * 40] and "cut at this cell's limit of 100" in outs[2].text
    assert len(outs) == 3
    cell(stream("d" * 100))  # 200 of the notebook's 250 kept
    outs = cell(stream("e" * 80), ("error", {"ename": "AssertionError", "evalue": "x" * 5000, "traceback": ["t"] * 50}))
    assert outs[0].text == "e" * 50 and "the notebook's limit of 250" in outs[1].text
    assert outs[2].output_type == "error" and outs[2].ename == "AssertionError" and len(outs[2].evalue) < 1100


def test_the_host_follows_no_symlink_the_kernel_puts_in_its_folder(tmp_path):
    """nbgrader reconnects to socket paths in the connection folder: a symlink there must not lead it
    to another unix socket of the host (nosymfollow on the folder's tmpfs, as root)."""
    import logging

    if os.geteuid() != 0:
        pytest.skip("the connection folder is a tmpfs of its own only when grading as root")
    folder = limits.connection_folder(tmp_path, None, logging.getLogger("test"))
    try:
        (tmp_path / "target").write_text("host file")
        (folder / "kernel-ipc-1").symlink_to(tmp_path / "target")
        with pytest.raises(OSError, match="Too many levels of symbolic links"):
            (folder / "kernel-ipc-1").read_text()
    finally:
        limits.remove_folder(folder)
    assert not folder.exists() and str(folder) not in open("/proc/self/mountinfo").read()


def test_without_root_or_cgroups_a_log_line_says_what_is_not_bounded(tmp_path, monkeypatch, caplog):
    """The fallbacks: an ordinary user's connection folder is a plain folder (files capped in size by
    RLIMIT_FSIZE only), and with no memory cgroup each process keeps RLIMIT_AS; each says so once."""
    import logging

    log = logging.getLogger("tito-test")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "chown", lambda *a: None)
    with caplog.at_level(logging.WARNING, logger="tito-test"):
        folder = limits.connection_folder(tmp_path, None, log)
        monkeypatch.setattr(limits, "_own_memory_cgroup", lambda: None)
        assert limits.memory_group(8 << 30, log) is None
    assert folder.is_dir() and str(folder) not in open("/proc/self/mountinfo").read()
    first, second = [r.getMessage() for r in caplog.records]
    assert "not size-limited (a tmpfs mount needs root)" in first, first
    assert "no memory cgroup" in second and "each process of the sandbox is capped at 8192 MiB" in second, second
    limits.remove_folder(folder)
    assert not folder.exists()


def test_tito_runs_nbgrader_under_an_address_space_cap_and_removes_its_run_folder(tmp_path, monkeypatch):
    """grading.nbgrader (so `tito grade`): nbgrader's own soft RLIMIT_AS, its kernels' folders and
    cgroups under a run folder and group of its own, removed after the run (here: a run that fails)."""
    seen, real_run = {}, subprocess.run

    def run(cmd, cwd, env, **kw):
        seen.update(cmd=cmd, folder=Path(env["TITO_KERNEL_TMP"]), group=env.get(limits.RUN_ENV))
        assert seen["folder"].is_dir() and (seen["group"] is None or Path(seen["group"]).is_dir())
        limit = real_run([*cmd[:3], "cat", "/proc/self/limits"], capture_output=True, text=True).stdout
        seen["limit"] = next(line for line in limit.splitlines() if line.startswith("Max address space"))
        return subprocess.CompletedProcess(cmd, 1, "", "nbgrader failed")

    monkeypatch.setattr(grading.subprocess, "run", run)
    monkeypatch.setenv("TITO_KERNEL_TMP", str(tmp_path))
    with pytest.raises(grading.TitoError, match="nbgrader failed"):
        grading.nbgrader(tmp_path, "autograde", MODULE.name)
    assert seen["cmd"][1:3] == [f"--as={grading.NBGRADER_MEMORY_BYTES}:", "--"], seen["cmd"]
    assert seen["limit"].split()[3:5] == [str(grading.NBGRADER_MEMORY_BYTES), "unlimited"], seen["limit"]
    assert list(tmp_path.iterdir()) == [] and (seen["group"] is None or not Path(seen["group"]).exists())
