"""The kernel manager that starts nbgrader's grading kernels inside bwrap (see sandbox.py).

It talks to the kernel over ZeroMQ IPC sockets in a private folder bound into
the sandbox (so the sandbox needs no network), interrupts it with a message
(bwrap does not forward signals), runs it as a fresh unprivileged uid when
grading as root, and removes the folder when the kernel is gone.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer

from .safe_execute import SafeExecute
from .sandbox import OPT_OUT, bwrap, bwrap_argv, kernel_env, library_folder, opted_out, visible_library


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel inside bwrap (see the module docstring)."""

    work_bytes = Integer(256 << 20, config=True, help="size of the kernel's writable working copy (bytes)")
    tmp_bytes = Integer(256 << 20, config=True, help="size of the kernel's private /tmp (bytes)")
    max_processes = Integer(256, config=True, help="processes and threads the kernel's uid may have")

    _connection_dir: Path | None = None
    # The file (in the kernel's cwd) of the notebook being executed, set by SandboxedExecute: the
    # only file the kernel's working copy holds. None: an empty working copy.
    notebook: str | None = None

    async def _async_pre_start_kernel(self, **kw):
        if opted_out():
            self.log.warning(f"{OPT_OUT}=1: this kernel runs unsandboxed, with the grader's rights")
            return await super()._async_pre_start_kernel(**kw)
        bwrap()  # refuse before anything starts
        if self._connection_dir is None:
            # Short path: unix socket names are limited to ~100 bytes. TITO_KERNEL_TMP (default /tmp)
            # lets a test watch its own kernels' folders while other graders run.
            parent = os.environ.get("TITO_KERNEL_TMP") or "/tmp"
            self._connection_dir = Path(tempfile.mkdtemp(prefix="tito-kernel-", dir=parent))
            self.connection_file = str(self._connection_dir / "kernel.json")
            self.transport = "ipc"
            self.ip = str(self._connection_dir / "kernel-ipc")
        # bwrap does not forward signals: interrupts go over the control channel.
        self.kernel_spec.interrupt_mode = "message"
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self._connection_dir is None:  # opted out
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        uid = None  # an ordinary user stays themselves, in a user namespace (see bwrap_argv)
        if os.geteuid() == 0:
            uid = 200_000 + secrets.randbelow(800_000)  # one per kernel: process limits are per uid
            for path in (self._connection_dir, Path(self.connection_file)):
                os.chown(path, uid, uid)
        cwd = Path(kw.get("cwd") or os.getcwd()).resolve()
        env = kw.get("env") or os.environ
        library = library_folder(env.get("PYTHONPATH", ""))
        kw["env"] = kernel_env(env, library)
        # nbgrader runs the notebook in autograded/<student>/<assignment>/: the assignment decides
        # which library files the kernel sees (the modules before it, never its own).
        files = visible_library(library, cwd.name) if library is not None else None
        argv = bwrap_argv(list(kernel_cmd), cwd, self._connection_dir, library, uid,
                          self.work_bytes, self.tmp_bytes, self.max_processes, files,
                          keep=(self.notebook,) if self.notebook else ())
        return await super()._async_launch_kernel(argv, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._connection_dir is not None:
            shutil.rmtree(self._connection_dir, ignore_errors=True)
            self._connection_dir = None

    # AsyncKernelManager binds the base function here, which nbclient calls after a dead kernel.
    cleanup_resources = _async_cleanup_resources


class SandboxedExecute(SafeExecute):
    """nbgrader's Execute (with SafeExecute's guarantees), its kernel in the sandbox."""

    def __init__(self, *args, **kwargs):
        # nbgrader's Execute sets kernel_manager_class the same way, overriding config.
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        name = ((self.resources or {}).get("metadata") or {}).get("name")
        if isinstance(km, SandboxedKernelManager) and name:
            km.notebook = f"{name}.ipynb"  # nbconvert's name of the file it read (nbgrader's notebook id)
        return km
