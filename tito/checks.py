"""Graded checks that run outside the student's interpreter.

A test cell in the notebook runs in the grading kernel, beside the student's code: code there can
rewrite later cells (an IPython input transformer), patch numpy, or read a test's expected values
out of its frame. So a module's grade does not rest on it alone. `source/NN_name/checks.py`
(instructor only: never released, never in the sandbox) holds one check per test cell:

    from tito.checks import check

    @check("test_01_4_matmul")
    def matmul(s):
        rng = np.random.default_rng(1)
        a, b = rng.standard_normal((4, 5, 6)), rng.standard_normal((4, 6, 7))
        got = s.value("matmul(Tensor(a), Tensor(b)).data", a=a, b=b)   # runs in the sandbox
        assert np.allclose(got, a @ b), f"batched matmul ...: got shape {got.shape}"  # runs here

`s.run(code, **inputs)` executes code and `s.value(expr, **inputs)` evaluates an expression in a
sandboxed process that holds only the student's exported cells (as `tito module export` writes them)
and the library files of the earlier modules; inputs go in and values come back as data (numbers,
strings, tuples, lists, dicts, numpy arrays; tito/check_runner.py), and every comparison and expected
value stays in this process, where no student code ever ran. `s.raises(code, **inputs)` runs code
that should raise and returns the StudentError (None when nothing was raised); `s.expect_error`
asserts the kind of error and what its message names. `tensor_data` fetches a Tensor's data,
`numerical_gradients` gives an oracle's finite-difference gradients to compare a backward with.

`OutsideChecks`, an autograde preprocessor after the kernel ran the notebook, runs each test cell's
check and appends the failure to that cell as an error output, so the cell scores 0 unless the
notebook's own tests and the outside check both pass. A failure of a task that uses an earlier task
whose cell failed (in the kernel or in its check) is led by "Task 15.2 uses Task 15.1
(quantization_params), which fails its tests: fix that first" (name_causes: the tasks a cell uses
are the ones its `with task("15.2", uses={...}):` declares, tinytorch_lib/testing.py, plus a check's
own `uses`). A StudentError names the exported line and function that raised (`at`).
"""
from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import secrets
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from nbformat.v4 import new_output
from traitlets import Integer

from . import check_runner, limits
from .export import HEADER, _cell_lines
from .modules import LIBRARY_FILES, Module, TitoError, all_modules, SOURCE
from .sandbox import bwrap_argv, kernel_env, library_folder, one_blas_thread, opted_out, visible_library

RUNNER = Path(check_runner.__file__).read_text()
LOG = logging.getLogger("tito.checks")
ANSWER_BYTES = 64 << 20      # the largest answer read from the sandbox
MEMORY_BYTES = 4 << 30       # the checks' sandbox: its memory cgroup, and each process's address space
WORK_BYTES = 64 << 20        # its working folder and /tmp (tmpfs)
CHECK = Callable[["Scope"], None]
EXPORTED = "your exported cells"  # the code a StudentError names when loading the export raised


class StudentError(Exception):
    """The student's code raised: its type, message and the exported line that raised."""

    def __init__(self, code: str, type_: str, message: str, at: str = ""):
        self.code, self.type, self.message, self.at = code, type_, message, at
        where = f" (at {at})" if at else ""
        text = message if len(message) <= 600 else message[:600] + " ..."  # so `at` survives a summary's cut
        super().__init__(f"`{_short(code)}` raised {type_}: {text}{where}")

    def __repr__(self) -> str:  # messages print it inside "(...)": the sentence, not the class
        return str(self)

    @property
    def said(self) -> str:
        """'ValueError: <message> (at cell update, line 16 of your exported cells, in update: ...)' for a
        check's own message about an error it did not expect."""
        text = self.message if len(self.message) <= 600 else self.message[:600] + " ..."
        return f"{self.type}: {text}" + (f" (at {self.at})" if self.at else "")


class SandboxError(Exception):
    """The checks' process stopped answering (it died, hung past the limit, or sent garbage)."""


class LoadStop(Exception):
    """Exported cell `index` (id `cid`) ended the checks' process or ran past its time."""

    def __init__(self, index: int, cid: str, reason: str):
        self.index, self.cid, self.reason = index, cid, reason
        super().__init__(f"your exported cell {cid} stopped the process running your code ({reason}); "
                         "it and the exported cells after it were not run")


