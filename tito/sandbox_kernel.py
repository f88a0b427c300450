"""The kernel manager that starts nbgrader's grading kernels inside bwrap (see sandbox.py).

It talks to the kernel over ZeroMQ IPC sockets in a private folder bound into
the sandbox (so the sandbox needs no network), interrupts it with a message
(bwrap does not forward signals), runs it as a fresh unprivileged uid when
grading as root, and removes the folder when the kernel is gone.

Resource bounds (issue 19, tito/limits.py): the connection folder is a 1 MiB
tmpfs of its own (as root); the sandbox as a whole sits in a memory cgroup of
`memory_bytes` and each of its processes under RLIMIT_AS of the same size;
and nbgrader's side of the ZeroMQ sockets refuses messages over
MAX_MESSAGE_BYTES, so a kernel printing a gigabyte at once cannot make the
grader hold it (SafeExecute caps what it keeps of the rest).
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, Type

from . import limits
from .safe_execute import SafeExecute
from .sandbox import (OPT_OUT, bwrap, bwrap_argv, kernel_env, library_folder, one_blas_thread, opted_out,
                      visible_library)

# A kernel message larger than this (one `print` of 100 MB, a huge traceback) is dropped by ZeroMQ
# before nbgrader reads it: ZeroMQ closes that connection (and, after such a protocol error, does not
# reconnect: SafeExecute does, see BoundedKernelClient), so the cell loses the message and what follows
# it until then (and may wait Execute.iopub_timeout for its end) but the grader never holds it. Plots
# and ordinary outputs are far smaller; SafeExecute keeps at most cell_output_bytes of a cell anyway.
MAX_MESSAGE_BYTES = 16 << 20


class _BoundedSockets:
    """jupyter_client's socket factory, with ZMQ_MAXMSGSIZE set before connecting."""

    def _create_connected_socket(self, channel, identity=None):
        from jupyter_client.connect import channel_socket_types

        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if identity:
            sock.identity = identity
        if getattr(self, "curve_publickey", None) is not None:
            sock.curve_secretkey = self.curve_secretkey
            sock.curve_publickey = self.curve_publickey
            sock.curve_serverkey = self.curve_publickey
        sock.connect(self._make_url(channel))
        return sock


class BoundedKernelClient(_BoundedSockets, AsyncKernelClient):
    """The client nbclient reads outputs with: refuses messages over MAX_MESSAGE_BYTES.

    ZeroMQ drops the connection a message too large arrived on, and does not reconnect after
    such a protocol error: `dropped(channel)` says whether that happened to the iopub or shell
    channel, `reconnect(channel)` gives it a fresh socket (SafeExecute calls both)."""

    _monitors: dict | None = None

    def _watch(self, channel: str, sock):
        """Watch `sock` for disconnects (ZeroMQ's socket monitor, on an inproc PAIR socket)."""
        if self._monitors is None:
            self._monitors = {}
        address = f"inproc://tito-monitor-{channel}-{secrets.token_hex(8)}"
        sock.monitor(address, zmq.EVENT_DISCONNECTED)
        # Made by the socket's own context, which closes it with the rest (a socket it does not know
        # of would keep its context.destroy() waiting forever); read through a blocking view of it.
        monitor = sock.context.socket(zmq.PAIR)
        monitor.connect(address)
        old = self._monitors.pop(channel, None)
        if old is not None:
            old[0].close(linger=0)
        self._monitors[channel] = (monitor, zmq.Socket.shadow(monitor.underlying))
        return sock

    def connect_iopub(self, identity=None):
        return self._watch("iopub", super().connect_iopub(identity=identity))

    def connect_shell(self, identity=None):
        return self._watch("shell", super().connect_shell(identity=identity))

    def dropped(self, channel: str) -> bool:
        """Did `channel` lose its connection (a message over MAX_MESSAGE_BYTES) since last asked?"""
        monitor = (self._monitors or {}).get(channel)
        found = False
        while monitor is not None and not monitor[0].closed and monitor[1].get(zmq.EVENTS) & zmq.POLLIN:
            monitor[1].recv_multipart(zmq.NOBLOCK)
            found = True
        return found

    def reconnect(self, channel: str) -> None:
        """A fresh socket for `channel` ("iopub" or "shell"), the old one closed."""
        wrapper = getattr(self, f"_{channel}_channel")
        old = wrapper.socket
        connect = self.connect_iopub if channel == "iopub" else self.connect_shell
        wrapper.socket = connect(identity=self.session.bsession)
        old.disable_monitor()
        old.close(linger=0)

    def stop_channels(self) -> None:
        super().stop_channels()
        for monitor, _ in (self._monitors or {}).values():
            monitor.close(linger=0)
        self._monitors = None


