"""The notebooks' test helper: a failing test names its cause.

Hand-written course infrastructure (not exported from a notebook). Every
graded test cell runs its checks inside `task(...)`:

    from tinytorch_lib.testing import task

    with task("15.2", uses={"15.1": "quantization_params"}):
        q, s, z = quantize_tensor(np.array([-1.0, 0.0, 0.5, 3.0]), symmetric=False)
        assert q.tolist() == [-128, -64, -32, 127], f"... got {q.tolist()}"

It does three things, and nothing when the tests pass:

- **Records the outcome** of Task 15.2's tests in this kernel.
- **Points at an earlier task first.** `uses` names the earlier tasks of this
  module that Task 15.2's code (or its test) calls. If the body fails while
  one of them failed its own tests, the message starts with
  "Task 15.2 uses Task 15.1 (quantization_params), which fails its tests:
  fix that first", so you do not hunt for a bug in quantize_tensor that lives
  in quantization_params.
- **Says where your code raised.** When your code raises (numpy's "could not
  broadcast input array from shape ..."), the message names the task, your
  function and the line that raised (`cell In[12], line 31`, the cell's
  number in JupyterLab), and the test's call with its inputs (shapes and
  dtypes of the arrays it passed). A test's own `assert` message is kept as
  it is.

The record lives in this kernel only: it is a hint for the message, never a
score (the grade comes from the test cells and from checks run outside the
notebook). Rerun an earlier test cell after fixing its task to update it.
"""
from __future__ import annotations

import ast
import linecache
import re
import sys
import traceback
from pathlib import Path

from . import fmt  # the course's one formatter of values in messages (floats rounded, arrays short)

_passed: dict[str, bool] = {}   # task ("15.1") -> did its tests pass when they last ran in this kernel
_uses: dict[str, dict[str, str]] = {}  # task -> the earlier tasks it uses, as its test cell declared
_test_files: set[str] = set()   # the code names of the cells that ran task(): test code, not yours
_LIBRARY = str(Path(__file__).resolve().parent)
_MESSAGE = 4000                 # characters of an error message kept


class task:
    """Context manager around one task's tests: `with task("15.2", uses={"15.1": "quantization_params"}):`."""

    def __init__(self, name: str, uses: dict[str, str] | None = None):
        self.name, self.uses = name, dict(uses or {})

    def __enter__(self) -> "task":
        _test_files.add(sys._getframe(1).f_code.co_filename)
        _uses[self.name] = self.uses
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if kind is None:
            _passed[self.name] = True
            return False
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: not a verdict on the code
            return False
        _passed[self.name] = False
        before, after = self._earlier(error)
        if isinstance(error, AssertionError) and str(error):  # a test's verdict (or check_rule's, gradcheck's)
            error.args = (before + str(error) + after,)  # its own message, same traceback
            return False
        message = before + _where(self.name, error, tb) + after
        if isinstance(error, NotImplementedError):  # a stub: tito and feedback count these by their type
            raise NotImplementedError(message) from error
        raise AssertionError(message) from error

    def _earlier(self, error: Exception) -> tuple[str, str]:
        """(sentence to put first, note to put last) about the tasks in `uses` that are not known to pass."""
        text = _text(error)
        failing = [f"Task {t} ({what})" for t, what in first_causes(self.name, _uses, _passed).items()
                   if not names_task(text, t)]
        unknown = [f"Task {t} ({what})" for t, what in self.uses.items() if t not in _passed]
        before = after = ""
        if failing:
            which = "which fails its tests" if len(failing) == 1 else "which fail their tests"
            before = (f"Task {self.name} uses {_join(failing)}, {which}: fix that first. "
                      f"This test then failed with: ")
        if unknown:
            after = (f"\n(Task {self.name} uses {_join(unknown)}, whose tests have not run in this kernel: "
                     f"run them first)")
        return before, after


def first_causes(name: str, uses: dict[str, dict[str, str]], passed: dict[str, bool]) -> dict[str, str]:
    """The failing tasks to fix first for task `name`: every task it uses, directly or through another
    (15.5 uses 15.4, which uses 15.2, which uses 15.1), that failed while none of the tasks it uses
    failed; task -> what it provides ("quantization_params"), in task order. tito/checks.py uses this
    for the checks run outside the notebook."""
    what: dict[str, str] = {}
    for declared in uses.values():
        for t, w in declared.items():
            what.setdefault(t, w)
    reach: dict[str, set[str]] = {}

    def reachable(t: str) -> set[str]:
        if t not in reach:
            reach[t] = set()
            for u in uses.get(t, {}):
                reach[t] |= {u} | reachable(u)
        return reach[t]

    failing = [t for t in reachable(name) if passed.get(t) is False]
    roots = [t for t in failing if not any(passed.get(u) is False for u in reachable(t))]
    return {t: what.get(t, "") for t in sorted(roots, key=lambda t: [int(p) for p in t.split(".") if p.isdigit()])}