@dataclass
class Export:
    """A notebook's exported cells: the whole text (as `tito module export` lays it out, for line
    numbers) and each cell as (cell id, its first line in the text, its code)."""
    text: str
    cells: list[tuple[str, int, str]]

    @classmethod
    def of(cls, module: Module, nb) -> "Export":
        out, cells = [HEADER.format(origin="your notebook")], []
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or "export" not in cell.metadata.get("tags", []):
                continue
            cid = cell.get("id", index)
            out += ["", f"# cell {cid}"]
            lines = [line for _, line in _cell_lines(module, cell)]
            cells.append((str(cid), len(out) + 1, "\n".join(lines)))
            out += lines
        return cls("\n".join(out) + "\n", cells)


def _short(code: str, limit: int = 160) -> str:
    code = " ".join(code.split())
    return code if len(code) <= limit else code[:limit] + " ..."


def check(grade_id: str, uses: dict[str, str] | None = None) -> Callable[[CHECK], CHECK]:
    """Register the decorated function as the outside check of test cell `grade_id`.

    The earlier tasks the checked task calls are declared once, in the test cell's
    `with task("15.2", uses={"15.1": "quantization_params"}):` (tinytorch_lib/testing.py); `uses` adds
    tasks that only the hidden cases call. When the check fails while one of those tasks' cells failed,
    its message starts with "Task 15.2 uses Task 15.1 (quantization_params), which fails its tests:
    fix that first" (name_causes)."""
    def register(fn: CHECK) -> CHECK:
        fn.grade_id = grade_id
        fn.uses = dict(uses or {})
        return fn
    return register


def declared_tasks(nb) -> dict[str, tuple[str, dict[str, str]]]:
    """grade_id -> (task, uses) from each test cell's `with task("15.2", uses={...}):`."""
    found = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "task" and node.args:
                try:
                    name = ast.literal_eval(node.args[0])
                    uses = next((ast.literal_eval(k.value) for k in node.keywords if k.arg == "uses"), {})
                except ValueError:
                    continue
                if isinstance(name, str) and isinstance(uses, dict):
                    found[gid] = (name, {str(k): str(v) for k, v in uses.items()})
                    break
    return found


