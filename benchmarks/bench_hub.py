"""What a class on JupyterHub costs: memory per student, and the instructor's time per student.

    .venv/bin/python -m benchmarks.bench_hub [--students 10] [--host-gib 24] [--class-size 300]

1. Memory. A student's JupyterLab server (the student setup, lab/student, in the users' environment that
   `make hub` builds, hub/hubctl.py) started idle, and one kernel that has run the whole of Module 13
   (the reference filled into the release: a GPT forward pass, training steps and generation), read
   from /proc/PID/smaps_rollup (RSS and PSS; PSS shares the libraries between processes fairly, so
   it is what adding one more student costs). The kernel's peak RSS (VmHWM) is printed too.
   From those: how many students one host of --host-gib holds with every student's server up and a
   Module 13 kernel running (2 GiB kept for the system, the hub and its proxy), and how many such
   hosts a class of --class-size needs.
2. Grading. A class of --students (half the reference, half the untouched release) of Module 01 goes
   through the instructor's whole path with nbgrader's exchange in a scratch folder (as tests/test_exchange.py):
   collect -> `tito grade --jobs 2` (sandboxed) -> generate_feedback -> release_feedback; seconds per
   student for each step and in all. The load average is printed: on a shared machine it moves the numbers.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "hub")]

from helpers import fill_in, scratch_root  # noqa: E402
from tito import grading  # noqa: E402
from tito.build import build  # noqa: E402
from tito.modules import find_module  # noqa: E402

MIB = 1 << 20


def smaps(pid: int) -> dict[str, int]:
    """RSS and PSS (bytes) of one process, and its peak RSS."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key] = int(rest.split()[0]) * 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["Peak"] = int(line.split()[1]) * 1024
    return out


def user_env() -> Path:
    import hubctl
    return hubctl.build_env(Path(os.environ.get("TINYTORCH_HUB_ENV", "/srv/tinytorch-hub/env")))


