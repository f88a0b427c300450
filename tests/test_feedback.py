"""What tito module test says beyond scores (fast: notebooks built here, with a
traceback as ipykernel 7 / IPython 9 writes it, ANSI colours included)."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tito.feedback import blame_earlier_exports, raised_before_tests, restored_cells
from tito.modules import find_module

SYNTAX_TRACEBACK = ("  \x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[7]\x1b[39m\x1b[32m, line 3\x1b[39m\n"
                    "\x1b[31m    \x1b[39m\x1b[31mif k_a != k_b\x1b[39m\n             ^\n"
                    "\x1b[31mSyntaxError\x1b[39m\x1b[31m:\x1b[39m expected ':'\n")


def _cell(source, grade_id, test=False, error=None):
    cell = new_code_cell(source, id=grade_id)
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "grade": test, "solution": not test}
    if error:
        cell.outputs = [new_output("error", ename=error[0], evalue=error[1], traceback=error[2])]
    return cell


def _graded():
    return new_notebook(cells=[
        _cell("import numpy as np", "setup"),
        _cell("def matmul(a, b):\n    k_a, k_b = 1, 2\n    if k_a != k_b\n        pass", "matmul",
              error=("SyntaxError", "expected ':' (2537199664.py, line 3)", [SYNTAX_TRACEBACK])),
        _cell("assert matmul", "test_01_2_broadcast", test=True),
        _cell("assert matmul(1, 2)", "test_01_4_matmul", test=True,
              error=("NameError", "name 'matmul' is not defined", ["NameError: name 'matmul' is not defined"])),
        _cell("matmul(3, 4)", "timing", error=("NameError", "name 'matmul' is not defined", [])),
    ])


def test_a_cell_that_raised_before_a_failing_test_is_named_with_its_line():
    graded = _graded()
    submitted = nbformat.from_dict(graded)
    del submitted.cells[2]  # the student deleted a test cell; nbgrader put it back in `graded`
    # The number is the cell's place in the student's notebook; the timing cell after the tests is not a cause.
    assert raised_before_tests(graded, submitted) == [
        "Fix this first: cell 2 (id matmul) raised SyntaxError at line 3: if k_a != k_b (expected ':')"]
    assert restored_cells(graded, submitted) == ["test_01_2_broadcast"]
    assert restored_cells(graded, graded) == []


def test_no_failing_test_means_nothing_to_point_at():
    graded = _graded()
    graded.cells[3].outputs = []
    assert raised_before_tests(graded, graded) == []


def test_failures_from_an_unfinished_earlier_export_are_blamed_on_it():
    tensor = find_module("01")
    stub = ("NotImplementedError: Module 01 (tensor), Task 01.1, Tensor.__init__: not implemented yet. "
            "Fill it in in your notebook, then run `tito module export 01`.")
    lines = blame_earlier_exports([stub, stub.replace("01.1", "01.4")], [tensor])
    assert lines[0].startswith("These failures come from your own export of Module 01 (tensor), not from this "
                               "notebook: tinytorch_lib/tensor.py is unfinished (Task 01.1, Task 01.4 raise")
    assert "`tito module reset 01`" in lines[1] and "`tito module export 01`" in lines[1]
    # Another failure, with Module 01 being the student's export: a hint, not a verdict.
    (hint,) = blame_earlier_exports(["AssertionError: wrong softmax"], [tensor])
    assert hint.startswith("Your own exports of earlier modules are in tinytorch_lib: tinytorch_lib/tensor.py (Module 01).")
    # Module 01 is the course reference (no exports), or nothing failed: nothing to say.
    assert blame_earlier_exports([stub], []) == []
    assert blame_earlier_exports([], [tensor]) == []


def test_a_given_cell_that_raised_comes_after_the_students_own_and_names_its_section():
    graded = _graded()
    demo = new_code_cell("report = gradcheck(f, [x])", id="cell-2bf562dd13")  # no nbgrader metadata: given
    demo.outputs = [new_output("error", ename="AssertionError", evalue="rule wrong", traceback=[])]
    graded.cells[2:2] = [new_markdown_cell("## 4. Checking the rule\n\nSome text."), demo]
    lines = raised_before_tests(graded, graded)
    assert lines[0].startswith("Fix this first: cell 2 (id matmul) raised SyntaxError")
    assert lines[1] == ('Also raised: cell 4 (id cell-2bf562dd13; under "## 4. Checking the rule") raised AssertionError '
                        "(rule wrong) (a given cell: it runs your code from the tasks above it; it passes once they do)")


def test_a_failing_tests_message_keeps_all_its_lines(tmp_path):
    from tito.grading import MESSAGE_CHARS, _errors

    long = "backward of the worked example: expected\n[[0. 1.]\n [2. 3.]]\ngot\n[[0. 0.]\n [0. 0.]]"
    cells = [_cell("assert False", "test_a", test=True, error=("AssertionError", long, [])),
             _cell("assert False", "test_b", test=True, error=("AssertionError", "x" * 3000, []))]
    path = tmp_path / "graded.ipynb"
    nbformat.write(new_notebook(cells=cells), path)
    errors = _errors(path)
    assert errors["test_a"] == f"AssertionError: {long}"
    assert errors["test_b"].startswith("AssertionError: xxx") and errors["test_b"].endswith(
        f"... (cut at {MESSAGE_CHARS} characters; the notebook shows all of it)")
