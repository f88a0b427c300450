"""Resource bounds of a grading run that reach beyond one process (issue 19).

    folder = connection_folder(parent, uid, log)    # the kernel's ZeroMQ folder: a 1 MiB tmpfs
    group = memory_group(limit, log)                # one memory cap for the whole sandbox
    argv = group.wrap(argv)                         # bwrap starts inside it
    ...
    group.remove(); remove_folder(folder)

Two things a grading kernel could use without a bound:

- Its connection folder. The kernel binds its IPC sockets there, so the folder
  is writable from inside the sandbox, and it lives on the host (nbgrader must
  reach the sockets). As root it is made a tmpfs mount of its own, 1 MiB and 64
  files; without root it cannot be, and a log line says so (the kernel's files
  are then bounded only in size, each by RLIMIT_FSIZE).
- Memory. RLIMIT_AS caps each process; N processes get N times the cap. A
  memory cgroup (v1 memory controller, or cgroup v2) caps the sandbox as a
  whole; where none can be made, a log line says so and the per-process cap is
  all there is.

Whatever ends the run, these are removed: the kernel manager removes them when
its kernel is gone; when nbgrader itself is killed (tito's 1800 s limit), the
process that started it does (`run_folder` and `sweep`), and any later grading
kernel sweeps what a dead grader left behind (names carry the grader's pid).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

FOLDER_BYTES = 1 << 20  # the connection folder's tmpfs: sockets and kernel.json need a few bytes
FOLDER_FILES = 64
PREFIX = "tito-kernel-"  # tito-kernel-<grader pid>-<random>: folders and cgroups
RUN_ENV = "TITO_RUN"  # set by tito for an nbgrader run: the cgroup (v1 or v2 path) its kernels go under


# --- the connection folder -------------------------------------------------------------------

def connection_folder(parent: str | Path, uid: int | None, log) -> Path:
    """A fresh folder for a kernel's connection file and sockets, in `parent`: as root a
    1 MiB tmpfs owned by `uid`; otherwise an ordinary folder (and a log line saying so)."""
    sweep(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    if os.geteuid() == 0:
        owner = uid if uid is not None else 0
        opts = f"size={FOLDER_BYTES},nr_inodes={FOLDER_FILES},mode=0700,uid={owner},gid={owner},nosuid,nodev,noexec"
        # nosymfollow (Linux 5.10+): nbgrader (re)connects to the socket paths in here, which the kernel
        # could have replaced with symlinks to other unix sockets of the host.
        for extra in (",nosymfollow", ""):
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts + extra, "tito-kernel", str(folder)],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                return folder
        log.warning(f"the kernel's connection folder {folder} is not size-limited (mount -t tmpfs failed: "
                    f"{proc.stderr.strip()}); the kernel can fill {parent}")
    else:
        log.warning(f"the kernel's connection folder {folder} is not size-limited (a tmpfs mount needs root): "
                    f"the kernel can write files there, each at most the working copy's size")
    if uid is not None:
        os.chown(folder, uid, uid)
    return folder


def _mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(folder)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_folder(folder: Path) -> None:
    """Unmount (lazily: a socket may still be open) and delete `folder`; never raises."""
    for point in _mounts_under(folder):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str) -> bool:
    """A tito-kernel-<pid>-... name whose grader is gone."""
    m = re.match(rf"{PREFIX}(\d+)-", name)
    return bool(m) and not _alive(int(m.group(1)))


def sweep(parent: str | Path) -> None:
    """Remove what graders that were killed left in `parent` (folders) and in the cgroups."""
    try:
        names = os.listdir(parent)
    except OSError:
        names = []
    for name in names:
        if _stale(name):
            remove_folder(Path(parent) / name)
    base = _own_memory_cgroup()
    if base is not None:
        try:
            groups = [g for g in base.iterdir() if g.is_dir() and _stale(g.name)]
        except OSError:
            groups = []
        for group in groups:
            remove_cgroup(group)


# --- memory cgroups ----------------------------------------------------------------------------

def _cgroup_mounts() -> tuple[Path | None, Path | None]:
    """(v1 memory controller mount, cgroup v2 mount), from /proc/self/mountinfo."""
    v1 = v2 = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup" and "memory" in options and v1 is None:
                v1 = (fields[3], Path(fields[4]))
            elif fstype == "cgroup2" and v2 is None:
                v2 = (fields[3], Path(fields[4]))
    return v1, v2


def _own_memory_cgroup() -> Path | None:
    """This process's memory cgroup folder (v1 memory controller, else v2 with memory), or None."""
    try:
        v1, v2 = _cgroup_mounts()
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for mount, match in ((v1, lambda h, c: "memory" in c.split(",")), (v2, lambda h, c: h == "0" and c == "")):
        if mount is None:
            continue
        root, point = mount
        for line in lines:
            hierarchy, controllers, path = line.split(":", 2)
            if match(hierarchy, controllers):
                rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
                folder = (point / rel).resolve() if rel != "." else point
                if mount is v2 and "memory" not in _read(folder / "cgroup.controllers").split():
                    break
                return folder
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _v2(folder: Path) -> bool:
    return (folder / "cgroup.controllers").exists()


