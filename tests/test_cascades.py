"""Failures name their cause: deliberate mistakes, graded for real, and the messages they get.

Every test cell runs inside `with task("15.2", uses={"15.1": "quantization_params"}):`
(tinytorch_lib/testing.py). A wrong Task 15.1 then fails Tasks 15.2, 15.4 and 15.5 too, and their
messages must send the student to 15.1 first, in the notebook and in the outside checks
(tito/checks.py name_causes); an error raised inside the student's code must name the task, the
student's function and line, and the test's call with its inputs.
"""
import itertools
import linecache
import re
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest

from helpers import fill_in
from tinytorch_lib import testing
from tinytorch_lib.testing import first_causes, names_task
from tito import grading
from tito.checks import declared_tasks, name_causes
from tito.modules import all_modules, find_module

# module -> (solution cell, reference line, the mistake)
MISTAKES = {
    "15": ("params", "scale = np.maximum(np.abs(lo), np.abs(hi)) / qmax",
           "scale = np.maximum(np.abs(lo), np.abs(hi)) / (qmax - qmin)"),  # the affine denominator, symmetric
    "16": ("masks", 'mask[np.argsort(np.abs(w), axis=None, kind="stable")[:k]] = False',
           'mask[np.argsort(w, axis=None, kind="stable")[:k]] = False'),  # forgets the magnitude
    "18": ("update", "cache.keys[layer_idx, :, :, n:n + s_new] = k",
           "cache.keys[layer_idx, :, n:n + s_new] = k"),                  # writes along the heads axis
}


def test_first_causes_follow_uses_down_to_the_task_to_fix():
    uses = {"15.2": {"15.1": "quantization_params"}, "15.4": {"15.2": "quantize_tensor"},
            "15.5": {"15.3": "MinMaxObserver", "15.4": "QuantizedLinear.forward"}}
    broken_15_1 = {"15.1": False, "15.2": False, "15.3": True, "15.4": False}
    for t in ("15.2", "15.4", "15.5"):
        assert first_causes(t, uses, broken_15_1) == {"15.1": "quantization_params"}, t
    # 15.2 passes (its cases miss the bug) but 15.1 fails: 15.4 still reaches 15.1 through it
    assert first_causes("15.4", uses, {**broken_15_1, "15.2": True}) == {"15.1": "quantization_params"}
    assert first_causes("15.5", uses, {"15.1": True, "15.2": True, "15.3": False, "15.4": False}) == \
        {"15.3": "MinMaxObserver", "15.4": "QuantizedLinear.forward"}
    assert first_causes("15.1", uses, broken_15_1) == {}


_CELLS = itertools.count()


def _run_cells(*cells: str) -> dict:
    """Run code as a notebook runs cells (each its own '<cell N>' file, one namespace); like nbgrader,
    a cell that raises does not stop the next; the last cell's error is raised."""
    scope = {}
    for i, code in enumerate(cells):
        name = f"<cell {next(_CELLS)}>"  # unique, as IPython names each cell it runs
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # as IPython keeps a cell's text
        try:
            exec(compile(code, name, "exec"), scope)
        except Exception:
            if i == len(cells) - 1:
                raise
    return scope


def test_a_raise_in_the_students_code_names_task_function_line_and_input():
    testing.reset()
    solution = "import numpy as np\ndef update(cache, k):\n    cache[:, :4] = k\n    return cache\n"
    test = ('from tinytorch_lib.testing import task\n'
            'with task("18.2", uses={"18.1": "KVCache"}):\n'
            '    k = np.ones((2, 5, 3), dtype=np.float32)\n'
            '    update(np.zeros((2, 6, 3)), k)\n')
    with pytest.raises(AssertionError) as raised:
        _run_cells("from tinytorch_lib.testing import task\nwith task('18.1'):\n    assert False, 'lengths wrong'",
                   solution, test)
    message = str(raised.value)
    assert message.startswith("Task 18.2 uses Task 18.1 (KVCache), which fails its tests: fix that first. "
                              "This test then failed with: Task 18.2: update raised ValueError: could not broadcast"), message
    assert re.search(r"at cell <cell \d+>, line 3, in update: cache\[:, :4\] = k", message), message
    assert "the test ran: update(np.zeros((2, 6, 3)), k)  with k = ndarray of shape (2, 5, 3), float32" in message, message


def test_a_tests_own_message_is_kept_and_an_unfinished_task_says_so():
    testing.reset()
    with pytest.raises(AssertionError, match=r"^expected 3, got 2$"):
        _run_cells("from tinytorch_lib.testing import task\nwith task('01.1'):\n    assert 1 + 1 == 3, 'expected 3, got 2'")
    with pytest.raises(NotImplementedError, match=r"^Task 01.2: f is not implemented yet"):
        _run_cells("def f(x):\n    raise NotImplementedError()",
                   "from tinytorch_lib.testing import task\nwith task('01.2'):\n    f(1)")
    _run_cells("from tinytorch_lib.testing import task\nwith task('01.3', uses={'01.2': 'f'}):\n    pass")
    assert testing._passed == {"01.1": False, "01.2": False, "01.3": True}


