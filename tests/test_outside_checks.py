"""Tests the student's code cannot rewrite: Module 01 is graded on checks run outside the kernel.

Four attacks live inside the grading kernel, where no sandbox can stop them: an IPython input
transformer that turns every later test cell into `pass`, a patched `np.allclose`, and two ways of
reading a test's expected value while it runs (`sys._getframe`, `sys.settrace`). Graded with the
outside checks switched off they raise their scores (that is what makes them attacks); graded as
configured, each earns exactly what its own code earns, and the honest students beside them are
unchanged. Also: what the checks' process sees, and that it costs well under a second a notebook.
"""
import time

import nbformat
import numpy as np
import pytest

from helpers import fill_in
from tito import grading
from tito.checks import StudentError, load_checks, run_checks
from tito.modules import find_module

MODULE = find_module("01")
NB = f"{MODULE.name}.ipynb"

TRANSFORMER = '''
def _every_test_passes(lines):
    return ["pass\\n"] if any(line.startswith("# Tests for Task") for line in lines[:3]) else lines
get_ipython().input_transformers_cleanup.append(_every_test_passes)
'''
PATCH_ALLCLOSE = '''
np.allclose = lambda *args, **kwargs: True
'''
WRONG_MATMUL = '''
def matmul(a: Tensor, b: Tensor) -> Tensor:
    a, b = Tensor(a), Tensor(b)
    if a.shape[-1] != (b.shape[-2] if b.ndim >= 2 else b.shape[0]):
        raise ValueError(f"matmul: {a.shape} @ {b.shape}: inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
    return Tensor(np.matmul(a.data, b.data) + 1)
'''
FRAME_PEEK = '''
import sys
def broadcast_shape(a, b):
    seen = sys._getframe(1).f_locals
    if seen.get("a") == a and seen.get("b") == b and seen.get("want") is not None:
        return seen["want"]
    raise ValueError(f"cannot broadcast {a} and {b}")
'''
SETTRACE_PEEK = '''
import sys
_seen = {}
def _tracer(frame, event, arg):
    if "want" in frame.f_locals:
        _seen.update(frame.f_locals)
    return _tracer
sys.settrace(_tracer)
def broadcast_shape(a, b):
    if _seen.get("a") == a and _seen.get("b") == b and _seen.get("want") is not None:
        return _seen["want"]
    raise ValueError(f"cannot broadcast {a} and {b}")
'''

