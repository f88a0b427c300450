"""nbgrader's Execute preprocessor, made to survive a dying or hung kernel.

Stock nbgrader drops the whole submission when the kernel dies (a student's
`os._exit`, a segfault, the machine running out of memory): no grade, no
feedback. And a cell that swallows the KeyboardInterrupt sent at its timeout
keeps the kernel busy, so every later cell waits out its own timeout too.

This subclass records either event as an error in the cell that caused it and
marks every later code cell as not run (an error, so its tests score 0, never
the full marks an empty test cell would get). The notebook is then graded as
usual. nbgrader_config.py puts it in place of `Execute`.

And an output that does not fit the notebook format (a student's code can publish
any display data) would make nbconvert reject the whole notebook
(NotebookValidationError): such an output is replaced by a note saying so, an
error output by an error, so the notebook is graded as if the output were fine.
"""
from queue import Empty
from time import monotonic

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import DeadKernelError
from nbformat import ValidationError, validate
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute

PROBE_SECONDS = 10  # how long a kernel may take to answer after a timeout interrupt


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


UNFIT = "an output of this cell was removed before grading: it does not fit the notebook format"


def fit_outputs(cell) -> int:
    """Replace each output of a code cell that breaks the notebook schema (an error output by an
    error, anything else by a line on stdout); returns how many were replaced."""
    if cell.get("cell_type") != "code":
        return 0
    outputs, replaced = [], 0
    for out in cell.get("outputs", []):
        probe = {"cell_type": "code", "id": "probe", "metadata": {}, "source": "", "execution_count": None,
                 "outputs": [out]}
        try:
            validate(probe, ref="code_cell", version=4, version_minor=5)
        except ValidationError:
            replaced += 1
            error = isinstance(out, dict) and out.get("output_type") == "error"
            out = _error("UnfitOutput", UNFIT) if error else new_output("stream", name="stdout", text=UNFIT + "\n")
        outputs.append(out)
    cell.outputs = outputs
    return replaced


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
            fit_outputs(cell)
            return self._stop(cell, resources, index, "KernelDied", "the kernel died running this cell "
                              "(os._exit, a crash, or out of memory); later cells were not run")
        fit_outputs(cell)
        timed_out = any(o.output_type == "error" and o.get("ename") == "CellTimeoutError"
                        for o in cell.get("outputs", []))
        if timed_out and not self._responds():
            return self._stop(cell, resources, index, "KernelHung", "the cell ignored the interrupt sent at "
                              f"its {self.timeout} s timeout; later cells were not run")
        return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        # nbformat validates each output as it arrives: one that does not fit the notebook format would
        # stop the notebook here (NotebookValidationError). Record a note in its place and go on.
        try:
            return super().output(outs, msg, display_id, cell_index)
        except ValidationError:
            error = msg.get("msg_type") == "error"
            out = _error("UnfitOutput", UNFIT) if error else new_output("stream", name="stdout", text=UNFIT + "\n")
            outs.append(out)
            return out

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