def test_every_test_cell_declares_its_task():
    """One mechanism for all modules: each graded test cell runs in task("NN.T"), uses only earlier tasks."""
    for module in all_modules():
        nb = nbformat.read(module.release_ipynb, as_version=4)
        tests = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
        declared = declared_tasks(nb)
        assert sorted(declared) == sorted(tests), f"{module.name}: test cells without task(...): {set(tests) - set(declared)}"
        for gid, (name, uses) in declared.items():
            assert gid.startswith(f"test_{name.replace('.', '_')}_"), f"{module.name} {gid} declares task {name}"
            key = lambda t: [int(p) for p in t.split(".")]
            assert all(key(u) < key(name) for u in uses), f"{module.name} {gid}: uses a later task: {uses}"


def test_checks_name_the_earlier_task_only_when_its_cell_failed():
    nb = nbformat.read(find_module("15").release_ipynb, as_version=4)
    outcomes = {"test_15_1_params": "expected zero_point -64", "test_15_2_quantize_tensor": "expected codes ...",
                "test_15_3_observers": None, "test_15_4_quantized_linear": "input_scale ...",
                "test_15_5_quantize": "within 0.05"}
    named = name_causes(nb, outcomes, {})
    assert named["test_15_1_params"] == "expected zero_point -64"
    for gid in ("test_15_2_quantize_tensor", "test_15_4_quantized_linear", "test_15_5_quantize"):
        assert named[gid].startswith(f"Task {gid[5:7]}.{gid[8]} uses Task 15.1 (quantization_params), which fails "
                                     "its tests: fix that first. This check then failed with: "), named[gid]
    fixed = name_causes(nb, {**outcomes, "test_15_1_params": None, "test_15_2_quantize_tensor": None}, {})
    assert fixed["test_15_4_quantized_linear"] == "input_scale ..."


def _errors(graded, gid: str) -> list[str]:
    cell = next(c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
    return [o.evalue for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.mark.pipeline
def test_deliberate_mistakes_are_reported_where_they_are(tmp_path):
    """Each module graded once (nbgrader autograde, sandboxed kernel, outside checks) with one mistake."""
    def grade(number: str):
        cell_id, right, wrong = MISTAKES[number]
        module = find_module(number)
        course = grading.new_course(tmp_path / number, [module])
        grading.generate(course, module)
        nb_path = course / "submitted" / "mistake" / module.name / f"{module.name}.ipynb"
        nb = nbformat.read(fill_in(module, nb_path), as_version=4)
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell_id)
        assert right in cell.source, f"{module.name}: the reference line to break moved: {right}"
        cell.source = cell.source.replace(right, wrong)
        nbformat.write(nb, nb_path)
        lib = grading.reference_library(tmp_path / f"lib{number}", module)
        grading.nbgrader(course, "autograde", module.name, "--force", env=grading.env_with_library(lib))
        return nbformat.read(course / "autograded" / "mistake" / module.name / f"{module.name}.ipynb", as_version=4)

    with ThreadPoolExecutor(len(MISTAKES)) as pool:  # the kernels wait on each other's I/O: run side by side
        graded = dict(zip(MISTAKES, pool.map(grade, MISTAKES)))
    assert_messages(graded)


def assert_messages(graded: dict) -> None:
    """The messages of the autograded notebooks (module number -> notebook) with MISTAKES."""

    q = graded["15"]
    assert _errors(q, "test_15_1_params"), "the mistake in 15.1 should fail 15.1"
    for gid in ("test_15_2_quantize_tensor", "test_15_4_quantized_linear", "test_15_5_quantize"):
        visible, *checks = _errors(q, gid)
        task = f"Task 15.{gid[8]}"
        assert visible.startswith(f"{task} uses Task 15.1 (quantization_params), which fails its tests: fix that "
                                  "first."), visible
        assert all("Task 15.1" in c and "first" in c for c in checks), checks  # 15.4's check may pass
    assert _errors(q, "test_15_2_quantize_tensor")[1:] and _errors(q, "test_15_5_quantize")[1:], "their checks should fail"
    assert "This test then failed with: per-row symmetric of a (2, 3) weight: expected scales" in \
        _errors(q, "test_15_2_quantize_tensor")[0]  # the test's own words follow

    c = graded["16"]
    assert _errors(c, "test_16_1_masks")
    assert all("Task 16.1" in e and "first" in e for e in _errors(c, "test_16_2_prune")), _errors(c, "test_16_2_prune")
    assert _errors(c, "test_16_2_prune"), "prune on a wrong magnitude_mask should fail 16.2 (its hidden check at least)"

    k = graded["18"]
    visible, *checks = _errors(k, "test_18_2_update")
    for part in ("Task 18.2: kvcache_update raised ValueError: could not broadcast input array from shape (1,2,4,3) "
                 "into shape (1,2,6,3)", ", in kvcache_update: cache.keys[layer_idx, :, n:n + s_new] = k",
                 "the test ran: c.update(Tensor(k1), Tensor(v1), 1)", "k1 = ndarray of shape (1, 2, 4, 3), float32"):
        assert part in visible, f"{part!r} not in {visible!r}"
    assert checks and "in kvcache_update: cache.keys[layer_idx, :, n:n + s_new] = k" in checks[0], checks
    for gid in ("test_18_3_generate", "test_18_4_generate_batch", "test_18_5_int8_cache"):  # each uses 18.2
        later = _errors(k, gid)
        assert later and all(names_task(e, "18.2") and "first" in e for e in later), (gid, later)
    for number, nb in graded.items():  # what a student reads (pytest -s)
        print(f"\nModule {number}:")
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
                for e in _errors(nb, gid):
                    print(f"  {gid}: {e[:600]}")