def memory() -> dict:
    """The idle student server's and a Module 13 kernel's memory (module docstring)."""
    from browser import free_port
    env_dir = user_env()
    module = find_module("13")
    build(module)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kit = tmp / "kit"
        subprocess.run([sys.executable, "-m", "tito.cli", "kit", str(kit), "--modules", "01-13"], check=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL)
        # The student's notebook: Module 13 solved (a student who finished it), in the kit's workspace,
        # on the reference library of Modules 01-12 (released solutions), as a student who finished them.
        shutil.rmtree(kit / "tinytorch_lib")
        shutil.copytree(ROOT / "tinytorch_lib", kit / "tinytorch_lib", ignore=shutil.ignore_patterns("__pycache__"))
        notebook = fill_in(module, kit / "workspace" / module.name / f"{module.name}.ipynb")
        token, port = os.urandom(16).hex(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
        env.update(JUPYTER_CONFIG_PATH=str(ROOT / "lab" / "student"), JUPYTER_CONFIG_DIR=str(tmp / "cfg"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "rt"), IPYTHONDIR=str(tmp / "ipy"), JUPYTER_TOKEN=token,
                   PYTHONPATH=str(kit), MPLBACKEND="Agg", PATH=f"{env_dir / 'bin'}:/usr/bin:/bin")
        cmd = [str(env_dir / "bin" / "jupyter"), "lab", "--no-browser", f"--ServerApp.root_dir={kit}",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            urllib.request.urlopen(f"{url}/lab?token={token}", timeout=30).read()  # the page a student opens
            time.sleep(5)
            idle = smaps(server.pid)
            # The kernel: Module 13's notebook run top to bottom by nbclient in the users' environment (its
            # own python3 kernel, the kit on PYTHONPATH), measured before it is shut down.
            script = (
                "import json, sys, time, nbformat\n"
                "from pathlib import Path\n"
                "from nbclient import NotebookClient\n"
                + inspect.getsource(smaps) +
                "nb = nbformat.read(sys.argv[1], as_version=4)\n"
                "client = NotebookClient(nb, timeout=600, kernel_name='python3')\n"
                "with client.setup_kernel():\n"
                "    t = time.monotonic()\n"
                "    for i, cell in enumerate(nb.cells):\n"
                "        client.execute_cell(cell, i)\n"
                "    t = time.monotonic() - t\n"
                "    pid = client.km.provisioner.process.pid\n"
                "    print(json.dumps({'kernel': smaps(pid), 'seconds': t}))\n")
            run = subprocess.run([str(env_dir / "bin" / "python"), "-c", script, str(notebook)], env=env,
                                 cwd=notebook.parent, capture_output=True, text=True, check=True)
            found = json.loads(run.stdout.strip().splitlines()[-1])
            kernel, seconds = found["kernel"], found["seconds"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"server": idle, "kernel": kernel, "module13_seconds": seconds}


def grading_path(students: int) -> dict:
    """collect -> tito grade --jobs 2 -> generate_feedback -> release_feedback for a class of Module 01."""
    from helpers import run_tito
    from test_exchange import as_student
    module = find_module("01")
    build(module)
    a = module.name
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = scratch_root(tmp / "course")
        exchange = tmp / "exchange"
        exchange.mkdir()
        exchange.chmod(0o1777)
        ex = f"--Exchange.root={exchange}"
        as_instructor = dict(os.environ, TITO_ROOT=str(root), PYTHONPATH=str(ROOT))
        assert run_tito(root, "release", "01").returncode == 0
        grading.nbgrader(root, "release_assignment", a, ex, env=as_instructor)
        for i in range(students):
            name = f"s{i:03d}"
            home = tmp / "home" / name
            home.mkdir(parents=True)
            as_student(home, name, exchange, "fetch_assignment", a)
            if i % 2 == 0:
                fill_in(module, home / a / f"{a}.ipynb")
            as_student(home, name, exchange, "submit", a)
        times = {}
        start = time.monotonic()
        grading.nbgrader(root, "collect", a, ex, "--ExchangeCollect.check_owner=False", env=as_instructor)
        times["collect"] = time.monotonic() - start
        start = time.monotonic()
        proc = run_tito(root, "grade", a, "--jobs", "2", timeout=3600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        times["grade"] = time.monotonic() - start
        full = len(re.findall(r"^s\d{3} +.*24/24 *$", proc.stdout, re.M))
        zero = len(re.findall(r"^s\d{3} +.*0/24 *$", proc.stdout, re.M))
        assert (full, zero) == ((students + 1) // 2, students // 2), proc.stdout
        start = time.monotonic()
        assert run_tito(root, "feedback", a).returncode == 0
        times["feedback"] = time.monotonic() - start
        start = time.monotonic()
        grading.nbgrader(root, "release_feedback", a, ex, env=as_instructor)
        times["release_feedback"] = time.monotonic() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--host-gib", type=float, default=24)
    parser.add_argument("--class-size", type=int, default=300)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-grading", action="store_true")
    args = parser.parse_args()
    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    print(f"{os.cpu_count()} cores, load {load()} at start")
    if not args.skip_memory:
        m = memory()
        server, kernel = m["server"], m["kernel"]
        print(f"idle student server: RSS {server['Rss'] / MIB:.0f} MiB, PSS {server['Pss'] / MIB:.0f} MiB")
        print(f"Module 13 kernel after running the whole notebook ({m['module13_seconds']:.0f} s): RSS "
              f"{kernel['Rss'] / MIB:.0f} MiB, PSS {kernel['Pss'] / MIB:.0f} MiB, peak RSS {kernel['Peak'] / MIB:.0f} MiB")
        per = server["Pss"] + max(kernel["Pss"], kernel["Peak"])  # a kernel may sit at its peak
        fit = int((args.host_gib - 2) * 1024 * MIB // per)
        print(f"per student (server PSS + kernel peak): {per / MIB:.0f} MiB -> one {args.host_gib:g} GiB host holds "
              f"{fit} students with a Module 13 kernel each (2 GiB kept for system, hub, proxy); "
              f"{args.class_size} students: {math.ceil(args.class_size / fit)} such host(s), "
              f"{args.class_size * per / (1 << 30):.1f} GiB in all")
        print(json.dumps({k: v for k, v in m.items()}, default=str))
    if not args.skip_grading:
        t = grading_path(args.students)
        total = sum(t.values())
        print(f"class of {args.students} (Module 01), load {load()} after: " +
              ", ".join(f"{k} {v:.1f} s" for k, v in t.items()) +
              f"; {total / args.students:.2f} s per student in all ({t['grade'] / args.students:.2f} s grading)")
        print(f"-> {args.class_size} students: {args.class_size * total / args.students / 60:.0f} min on this host")


if __name__ == "__main__":
    main()