class MemoryGroup:
    """A memory cgroup of one sandbox: `wrap` an argv so it starts in it; `remove` when done."""

    def __init__(self, folder: Path, limit: int):
        self.folder, self.limit = folder, limit

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv`, started by a shell that first moves itself (and so all it execs) into the group."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.folder / "cgroup.procs"), *argv]

    def peak(self) -> int | None:
        """Peak memory use of the group in bytes (None when the kernel does not say)."""
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            text = _read(self.folder / name)
            if text.isdigit():
                return int(text)
        return None

    def oom_kills(self) -> int:
        """Processes the kernel killed for exceeding the limit."""
        for name in ("memory.oom_control", "memory.events"):
            m = re.search(r"^oom_kill (\d+)", _read(self.folder / name), re.M)
            if m:
                return int(m.group(1))
        return 0

    def summary(self) -> str:
        peak = self.peak()
        used = f"peak {peak / 2**20:.0f} MiB" if peak is not None else "peak unknown"
        return f"sandbox memory: {used} of {self.limit / 2**20:.0f} MiB, {self.oom_kills()} processes killed for memory"

    def remove(self) -> None:
        remove_cgroup(self.folder)


def memory_group(limit: int, log, parent: str | None = None) -> MemoryGroup | None:
    """A new memory cgroup capped at `limit` bytes (memory and swap), under `parent` (the
    $TITO_RUN group of this nbgrader run) or this process's own cgroup; None (and a log
    line) when none can be made."""
    base = Path(parent) if parent else _own_memory_cgroup()
    if base is None:
        log.warning("no memory cgroup can be made here (no cgroup memory controller): each process of the "
                    f"sandbox is capped at {limit >> 20} MiB, not the sandbox as a whole")
        return None
    folder = None
    try:
        if _v2(base):
            controllers = _read(base / "cgroup.subtree_control").split()
            if "memory" not in controllers:
                (base / "cgroup.subtree_control").write_text("+memory")
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        if _v2(folder):
            (folder / "memory.max").write_text(str(limit))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
        else:
            (folder / "memory.limit_in_bytes").write_text(str(limit))
            if (folder / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: no swapping around it
                (folder / "memory.memsw.limit_in_bytes").write_text(str(limit))
        return MemoryGroup(folder, limit)
    except OSError as e:
        if folder is not None:
            remove_cgroup(folder)
        log.warning(f"no memory cgroup can be made under {base} ({e.strerror or e}): each process of the sandbox "
                    f"is capped at {limit >> 20} MiB, not the sandbox as a whole")
        return None


def remove_cgroup(folder: Path, wait: float = 5.0) -> None:
    """Kill what still runs in cgroup `folder` (and below), then remove it; never raises."""
    deadline = time.monotonic() + wait
    while True:
        children = [c for c in _subdirs(folder)]
        for child in children:
            remove_cgroup(child, wait=max(0.0, deadline - time.monotonic()))
        for pid in _read(folder / "cgroup.procs").split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir()]
    except OSError:
        return []


# --- a whole nbgrader run (tito/grading.py nbgrader()) -------------------------------------------

class RunLimits:
    """What one nbgrader run gets, removed when it ends however it ends: a folder for its kernels'
    connection folders ($TITO_KERNEL_TMP) and a cgroup for their memory groups ($TITO_RUN)."""

    def __init__(self, env: dict):
        parent = env.get("TITO_KERNEL_TMP") or "/tmp"  # short: unix socket paths are limited to ~100 bytes
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-run-", dir=parent))
        self.group = None
        base = _own_memory_cgroup()
        if base is not None:
            try:
                if _v2(base) and "memory" not in _read(base / "cgroup.subtree_control").split():
                    (base / "cgroup.subtree_control").write_text("+memory")
                self.group = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-run-", dir=base))
                if _v2(self.group):
                    (self.group / "cgroup.subtree_control").write_text("+memory")
            except OSError:
                if self.group is not None:
                    remove_cgroup(self.group)
                self.group = None
        self.env = dict(env, TITO_KERNEL_TMP=str(self.folder))
        if self.group is not None:
            self.env[RUN_ENV] = str(self.group)

    def remove(self) -> None:
        if self.group is not None:
            remove_cgroup(self.group)
        remove_folder(self.folder)