class SandboxedKernelManager(_BoundedSockets, AsyncKernelManager):
    """A kernel manager that starts the kernel inside bwrap (see the module docstring)."""

    work_bytes = Integer(256 << 20, config=True, help="size of the kernel's writable working copy (bytes)")
    tmp_bytes = Integer(256 << 20, config=True, help="size of the kernel's private /tmp (bytes)")
    max_processes = Integer(256, config=True, help="processes and threads the kernel's uid may have")
    memory_bytes = Integer(8 << 30, config=True,
                           help="memory of the whole sandbox (a cgroup, where one can be made) and address "
                                "space of each of its processes (RLIMIT_AS), in bytes")
    client_factory = Type(BoundedKernelClient, klass=AsyncKernelClient, config=True)

    _connection_dir: Path | None = None
    # The file (in the kernel's cwd) of the notebook being executed, set by SandboxedExecute: the
    # only file the kernel's working copy holds. None: an empty working copy.
    notebook: str | None = None
    _memory: limits.MemoryGroup | None = None
    _uid: int | None = None

    async def _async_pre_start_kernel(self, **kw):
        if opted_out():
            self.log.warning(f"{OPT_OUT}=1: this kernel runs unsandboxed, with the grader's rights")
            return await super()._async_pre_start_kernel(**kw)
        bwrap()  # refuse before anything starts
        if self._connection_dir is None:
            # As root the kernel runs as a uid of its own (one per kernel: process limits are per uid).
            self._uid = 200_000 + secrets.randbelow(800_000) if os.geteuid() == 0 else None
            # Short path: unix socket names are limited to ~100 bytes. TITO_KERNEL_TMP (default /tmp;
            # tito sets a folder per nbgrader run, removed when the run ends) lets a test watch its
            # own kernels' folders while other graders run.
            parent = os.environ.get("TITO_KERNEL_TMP") or "/tmp"
            self._connection_dir = limits.connection_folder(parent, self._uid, self.log)
            self.connection_file = str(self._connection_dir / "kernel.json")
            self.transport = "ipc"
            self.ip = str(self._connection_dir / "kernel-ipc")
        # bwrap does not forward signals: interrupts go over the control channel.
        self.kernel_spec.interrupt_mode = "message"
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self._connection_dir is None:  # opted out: still an address-space cap per process, where prlimit is
            prlimit = shutil.which("prlimit")
            if prlimit is None:
                self.log.warning("no prlimit (util-linux) on PATH: this unsandboxed kernel has no memory cap")
            argv = [prlimit, f"--as={self.memory_bytes}", "--", *kernel_cmd] if prlimit else list(kernel_cmd)
            kw["env"] = one_blas_thread(kw.get("env") or os.environ)
            return await super()._async_launch_kernel(argv, **kw)
        uid = self._uid  # None: an ordinary user stays themselves, in a user namespace (see bwrap_argv)
        if uid is not None:
            os.chown(self.connection_file, uid, uid)
        cwd = Path(kw.get("cwd") or os.getcwd()).resolve()
        env = kw.get("env") or os.environ
        library = library_folder(env.get("PYTHONPATH", ""))
        kw["env"] = kernel_env(env, library)
        # nbgrader runs the notebook in autograded/<student>/<assignment>/: the assignment decides
        # which library files the kernel sees (the modules before it, never its own).
        files = visible_library(library, cwd.name) if library is not None else None
        argv = bwrap_argv(list(kernel_cmd), cwd, self._connection_dir, library, uid,
                          self.work_bytes, self.tmp_bytes, self.max_processes, self.memory_bytes,
                          library_files=files, keep=(self.notebook,) if self.notebook else ())
        if self._memory is None:
            self._memory = limits.memory_group(self.memory_bytes, self.log, os.environ.get(limits.RUN_ENV))
        if self._memory is not None:
            argv = self._memory.wrap(argv)
        return await super()._async_launch_kernel(argv, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._memory is not None:
            self.log.info(self._memory.summary())
            self._memory.remove()
            self._memory = None
        if not restart and self._connection_dir is not None:
            limits.remove_folder(self._connection_dir)
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
