"""The kernel manager for kernels tito and the tests start with the caller's own rights (`tito module
test`, the demo tests): the kernel talks over unix sockets in a private folder, not TCP ports.

jupyter_client picks a kernel's five TCP ports by binding port 0 and closing it; the kernel binds them
a moment later. On a machine that starts many kernels and connections at once (a class hub, a parallel
test run) another process can take one of those ports in between, and the kernel dies at start-up
("ZMQError: Address already in use", then nbclient's "Kernel died before replying to kernel_info").
A unix socket in a folder of the kernel's own has no such window. Grading kernels do the same in
their sandbox (tito/sandbox_kernel.py)."""
import os
import shutil
import tempfile

from jupyter_client.manager import AsyncKernelManager


class LocalKernelManager(AsyncKernelManager):
    """AsyncKernelManager over unix sockets in a fresh folder, removed when the kernel is shut down."""

    _folder: str | None = None

    async def _async_pre_start_kernel(self, **kw):
        if self._folder is None:
            # A short path: unix socket names are limited to about 100 bytes.
            self._folder = tempfile.mkdtemp(prefix="tito-local-kernel-", dir="/tmp" if os.path.isdir("/tmp") else None)
            self.connection_file = os.path.join(self._folder, "kernel.json")
            self.transport = "ipc"
            self.ip = os.path.join(self._folder, "kernel-ipc")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # AsyncKernelManager binds the base function here, which nbclient calls after a dead kernel.
    cleanup_resources = _async_cleanup_resources
