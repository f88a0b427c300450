"""Grading kernels run in a bubblewrap sandbox: student code cannot touch the course.

nbgrader runs each submission's code in a kernel with the grader's rights; it
leaves isolation to the deployer. Here every grading kernel starts inside
`bwrap` (bubblewrap, https://github.com/containers/bubblewrap), as an
unprivileged uid, and sees only:

    the Python environment (sys.prefix, base prefix) and /usr     read-only
    tinytorch_lib: only the files of the modules before the       read-only
    graded one (never its own or later ones), data/ beside it
    its own working copy (the notebook only, copied in)            size-limited tmpfs, lost at exit
    /tmp, a private /proc and a minimal /dev                       size-limited tmpfs

and nothing else: no gradebook.db, no submitted/ or autograded/ of others, no
source/, release/ or the checkout's tinytorch_lib, no network (the kernel talks
to nbgrader over ZeroMQ IPC sockets in a folder bound into the sandbox), no
environment variables beyond a short list (no tokens). Every process the
kernel starts lives in the sandbox's PID namespace and dies with it. A fork
bomb meets RLIMIT_NPROC of its own uid (a fresh one when grading as root, else
the grader's own in a new user namespace), a full disk the tmpfs size; memory is
capped for the sandbox as a whole (a memory cgroup) and per process (RLIMIT_AS), wall
time by Execute.timeout and SafeExecute.notebook_timeout (see safe_execute.py and
tito/limits.py).

This file holds the policy and the bwrap command; tito/sandbox_kernel.py the
kernel manager that uses them. nbgrader_config.py puts its `SandboxedExecute`
in place of nbgrader's Execute, so `tito grade`, `tito selfcheck` and plain
`nbgrader autograde` all use it. `tito module test` (a student's own code on
their own machine) runs unsandboxed. Without bwrap, grading refuses to start unless TITO_NO_SANDBOX=1 (`tito grade
--no-sandbox`) says to run submissions with the grader's rights.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .modules import TitoError

OPT_OUT = "TITO_NO_SANDBOX"  # "1": run kernels unsandboxed, with the grader's rights
INSTALL = ("grading runs student code in a bubblewrap sandbox and `bwrap` is not on PATH: install it "
           "(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or accept "
           f"the risk with `tito grade --no-sandbox` / {OPT_OUT}=1 (student code then runs with your rights)")
WORKDIR_COPY = "/submission"  # the working copy, read-only, before it is copied into the tmpfs
# Environment variables the kernel may see (everything else, tokens included, stays outside).
ENV_KEEP = {"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONHASHSEED", "PYTHONWARNINGS", "MPLBACKEND",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "TINYTORCH_BLAS_THREADS", "NBGRADER_EXECUTION", "TINYTORCH_TIMING"}  # set while grading: notebooks size their measurements
                                                       # down (tinytorch_lib/timing.py grading())
# numpy's BLAS pool in every kernel the course starts: one thread unless the caller's environment
# says otherwise, so parallel kernels on a busy machine do not wait on each other's threads.
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread(env: dict) -> dict:
    """A copy of `env` with each BLAS_ENV variable set to "1" where it is not set."""
    return {**{name: "1" for name in BLAS_ENV}, **env}


# System files a Python process (and matplotlib's fonts) needs; /etc as a whole stays outside.
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/fonts")


def opted_out() -> bool:
    return os.environ.get(OPT_OUT, "") == "1"


def bwrap() -> str:
    """Path of bwrap; TitoError saying what to install when it is missing."""
    path = shutil.which("bwrap")
    if path is None:
        raise TitoError(INSTALL)
    return path


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TitoError(f"the grading sandbox needs `{name}`, which is not on PATH: install {package}")
    return path


def require() -> None:
    """Before grading: stop with one line unless the sandbox can run (or the instructor opted out)."""
    if not opted_out():
        bwrap()


def grading_env(env: dict, sandboxed: bool) -> dict:
    """`env` for an nbgrader run; sandboxed=False opts its kernels out (the student's own code)."""
    return env if sandboxed else dict(env, **{OPT_OUT: "1"})


def library_folder(pythonpath: str) -> Path | None:
    """The folder holding the tinytorch_lib a kernel would import: the first PYTHONPATH entry
    that has one, else the installed package's parent (the checkout, for plain nbgrader)."""
    for entry in filter(None, pythonpath.split(os.pathsep)):
        if (Path(entry) / "tinytorch_lib" / "__init__.py").is_file():
            return Path(entry).resolve()
    import importlib.util
    spec = importlib.util.find_spec("tinytorch_lib")
    return Path(spec.origin).resolve().parent.parent if spec and spec.origin else None


def visible_library(library: Path, assignment: str) -> list[str]:
    """The tinytorch_lib files a kernel grading `assignment` (a folder name, "06_optimizers") may import:
    the hand-written ones (__init__.py, testing.py, timing.py, plotting.py) and the files of the modules before it. The graded
    module's own file and every later one stay outside, so a solution cell that imports the course's
    reference of its own task gets an ImportError and scores what the student's code earns."""
    from .modules import LIBRARY_FILES

    number = assignment[:2]
    if not (number.isdigit() and assignment[2:3] == "_" and number in LIBRARY_FILES):
        raise TitoError(f"cannot tell which module the notebook in {assignment!r} belongs to (expected a folder "
                        "named like 06_optimizers): grading gives no library to a notebook it cannot place")
    module_files = set(LIBRARY_FILES.values())
    earlier = {name for n, name in LIBRARY_FILES.items() if n < number}
    return sorted(p.name for p in (library / "tinytorch_lib").glob("*.py")
                  if p.name not in module_files or p.name in earlier)


def python_roots() -> list[Path]:
    """Folders holding the Python environment: the venv and the interpreter it was made from."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    roots = {r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)}
    return sorted(r for r in roots if not r.is_relative_to("/usr"))


def bwrap_argv(kernel_cmd: list[str], cwd: Path, connection_dir: Path | None, library: Path | None,
               uid: int | None, work_bytes: int, tmp_bytes: int, max_processes: int,
               memory_bytes: int | None = None, library_files: list[str] | None = None,
               keep: tuple[str, ...] = ()) -> list[str]:
    """The command that runs `kernel_cmd` in the sandbox, in a tmpfs at `cwd` holding a copy of
    the files of `cwd` named in `keep` (the notebook being executed) and nothing else of `cwd`: not
    timestamp.txt, submission_secret.txt or whatever else a submission folder holds.

    library_files: the names in library/tinytorch_lib the kernel sees (see visible_library);
    None shows the whole folder.

    uid: when grading as root, the unprivileged uid the kernel runs as (RLIMIT_NPROC does not
    bind root); None when grading as an ordinary user, who stays themselves in a new user
    namespace, where RLIMIT_NPROC counts only the sandbox's processes.
    memory_bytes: each process's address space (RLIMIT_AS); the sandbox as a whole is capped by
    the memory cgroup SandboxedKernelManager starts bwrap in (tito/limits.py). No file it writes
    can outgrow the larger tmpfs (RLIMIT_FSIZE), the host's connection folder included.
    """
    argv = [bwrap(), *([] if uid is not None else ["--unshare-user"]), "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):  # merged /usr: symlinks
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    made = {Path("/"), Path("/tmp")}

    def mount(*args: str) -> None:
        """A mount at args[-1]; bwrap would copy the host's modes (0700 /root) onto its parents."""
        for parent in reversed(Path(args[-1]).parents):
            if parent not in made:
                made.add(parent)
                argv.extend(["--perms", "0755", "--dir", str(parent)])
        argv.extend(args)

    for path in ETC_FILES:
        if os.path.exists(path):
            mount("--ro-bind", path, path)
    for root in python_roots():
        mount("--ro-bind", str(root), str(root))
    if connection_dir is not None:  # a kernel's ZeroMQ sockets (None: a process talking over pipes)
        mount("--bind", str(connection_dir), str(connection_dir))
    if library is not None:
        package = library / "tinytorch_lib"
        if library_files is None:
            mount("--ro-bind", str(package), str(package))
        else:  # an empty read-only folder holding only the files named
            mount("--size", str(1 << 20), "--tmpfs", str(package))
            for name in library_files:
                argv.extend(["--ro-bind", str(package / name), str(package / name)])
            argv.extend(["--remount-ro", str(package)])
        if (library / "data").is_dir():  # tinytorch_lib.data_dir(): the data/ beside the package
            mount("--ro-bind", str((library / "data").resolve()), str(library / "data"))
    mount("--perms", "0755", "--dir", WORKDIR_COPY)
    made.add(Path(WORKDIR_COPY))
    for name in keep:  # regular files only: never a link's target
        if os.sep not in name and os.path.isfile(cwd / name) and not os.path.islink(cwd / name):
            mount("--ro-bind", str(cwd / name), f"{WORKDIR_COPY}/{name}")
    mount("--perms", "1777", "--size", str(work_bytes), "--tmpfs", str(cwd))
    # jupyter_client sets JPY_PARENT_PID for the kernel to watch; that pid is outside this PID
    # namespace, so the kernel would think its parent died. 1 (bwrap's init) means "do not
    # watch": --die-with-parent does that job.
    argv += ["--setenv", "JPY_PARENT_PID", "1", "--chdir", str(cwd), "--"]
    limit = [tool("prlimit", "util-linux"), f"--nproc={max_processes}", f"--fsize={max(work_bytes, tmp_bytes)}",
             *([f"--as={memory_bytes}"] if memory_bytes else []), "--", *kernel_cmd]
    if uid is None:
        return argv + ["/bin/sh", "-c", f'cp -R {WORKDIR_COPY}/. . && exec "$@"', "sh", *limit]
    # As root inside (any file modes): copy the working copy in and hand it to the uid, then
    # become that uid, without capabilities.
    return argv + ["/bin/sh", "-c", f'cp -R {WORKDIR_COPY}/. . && chown -R -h {uid}:{uid} . && exec "$@"', "sh",
                   tool("setpriv", "util-linux"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                   "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", *limit]


def kernel_env(env: dict, library: Path | None) -> dict:
    """The kernel's environment: a short list from the grader's, plus where to write and import."""
    kept = {k: v for k, v in one_blas_thread(env).items() if k in ENV_KEEP or k.startswith("LC_")}
    kept.update(HOME="/tmp", TMPDIR="/tmp", USER="student", LOGNAME="student")
    if library is not None:
        kept["PYTHONPATH"] = str(library)
    return kept
