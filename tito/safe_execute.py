"""nbgrader's Execute preprocessor, made to survive a dying, hung, slow or chatty kernel.

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

Two bounds more (issue 19):

- notebook_timeout: wall-clock seconds for the whole notebook. Each cell's
  timeout is cut to what is left; the cell running when it runs out gets
  "notebook time limit of N s reached" and later cells are not run. Without it
  20 cells of 110 s (each under the 120 s cell limit) keep nbgrader busy for
  37 minutes.
- cell_output_bytes / notebook_output_bytes: what is kept of outputs, counted
  in bytes of text (UTF-8) as messages arrive; the rest is dropped on arrival
  with one line saying where it was cut. nbgrader's LimitOutput counts lines
  and runs after the notebook is done: a gigabyte printed on one line passed it.
  (A single message larger than the sockets accept never reaches us at all: see
  MAX_MESSAGE_BYTES in sandbox_kernel.py.)
"""
import json
import math
import os
import sys
from queue import Empty
from time import monotonic

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellExecutionComplete, DeadKernelError
from nbformat import ValidationError, validate
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

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


def _size(msg: dict) -> int:
    """Bytes of text an output message would add to the notebook."""
    content = msg.get("content", {})
    if msg["msg_type"] == "stream":
        return len(content.get("text", "").encode("utf-8", "surrogatepass"))
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass"))


ERROR_BYTES = 4096  # an error over the caps keeps its name, the start of its message, its last lines


def _short_error(msg: dict) -> dict:
    content = msg["content"]
    evalue = str(content.get("evalue", ""))
    lines = [str(line)[:500] for line in content.get("traceback", [])[-4:]]
    short = {**content, "evalue": evalue[:1000] + (" ... (cut: output limit)" if len(evalue) > 1000 else ""),
             "traceback": ["(traceback cut: output limit)", *lines]}
    return {**msg, "content": short}


PROGRESS_ENV = "TITO_CELL_PROGRESS"  # "1": one PROGRESS_MARK line on stderr per graded cell as it finishes
PROGRESS_MARK = "tito-cell-progress"


