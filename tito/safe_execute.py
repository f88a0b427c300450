"""nbgrader's Execute preprocessor, made to survive a dying or hung kernel.

Stock nbgrader drops the whole submission when the kernel dies (a student's
`os._exit`, a segfault, the machine running out of memory): no grade, no
feedback. And a cell that swallows the KeyboardInterrupt sent at its timeout
keeps the kernel busy, so every later cell waits out its own timeout too.

This subclass records either event as an error in the cell that caused it and
marks every later code cell as not run (an error, so its tests score 0, never
the full marks an empty test cell would get). The notebook is then graded as
usual. nbgrader_config.py puts it in place of `Execute`.
"""
from queue import Empty
from time import monotonic

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute

PROBE_SECONDS = 10  # how long a kernel may take to answer after a timeout interrupt


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class SafeExecute(Execute):
    """Execute, but a dead or hung kernel costs the remaining cells, not the whole notebook."""

    def preprocess(self, nb, resources=None, km=None):
        self._stopped_in = None
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if self._stopped_in is not None:
            if cell.cell_type == "code":
                cell.outputs = [_error("NotRun", f"not run: the kernel stopped in cell {self._stopped_in + 1}")]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            return self._stop(cell, resources, index, "KernelDied", "the kernel died running this cell "
                              "(os._exit, a crash, or out of memory); later cells were not run")
        timed_out = any(o.output_type == "error" and o.get("ename") == "CellTimeoutError"
                        for o in cell.get("outputs", []))
        if timed_out and not self._responds():
            return self._stop(cell, resources, index, "KernelHung", "the cell ignored the interrupt sent at "
                              f"its {self.timeout} s timeout; later cells were not run")
        return cell, resources

    def _stop(self, cell, resources, index, ename, evalue):
        self._stopped_in = index
        cell.outputs.append(_error(ename, evalue))
        return cell, resources

    def _responds(self) -> bool:
        return run_sync(self._async_responds)()

    async def _async_responds(self) -> bool:
        """Does the kernel answer a no-op within PROBE_SECONDS?"""
        msg_id = await ensure_async(self.kc.execute("", store_history=False))
        deadline = monotonic() + PROBE_SECONDS
        while (left := deadline - monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Empty:
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False