def _cell_failed(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def name_causes(nb, outcomes: dict[str, str | None], checks: dict[str, CHECK]) -> dict[str, str | None]:
    """outcomes with each failure that comes after a failing earlier task it uses led by
    "Task 15.2 uses Task 15.1 (quantization_params), which fails its tests: fix that first. "
    A task fails when its test cell raised in the notebook or its check failed; a message that names
    that task already (a stub's NotImplementedError, requires()) is left as it is."""
    from tinytorch_lib.testing import first_causes, names_task  # the notebooks' own rules: both say the same

    declared = declared_tasks(nb)
    passed: dict[str, bool] = {}
    uses_of: dict[str, dict[str, str]] = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in declared:
            name = declared[gid][0]
            ok = not _cell_failed(cell) and not outcomes.get(gid)
            passed[name] = passed.get(name, True) and ok
            uses_of[name] = {**declared[gid][1], **getattr(checks.get(gid), "uses", {})}
    named = {}
    for gid, message in outcomes.items():
        name = declared.get(gid, (None, {}))[0]
        causes = first_causes(name, uses_of, passed) if name else {}
        bad = [f"Task {t} ({what})" for t, what in causes.items() if not names_task(message or "", t)]
        if message and bad:
            which = "which fails its tests" if len(bad) == 1 else "which fail their tests"
            this = f"Task {name}" if name else gid
            listed = bad[0] if len(bad) == 1 else ", ".join(bad[:-1]) + " and " + bad[-1]
            message = f"{this} uses {listed}, {which}: fix that first. This check then failed with: {message}"
        named[gid] = message
    return named


def checks_file(module: Module) -> Path:
    return SOURCE / module.name / "checks.py"


def load_checks(module: Module) -> dict[str, CHECK]:
    """grade_id -> check, from source/NN_name/checks.py ({} when the module has none)."""
    path = checks_file(module)
    if not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location(f"tito_checks_{module.number}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    found = {}
    for value in vars(loaded).values():
        gid = getattr(value, "grade_id", None)
        if callable(value) and isinstance(gid, str):
            if gid in found:
                raise TitoError(f"{path}: two checks for {gid}")
            found[gid] = value
    return found


class Runner:
    """The sandboxed process that holds the student's export and answers requests."""

    def __init__(self, module: Module, export: "Export", env: dict, timeout: float, upto: int | None = None):
        """Start the process and run the export's cells, the first `upto` of them (all: None).
        A cell that raises is noted in self.notes; one that ends the process or runs past the timeout
        raises LoadStop naming it."""
        self.timeout = timeout
        self._tmp = Path(tempfile.mkdtemp(prefix="tito-checks-"))
        work = self._tmp / module.name  # the folder's name tells the sandbox which module this is
        work.mkdir()
        library = library_folder(env.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-s", "-c", RUNNER]
        self._memory = None
        if opted_out():
            argv, run_env = cmd, dict(env, PYTHONPATH=str(library)) if library else dict(env)
        else:
            uid = None
            if os.geteuid() == 0:
                uid = 200_000 + secrets.randbelow(800_000)
            files = visible_library(library, work.name) if library is not None else None
            argv = bwrap_argv(cmd, work, None, library, uid, WORK_BYTES, WORK_BYTES, 64, memory_bytes=MEMORY_BYTES,
                              library_files=files)
            run_env = kernel_env(env, library)
            # One memory limit for the whole sandbox, as for a grading kernel (tito/limits.py).
            self._memory = limits.memory_group(MEMORY_BYTES, LOG, os.environ.get(limits.RUN_ENV))
            if self._memory is not None:
                argv = self._memory.wrap(argv)
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=run_env, cwd=str(work),
                                      preexec_fn=_limit_memory if opted_out() else None)
        self._buffer = b""
        self._next = 0
        self.notes: list[str] = []
        try:
            self.request({"op": "open", "file": LIBRARY_FILES[module.number][:-3], "text": export.text})
            for index, (cid, first, code) in enumerate(export.cells[:upto]):
                try:
                    self.request({"op": "cell", "first": first, "code": code})
                except StudentError as e:
                    self.notes.append(f"your exported cell {cid} raised {e.type}: {e.message}"
                                      + (f" (at {e.at})" if e.at else ""))
                except SandboxError as e:
                    raise LoadStop(index, cid, str(e)) from None
        except BaseException:
            self.close()
            raise

    def request(self, request: dict):
        self._next += 1
        request["id"] = self._next
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SandboxError("the process running your code had stopped") from None
        answer = self._answer(time.monotonic() + self.timeout)
        if answer.get("id") != self._next:
            raise SandboxError("the process running your code answered out of turn")
        if "error" in answer:
            error = answer["error"]
            if not isinstance(error, dict):
                raise SandboxError("the process running your code sent a malformed answer")
            code = EXPORTED if request["op"] in ("open", "cell") else request.get("code", "")
            raise StudentError(code, str(error.get("type")),
                               str(error.get("message")), str(error.get("at") or ""))
        try:
            return check_runner.decode(answer.get("value"), np)
        except (ValueError, TypeError, KeyError) as e:
            raise SandboxError(f"the process running your code sent a value that is not data ({e})") from None

    def _answer(self, deadline: float) -> dict:
        out = self._proc.stdout
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise SandboxError(f"no answer within {self.timeout:g} s (the code ran too long)")
                if not sel.select(left):
                    continue
                chunk = os.read(out.fileno(), 1 << 20)
                if not chunk:
                    self.close()
                    raise SandboxError("the process running your code ended (os._exit, a crash, or out of memory)")
                self._buffer += chunk
                if len(self._buffer) > ANSWER_BYTES:
                    self.close()
                    raise SandboxError(f"an answer larger than {ANSWER_BYTES >> 20} MiB")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except ValueError:
            raise SandboxError("the process running your code sent something that is not an answer") from None
        if not isinstance(answer, dict):
            raise SandboxError("the process running your code sent a malformed answer")
        return answer

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)
        if self._memory is not None:
            self._memory.remove()
            self._memory = None


def _limit_memory() -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


class Scope:
    """One check's names in the sandbox: a copy of the student's exported module."""

    def __init__(self, runner: Runner, name: str):
        self._runner, self._name = runner, name

    def run(self, code: str, **inputs) -> None:
        """Execute `code` (statements); StudentError when it raises."""
        self._runner.request({"op": "exec", "scope": self._name, "code": code, "inputs": _encode(inputs)})

    def value(self, expr: str, **inputs):
        """Evaluate `expr` and return its value as data; StudentError when it raises."""
        return self._runner.request({"op": "eval", "scope": self._name, "code": expr, "inputs": _encode(inputs)})

    def raises(self, code: str, **inputs) -> StudentError | None:
        """Execute `code` that should raise: the error it raised, or None."""
        try:
            self.run(code, **inputs)
        except StudentError as e:
            return e
        return None

    def expect_error(self, code: str, what: str, needles: tuple[str, ...] = (), error: str = "ValueError",
                     **inputs) -> StudentError:
        """Execute `code`, which must raise `error` with every string of `needles` in its message;
        AssertionError saying `what` was run and what happened instead."""
        raised = self.raises(code, **inputs)
        assert raised is not None, f"{what} should raise {error}"
        assert raised.type == error, f"{what} should raise {error}, raised {raised.said}"
        missing = [n for n in needles if n not in raised.message]
        assert not missing, f"{what}: the error should name {', '.join(needles)}, got: {raised.message}"
        return raised


def tensor_data(s: Scope, what: str, expr: str, **inputs) -> np.ndarray:
    """`expr` must give a Tensor: its .data, else AssertionError saying what came back. The call runs
    alone first, so an error it raises quotes just the student's call."""
    s.run(f"_out = {expr}", **inputs)
    kind, data = s.value("(type(_out).__name__, _out.data if isinstance(_out, Tensor) else None)")
    assert data is not None, f"{what}: expected a Tensor, got {kind}"
    return data


def numerical_gradients(fn, arrays, w, eps=1e-6):
    """Central finite differences of sum(w * fn(*arrays)) with respect to each array (float64): the
    gradient a check compares a student's backward with, computed here from an oracle `fn`."""
    grads = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            plus = [x.copy() for x in arrays]
            minus = [x.copy() for x in arrays]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (np.sum(w * fn(*plus)) - np.sum(w * fn(*minus))) / (2 * eps)
        grads.append(g)
    return grads


PLAIN = """
def plain_(v):
    if isinstance(v, np.generic):
        return v.item()
    if type(v) in (list, tuple):
        return type(v)(plain_(x) for x in v)
    if type(v) is dict:
        return {k: plain_(x) for k, x in v.items()}
    return v
"""


class Plain:
    """A Scope whose value() answers with numpy scalars turned into Python numbers (inside lists, tuples
    and dicts too), by plain_ defined in the check's sandbox scope."""

    def __init__(self, s: Scope):
        self._s = s
        s.run(PLAIN)

    def value(self, expr: str, **inputs):
        return self._s.value(f"plain_({expr})", **inputs)

    def __getattr__(self, name):
        return getattr(self._s, name)


def task_first(s: Scope, code: str, task: str, **inputs) -> None:
    """Raise the StudentError of `code` when it names `task` itself (its stub is not done yet), so an
    unfinished task is reported as itself and not as the earlier task it calls."""
    error = s.raises(code, **inputs)
    if error is not None and task in error.message:
        raise error


def requires(s: Scope, expr: str, ok, what: str, task: str, this: str, describe=None, **inputs) -> None:
    """Task `this` calls Task `task`'s code: evaluate `expr` and stop with a hint to fix `task` first
    unless ok(value) holds. describe(value or StudentError) words what came back (default: its repr,
    or what it raised, cut at 300 characters)."""
    try:
        got = s.value(expr, **inputs)
    except StudentError as e:
        got = e
    good = False
    if not isinstance(got, StudentError):
        try:
            good = bool(ok(got))
        except Exception:
            good = False
    if describe is not None:
        brief = describe(got)
    else:
        brief = f"it raised {got.said}" if isinstance(got, StudentError) else f"got {got!r}"[:300]
    assert good, f"Task {this} calls Task {task}, and {what} ({brief}): make Task {task}'s tests pass first"


def _encode(inputs: dict):
    return check_runner.encode(inputs, np)


def _failure(e: Exception) -> str:
    if isinstance(e, StudentError) and e.code == EXPORTED:
        return f"running your notebook's exported cells raised {e.type}: {e.message}" + (f" (at {e.at})" if e.at else "")
    return str(e)


def run_checks(module: Module, nb, checks: dict[str, CHECK], env: dict | None = None,
               timeout: float = 60, budget: float = 300) -> dict[str, str | None]:
    """grade_id -> None (passed) or the failure message, for each test cell of `nb` with a check.

    timeout: seconds one request may take; budget: seconds for all of this notebook's checks. A
    process that dies is replaced for the next check; an export that cannot load fails them all.
    """
    env = one_blas_thread(dict(os.environ if env is None else env))
    wanted = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("grade_id") in checks]
    export = Export.of(module, nb)
    outcomes: dict[str, str | None] = {}
    runner, upto, stops = None, None, []
    unloadable, deadline = None, time.monotonic() + budget
    try:
        for i, gid in enumerate(wanted):
            if unloadable or time.monotonic() > deadline:
                outcomes[gid] = unloadable or f"not checked: this notebook's checks used up their {budget:g} s"
                continue
            try:
                while runner is None or not runner.alive:
                    if runner is not None:
                        runner.close()
                        runner = None
                    try:
                        runner = Runner(module, export, env, timeout, upto)
                    except LoadStop as e:  # run again without that cell and the ones after it (a notebook's
                        stops.append(str(e))  # kernel dies there too); twice is enough
                        upto = e.index
                        if len(stops) > 2:
                            unloadable = "; ".join(stops)
                            raise SandboxError(unloadable) from None
                    except (StudentError, SandboxError) as e:
                        unloadable = _failure(e)
                        raise
                checks[gid](Scope(runner, f"check{i}"))
                outcomes[gid] = None
            except AssertionError as e:
                outcomes[gid] = str(e) or f"{gid} failed"
            except (StudentError, SandboxError) as e:
                outcomes[gid] = _failure(e)
                if isinstance(e, SandboxError) and runner is not None:
                    runner.close()
                    runner = None
            except Exception as e:  # a check comparing a value of an unexpected type or shape
                outcomes[gid] = f"a value your code returned could not be checked ({type(e).__name__}: {e})"
            notes = stops + (runner.notes if runner is not None else [])
            if outcomes[gid] and notes and outcomes[gid] != unloadable:
                outcomes[gid] += " [" + "; ".join(dict.fromkeys(notes)) + "]"
    finally:
        if runner is not None:
            runner.close()
    return outcomes