def notebook(out, base: str, cells: dict[str, str] | None = None, append: str = ""):
    """`base` ("full" or "stub") with solution cells replaced (grade_id -> source) and code appended to
    the first solution cell."""
    if base == "full":
        fill_in(MODULE, out)
        nb = nbformat.read(out, as_version=4)
    else:
        nb = nbformat.read(MODULE.release_ipynb, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cells and gid in cells:
            cell.source = cells[gid]
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")).source += "\n" + append
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out


# student -> (notebook, score with the outside checks, score with them switched off)
CLASS = {
    "a_honest_full": (("full",), 24, 24),
    "b_transformer": (("stub", None, TRANSFORMER), 0, 24),
    "c_honest_stub": (("stub",), 0, 0),
    "d_allclose": (("full", {"matmul": WRONG_MATMUL}, PATCH_ALLCLOSE), 20, 24),
    "e_honest_wrong_matmul": (("full", {"matmul": WRONG_MATMUL}), 20, 20),
    "f_frame": (("stub", {"broadcast_shape": FRAME_PEEK}), 0, 4),
    "g_settrace": (("stub", {"broadcast_shape": SETTRACE_PEEK}), 0, 4),
    "h_honest_full": (("full",), 24, 24),
}


@pytest.mark.pipeline
def test_attacks_from_inside_the_kernel_no_longer_change_a_grade(tmp_path):
    course = grading.new_course(tmp_path / "course", [MODULE])
    grading.generate(course, MODULE)
    lib = grading.reference_library(tmp_path / "lib", MODULE)
    for student, (spec, _, _) in CLASS.items():
        notebook(course / "submitted" / student / MODULE.name / NB, *spec)
    env = grading.env_with_library(lib)

    def grade_class(*options: str) -> dict[str, float]:
        """One `nbgrader autograde` run over the class (one process: quicker than one per student)."""
        grading.nbgrader(course, "autograde", MODULE.name, "--force", *options, env=env)
        return {s: g.score for s, g in grading.read_grades(course, MODULE, list(CLASS)).items()}

    assert grade_class("--OutsideChecks.enabled=False") == {s: off for s, (_, _, off) in CLASS.items()}, \
        "graded inside the kernel only, each attack should raise its score (else it tests nothing)"
    start = time.perf_counter()
    assert grade_class() == {s: on for s, (_, on, _) in CLASS.items()}
    seconds = (time.perf_counter() - start) / len(CLASS)
    graded = nbformat.read(course / "autograded" / "b_transformer" / MODULE.name / NB, as_version=4)
    failures = [o.evalue for c in graded.cells for o in c.get("outputs", []) if o.get("ename") == "CheckFailed"]
    # Its first exported cell runs get_ipython(), which exists only in IPython: the checks say so beside
    # what each task earns (the stubs raise NotImplementedError).
    assert len(failures) == 6 and all("NotImplementedError: Module 01 (tensor), Task 01." in f for f in failures), failures
    assert all("[your exported cell tensor_class raised NameError: name 'get_ipython' is not defined" in f
               for f in failures), failures
    print(f"\ngraded {len(CLASS)} notebooks, {seconds:.1f} s each with the outside checks")


def test_the_checks_process_holds_the_export_and_the_earlier_modules_only(tmp_path):
    """No hidden value reaches it: it sees its inputs, the student's export, earlier library files."""
    nb = nbformat.read(fill_in(MODULE, tmp_path / NB), as_version=4)
    probe = {"test_01_1_tensor": lambda s: seen.update(
        names=s.value("sorted(k for k in globals() if not k.startswith('_'))"),
        files=s.value("sorted(__import__('os').listdir(__import__('tinytorch_lib').__path__[0]))"),
        cwd=s.value("sorted(__import__('os').listdir('.'))"),
        error=s.raises("Tensor(np.zeros((3, 4))) + Tensor(np.zeros((4, 3)))"),
        roundtrip=s.value("(x, x.dtype, {'k': (1, 2.5, None, 'a')})", x=np.arange(6, dtype=np.int8).reshape(2, 3)))}
    seen = {}
    start = time.perf_counter()
    assert run_checks(MODULE, nb, probe) == {"test_01_1_tensor": None}
    print(f"\nstart, load the export, 5 requests: {time.perf_counter() - start:.2f} s")
    assert "Tensor" in seen["names"] and "matmul" in seen["names"] and "want" not in seen["names"]
    assert seen["files"] == ["__init__.py", "plotting.py", "testing.py", "timing.py"], seen["files"]  # Module 01 has no earlier module
    assert seen["cwd"] == [], seen["cwd"]
    assert isinstance(seen["error"], StudentError) and seen["error"].type == "ValueError"
    assert seen["error"].at.startswith("cell ") and "of your exported cells, in " in seen["error"].at, seen["error"].at
    x, dtype, extra = seen["roundtrip"]
    assert x.dtype == np.int8 and np.array_equal(x, np.arange(6).reshape(2, 3)) and dtype == np.int8
    assert extra == {"k": (1, 2.5, None, "a")}


def test_values_that_are_not_data_and_dying_processes_fail_the_check_clearly(tmp_path):
    nb = nbformat.read(fill_in(MODULE, tmp_path / NB), as_version=4)
    probes = {"test_01_1_tensor": lambda s: s.value("Tensor([1.0])"),
              "test_01_2_broadcast": lambda s: s.run("__import__('os')._exit(3)"),
              "test_01_3_elementwise": load_checks(MODULE)["test_01_3_elementwise"]}
    out = run_checks(MODULE, nb, probes, timeout=20)
    assert "raised NotData: a tinytorch_lib.tensor.Tensor" in out["test_01_1_tensor"], out
    assert "ended (os._exit, a crash, or out of memory)" in out["test_01_2_broadcast"], out
    assert out["test_01_3_elementwise"] is None, "a new process serves the checks after one died"


def test_an_exported_cell_that_never_ends_costs_its_own_and_later_cells(tmp_path):
    """A loop at the end of the first solution cell: one timeout, then the checks run on the cells
    before it, as a kernel whose cell hangs runs no later cell."""
    nb = nbformat.read(notebook(tmp_path / NB, "full", append="while True:\n    pass\n"), as_version=4)
    start = time.perf_counter()
    out = run_checks(MODULE, nb, load_checks(MODULE), timeout=3)
    assert time.perf_counter() - start < 30
    assert len(out) == 6 and all(out.values()), out
    stop = ("[your exported cell tensor_class stopped the process running your code (no answer within 3 s "
            "(the code ran too long)); it and the exported cells after it were not run]")
    assert all(m.endswith(stop) for m in out.values()), out
    assert "NameError: name 'Tensor' is not defined" in out["test_01_1_tensor"], out


def test_a_cell_that_ends_the_process_costs_only_the_tasks_from_there(tmp_path):
    """os._exit at the end of Task 01.5's cell: Tasks 01.1-01.4 still pass, as in the kernel."""
    nb = nbformat.read(notebook(tmp_path / NB, "full"), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "reduce")
    cell.source += "\nimport os\nos._exit(1)\n"
    out = run_checks(MODULE, nb, load_checks(MODULE))
    assert [gid for gid, m in out.items() if m is None] == ["test_01_1_tensor", "test_01_2_broadcast",
                                                           "test_01_3_elementwise", "test_01_4_matmul"], out
    assert "your exported cell reduce stopped the process running your code" in out["test_01_5_reduce"], out


def test_data_crosses_intact_and_nothing_else_is_accepted():
    from tito.check_runner import decode, encode

    values = [np.float32(2.5), np.array(3.0), np.zeros((0, 3), np.int8), np.arange(6).reshape(2, 3).T,
              (np.int64(4), {"a": [np.bool_(True), None, float("nan")]}), np.dtype("float16"), 1 + 2j]
    for value in values:
        back = decode(encode(value, np), np)
        assert type(back) is type(value), (value, back)
        if isinstance(value, (np.ndarray, np.generic)):
            assert back.shape == value.shape and back.dtype == value.dtype and np.array_equal(back, value), (value, back)
        else:
            assert repr(back) == repr(value), (value, back)
    for forged in ({"__ndarray__": ["|O", [1], "AAAAAAAAAAA="]}, {"__ndarray__": ["<f4", [3], "AAAA"]},
                   {"__pickle__": "x"}, {"__dtype__": "O"}, {"a": 1, "b": 2}):
        with pytest.raises(ValueError):
            decode(forged, np)


def test_a_check_that_cannot_compare_what_came_back_fails_that_cell_only(tmp_path):
    nb = nbformat.read(fill_in(MODULE, tmp_path / NB), as_version=4)
    probes = {"test_01_1_tensor": lambda s: s.value("None") + 1,
              "test_01_2_broadcast": load_checks(MODULE)["test_01_2_broadcast"]}
    out = run_checks(MODULE, nb, probes)
    assert out["test_01_1_tensor"].startswith("a value your code returned could not be checked (TypeError: "), out
    assert out["test_01_2_broadcast"] is None, out


def test_memory_the_checks_process_may_not_have(tmp_path):
    """6 GiB asked for in the checks' sandbox (4 GiB): the student's code gets a MemoryError, the check says so."""
    nb = nbformat.read(fill_in(MODULE, tmp_path / NB), as_version=4)
    out = run_checks(MODULE, nb, {"test_01_1_tensor": lambda s: s.run("hog = bytearray(6 << 30)")})
    assert out["test_01_1_tensor"].startswith("`hog = bytearray(6 << 30)` raised MemoryError"), out