def report_graded_cell(cell, seconds: float) -> None:
    """With PROGRESS_ENV set, a line `PROGRESS_MARK<TAB>grade_id<TAB>pass|fail<TAB>seconds` on stderr for a
    graded test cell (`tito module test` reads them as nbgrader runs and prints one line each)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if os.environ.get(PROGRESS_ENV) != "1" or cell.get("cell_type") != "code" or not meta.get("grade") \
            or meta.get("solution"):
        return
    failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    print(f"{PROGRESS_MARK}\t{meta.get('grade_id', '?')}\t{'fail' if failed else 'pass'}\t{seconds:.2f}",
          file=sys.stderr, flush=True)


class SafeExecute(Execute):
    """Execute, but a dead or hung kernel costs the remaining cells, not the whole notebook."""

    notebook_timeout = Integer(600, allow_none=True, config=True,
                               help="wall-clock seconds for the whole notebook (None or 0: no limit); when they "
                                    "run out, the running cell gets an error and later cells are not run")
    cell_output_bytes = Integer(1 << 20, config=True,
                                help="bytes of text kept of one cell's outputs; the rest is dropped as it arrives")
    notebook_output_bytes = Integer(10 << 20, config=True,
                                    help="bytes of text kept of all the notebook's outputs")

    def preprocess(self, nb, resources=None, km=None):
        self._stopped_in = None
        self._stop_note = ""
        self._notebook_kept = 0
        self._deadline = monotonic() + self.notebook_timeout if self.notebook_timeout else None
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if self._stopped_in is None and cell.cell_type == "code" and cell.source.strip() and self._out_of_time():
            self._stopped_in, self._stop_note = index, self._time_note()
        if self._stopped_in is not None:
            if cell.cell_type == "code":
                why = self._stop_note or f"the kernel stopped in cell {self._stopped_in + 1}"
                cell.outputs = [_error("NotRun", f"not run: {why}")]
            return cell, resources
        self._cell_kept, self._cut = 0, False
        self._repair("shell")
        started = monotonic()
        try:
            try:
                cell, resources = super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                fit_outputs(cell)
                return self._stop(cell, resources, index, "KernelDied", "the kernel died running this cell "
                                  "(os._exit, a crash, or out of memory); later cells were not run")
        finally:
            report_graded_cell(cell, monotonic() - started)
        fit_outputs(cell)
        timed_out = any(o.output_type == "error" and o.get("ename") == "CellTimeoutError"
                        for o in cell.get("outputs", []))
        if timed_out and self._out_of_time():
            # The notebook's time ran out in this cell: say so instead of the cell's own timeout.
            cell.outputs = [o for o in cell.outputs if o.get("ename") != "CellTimeoutError"]
            self._stop_note = self._time_note()
            return self._stop(cell, resources, index, "NotebookTimeout",
                              f"notebook time limit of {self.notebook_timeout} s reached; later cells were not run")
        if timed_out and not self._responds():
            return self._stop(cell, resources, index, "KernelHung", "the cell ignored the interrupt sent at "
                              f"its {self.timeout} s timeout; later cells were not run")
        return cell, resources

    def _record(self, outs, msg, display_id, cell_index):
        # nbformat validates each output as it arrives: one that does not fit the notebook format would
        # stop the notebook here (NotebookValidationError). Record a note in its place and go on.
        try:
            return super().output(outs, msg, display_id, cell_index)
        except ValidationError:
            error = msg.get("msg_type") == "error"
            out = _error("UnfitOutput", UNFIT) if error else new_output("stream", name="stdout", text=UNFIT + "\n")
            outs.append(out)
            return out

    # --- the notebook's time ---------------------------------------------------------------

    def _out_of_time(self) -> bool:
        return self._deadline is not None and monotonic() >= self._deadline - 0.5

    def _time_note(self) -> str:
        return f"the notebook time limit of {self.notebook_timeout} s was reached"

    def _get_timeout(self, cell):
        """The cell's own timeout, cut to what is left of the notebook's."""
        timeout = super()._get_timeout(cell)
        if self._deadline is None:
            return timeout
        left = max(1, math.ceil(self._deadline - monotonic()))
        return left if timeout is None else min(timeout, left)

    # --- messages too large to receive ----------------------------------------------------------

    def _repair(self, channel: str) -> bool:
        """Reconnect `channel` if a message over the sockets' size limit broke it; True if so."""
        dropped = getattr(self.kc, "dropped", None)
        if dropped is None or not dropped(channel):
            return False
        self.log.warning(f"a kernel message larger than the {channel} socket accepts was dropped; reconnecting")
        self.kc.reconnect(channel)
        return True

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        """nbclient's loop over the cell's output messages, checking for a dropped connection."""
        while True:
            try:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=0.5))
            except Empty:
                if self._repair("iopub") and not self._cut:
                    self._cut = True
                    cell.outputs.append(new_output("stream", name="stdout", text=(
                        "\n[output cut: a message over the size limit was dropped, with what followed it "
                        "until the connection was remade]\n")))
                continue
            if msg["parent_header"].get("msg_id") == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return

    # --- output bytes --------------------------------------------------------------------------

    def output(self, outs, msg, display_id, cell_index):
        """Keep an output only while the cell and the notebook are under their byte caps.
        Errors are always kept (a test cell scores by them), shortened when over."""
        size = _size(msg)
        cell_left = self.cell_output_bytes - self._cell_kept
        notebook_left = self.notebook_output_bytes - self._notebook_kept
        cap = max(0, min(cell_left, notebook_left))
        if size > cap and msg["msg_type"] == "error":
            msg, size = _short_error(msg), ERROR_BYTES
        elif size > cap:
            if self._cut:
                return None
            self._cut = True
            which = (f"this cell's limit of {self.cell_output_bytes}" if cell_left <= notebook_left
                     else f"the notebook's limit of {self.notebook_output_bytes}")
            if msg["msg_type"] == "stream" and cap > 0:  # keep the beginning of the text
                text = msg["content"]["text"].encode("utf-8", "surrogatepass")[:cap].decode("utf-8", "ignore")
                self._record(outs, {**msg, "content": {**msg["content"], "text": text}}, display_id, cell_index)
                self._cell_kept += cap
                self._notebook_kept += cap
            note = new_output("stream", name="stdout",
                              text=f"\n[output cut at {which} bytes: the rest of this cell's output was dropped]\n")
            outs.append(note)
            return note
        self._cell_kept += size
        self._notebook_kept += size
        return self._record(outs, msg, display_id, cell_index)

    # --- stopping ---------------------------------------------------------------------------

    def _stop(self, cell, resources, index, ename, evalue):
        self._stopped_in = index
        cell.outputs.append(_error(ename, evalue))
        return cell, resources

    def _responds(self) -> bool:
        self._repair("shell")  # a reply too large to receive broke it: the kernel may be fine
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