def _number(value) -> float | None:
    """A number from configuration: --Execute.timeout=5 on the command line arrives as a string."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _module_named(assignment: str) -> Module | None:
    return next((m for m in all_modules() if m.name == assignment), None)


try:
    from nbgrader.preprocessors import NbGraderPreprocessor
except ImportError:  # tito's student commands do not need nbgrader's preprocessors
    NbGraderPreprocessor = object


class OutsideChecks(NbGraderPreprocessor):
    """Autograde step: each test cell with a check also scores on the check, run outside the kernel."""

    timeout = Integer(0, config=True, help="seconds one request to the checks' process may take (loading one "
                                           "exported cell, or one call); 0: Execute.timeout, a cell's limit")
    budget = Integer(300, config=True, help="seconds all of one notebook's checks may take")

    def preprocess(self, nb, resources):
        assignment = resources.get("nbgrader", {}).get("assignment", "")
        module = _module_named(assignment)
        if module is None:
            raise TitoError(f"outside checks: {assignment!r} is not a module of this course (source/NN_name/)")
        checks = load_checks(module)
        if not checks:  # every module has them (tests/test_build.py): grading without would trust the kernel
            raise TitoError(f"outside checks: {checks_file(module)} is missing or holds no check: write one "
                            "check per test cell (source/AUTHORING.md) before grading this module")
        start = time.monotonic()
        timeout = self.timeout or _number(self.config.get("Execute", {}).get("timeout")) or 60
        outcomes = name_causes(nb, run_checks(module, nb, checks, timeout=timeout, budget=self.budget), checks)
        for cell in nb.cells:
            message = outcomes.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
            if message:
                cell.outputs.append(new_output("error", ename="CheckFailed", evalue=message,
                                               traceback=[f"CheckFailed (graded outside your notebook): {message}"]))
        failed = sum(1 for m in outcomes.values() if m)
        self.log.info(f"outside checks: {len(outcomes) - failed}/{len(outcomes)} passed in "
                      f"{time.monotonic() - start:.2f} s")
        return nb, resources
