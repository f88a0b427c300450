"""Shared fixtures. Library tests import `tinytorch_lib` as installed; the
pipeline tests point PYTHONPATH at other exports to run these same tests on them."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # `tito` importable even without the editable install. Appended, not inserted first: the
    # pipeline runs these tests with PYTHONPATH at a student's export, which must come first.
    sys.path.append(str(ROOT))


# ------------------------------------------------ the order of a parallel run (`make test`: pytest -n N)
#
# `make test` runs pytest-xdist with --dist loadgroup --no-loadscope-reorder and the scheduler below: each
# worker is handed one unit of work at a time, in the order collected here. A unit is one test, or the tests
# of a file that share a module-scoped fixture (a Voila and a JupyterLab server with busy processes, the
# student kit, the milestone's runs, a scratch course): they run one after another on one worker, so the
# fixture is built once. Units start longest first, so no long test starts last and holds the run while the
# other workers are idle. Nothing is skipped or changed: only the order and the grouping.
# (xdist_group marks are not used: with pytest 9.2 xdist no longer reads them, pytest-xdist issue #1386.)

# Seconds a test took in a full `make test` (2 cores, nothing else running; `--durations`, which `make test`
# prints for the 30 slowest); unlisted ones count 1.
# Keyed by file::function (every parameter alike). Only the order depends on them: stale numbers cost time.
# Not listed on purpose: test_milestone06.py's runs (about 150 s) check timing claims (a time per token that
# grows with the tokens), which the heaviest grading tests beside them at the start can upset: they start
# after those.
EXPECTED_SECONDS = {
    "test_classgrade.py::test_jobs_2_grades_exactly_as_jobs_1_and_reports_bad_input": 142,
    "test_xss.py::test_nothing_a_student_wrote_runs_in_the_instructors_browser": 122,
    "test_pipeline.py::test_bad_submissions_get_a_clear_grade": 120,
    "test_exchange.py::test_release_fetch_submit_collect_grade_feedback_round_trip": 94,
    "test_outside_checks.py::test_attacks_from_inside_the_kernel_no_longer_change_a_grade": 93,
    "test_hub.py::test_class_on_jupyterhub": 91,
    "test_sandbox.py::test_a_hostile_class_changes_nothing_but_its_own_outputs": 86,
    "test_checksum.py::test_no_checksum_warning_for_untouched_or_honest_submissions": 62,
    "test_intake.py::test_collect_takes_only_what_each_student_handed_in_themselves": 59,
    "test_intake.py::test_links_and_special_files_are_refused_unread": 46,
    "test_limits.py::test_a_gigabyte_of_output_never_reaches_the_notebook": 38,
    "test_intake.py::test_every_submission_gets_a_clear_outcome": 38,
    "test_lab.py::test_instructor_lab": 31,
    "test_tito.py::test_grade_prints_a_student_by_task_table": 30,
    "test_limits.py::test_the_connection_folder_is_a_small_tmpfs_removed_after_a_kill": 29,
    "test_lab.py::test_student_lab": 26,
    "test_grading_timing.py::test_light_timing_under_grading_changes_no_grade": 26,
    "test_sandbox.py::test_without_bwrap_grading_refuses_unless_told_to_run_unsandboxed": 22,
    "test_limits.py::test_one_memory_limit_for_the_whole_sandbox": 22,
    "test_tito.py::test_module_test_runs_on_the_students_own_earlier_exports": 21,
    "test_kit.py::test_a_student_works_through_the_whole_kit": 21,
    "test_demos.py::test_demo_in_lab": 19,
    "test_pipeline.py::test_reference_scores_full_marks_and_release_scores_zero": 18,
    "test_cascades.py::test_deliberate_mistakes_are_reported_where_they_are": 17,
}
# file -> the tests of it that share a module-scoped fixture (by name prefix); "" is every test.
SHARED = {
    "test_demos.py": ("test_demo_in_",),  # one Voila, one JupyterLab, one set of busy processes
    "test_kit.py": ("",), "test_milestone06.py": ("test_part",), "test_limits.py": ("",),
    "test_10_tokenization.py": ("",), "test_18_kvcache.py": ("",),
}
# test_pipeline.py's course generates a module when a test first asks for it: the tests of one module
# (one parameter) run together, the modules spread over the workers.
PER_PARAMETER = {"test_pipeline.py": ("test_release_is_fresh", "test_reference_scores_full_marks_and_release_scores_zero")}


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its own id, or a group name (no "::", so it never equals an id)."""
    path, _, name = nodeid.partition("::")
    file, function = path.rsplit("/", 1)[-1], name.split("[")[0]
    if function.startswith(SHARED.get(file, ())):
        return file
    if function in PER_PARAMETER.get(file, ()) and "[" in name:
        return f"{file}:{name[len(function) + 1:-1]}"
    return nodeid


def pytest_collection_modifyitems(config, items):
    units: dict[str, list] = {}
    for item in items:
        units.setdefault(unit_of(item.nodeid), []).append(item)
    weight = lambda unit: sum(EXPECTED_SECONDS.get(f"{i.path.name}::{i.originalname}", 1) for i in unit)  # noqa: E731
    order = sorted(units.values(), key=weight, reverse=True)  # stable: equal weights keep pytest's order
    items[:] = [item for unit in order for item in unit]


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ByUnit(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return ByUnit(config, log)