def names_task(message: str, task: str) -> bool:
    """Whether `message` already points at `task` ("Task 18.1 and 18.2's tests", a stub's "Task 15.1, ...")."""
    return re.search(rf"Tasks? [\d., and-]*(?<![\d.]){re.escape(task)}(?![\d])", message) is not None


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _text(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = f"<the message of this {type(error).__name__} could not be read>"
    return text if len(text) <= _MESSAGE else text[:_MESSAGE] + " ..."


def _frames(tb):
    """(frame, lineno, FrameSummary) from the test's frame down to the one that raised."""
    summaries = traceback.extract_tb(tb)
    frames = [(f, n) for f, n in traceback.walk_tb(tb)]
    return [(f, n, s) for (f, n), s in zip(frames, summaries)]


def _is_cell(filename: str) -> bool:
    return _cell_name(filename) is not None


def _cell_name(filename: str) -> str | None:
    """'cell In[12]' for code a notebook cell ran, None for files."""
    try:
        shell = get_ipython()  # noqa: F821 (defined in a notebook's kernel)
        label = shell.compile.format_code_name(filename)
    except Exception:
        label = None
    if label:
        return f"cell {label[1]}"
    if filename.startswith("<") or re.search(r"ipykernel_\d+", filename):
        return f"cell {filename}"
    return None


def _where(name: str, error: Exception, tb) -> str:
    """'Task 18.2: KVCache.update raised ValueError: ...' with the line that raised and the test's call."""
    frames = _frames(tb)
    kind = type(error).__name__
    text = _text(error)
    yours = [(f, s) for f, _, s in frames[1:]
             if _is_cell(f.f_code.co_filename) and f.f_code.co_filename not in _test_files]
    test_frame, _, test_line = frames[0]
    call = _statement(test_line, exact=len(frames) > 1)
    lines = []
    if yours:
        frame, at = yours[-1]
        function = frame.f_code.co_qualname
        if isinstance(error, NotImplementedError) and not text:
            lines.append(f"Task {name}: {function} is not implemented yet (it raises NotImplementedError)")
        else:
            lines.append(f"Task {name}: {function} raised {kind}: {text}")
        lines.append(f"  at {_cell_name(at.filename)}, line {at.lineno}, in {function}: {(at.line or '').strip()}")
        last = frames[-1][2]
        if last.filename.startswith(_LIBRARY) and last is not at:
            lines.append(f"  (inside tinytorch_lib/{Path(last.filename).name}, line {last.lineno}, in {last.name})")
    else:
        lines.append(f"Task {name}: the test's line raised {kind}: {text}")
        last = frames[-1][2]
        if last.filename.startswith(_LIBRARY) and len(frames) > 1:
            lines.append(f"  (inside tinytorch_lib/{Path(last.filename).name}, line {last.lineno}, in {last.name})")
    inputs = _inputs(call, test_frame)
    lines.append(f"  the test ran: {call}" + (f"  with {inputs}" if inputs else ""))
    return "\n".join(lines)


def _statement(at: traceback.FrameSummary, exact: bool = True) -> str:
    """The test's code that was running: the expression of the failing call (exact) when Python knows
    it, else the whole lines."""
    source = linecache.getlines(at.filename)
    first, last = at.lineno, getattr(at, "end_lineno", None) or at.lineno
    if source and first and last and last - first < 6:
        text = source[first - 1:last]
        col, end = getattr(at, "colno", None), getattr(at, "end_colno", None)
        if exact and col is not None and end is not None:
            text[-1] = text[-1][:end]
            text[0] = text[0][col:] if len(text) > 1 else text[0][col:end]
        code = " ".join(part.strip() for part in text)
    else:
        code = (at.line or "").strip()
    return code if len(code) <= 200 else code[:200] + " ..."


def _inputs(code: str, frame) -> str:
    """'k = Tensor of shape (1, 2, 4, 3) float32; axis = 2' for the data the code reads."""
    try:
        names = [n.id for n in ast.walk(ast.parse(code.strip(), mode="eval")) if isinstance(n, ast.Name)]
    except SyntaxError:
        try:
            tree = ast.parse(code.strip())
            names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        except SyntaxError:
            names = re.findall(r"(?<![.\w])([A-Za-z_]\w*)(?!\s*=[^=])", code)
    scope = {**frame.f_globals, **frame.f_locals}
    parts = []
    for n in dict.fromkeys(names):
        if n in scope:
            try:
                described = _describe(scope[n])
            except Exception:  # a property of the student's class that raises (a stub's shape)
                described = f"a {type(scope[n]).__name__}"
            if described:
                parts.append(f"{n} = {described}")
    return "; ".join(parts[:8])


def _describe(value) -> str | None:
    """A short description of a test's input; None for functions, classes and modules."""
    if isinstance(value, (type, type(sys))) or callable(value) and not hasattr(value, "forward"):
        return None
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        data = getattr(value, "data", value)
        kind = type(value).__name__
        shown = ""
        try:
            if getattr(data, "size", 99) <= 8:
                shown = f": {fmt(data)}"
        except Exception:
            pass
        return f"{kind} of shape {tuple(value.shape)}, {value.dtype}{shown}"
    if isinstance(value, (bool, int, float, complex, str, bytes, type(None), tuple, list, dict, range)):
        text = repr(value) if isinstance(value, str) else fmt(value)
        return text if len(text) <= 80 else text[:80] + " ..."
    return f"a {type(value).__name__}"


def reset() -> None:
    """Forget every recorded outcome (tests of this helper)."""
    _passed.clear()
    _uses.clear()
    _test_files.clear()
