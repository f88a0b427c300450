"""What a student's nbgrader does with the exchange, in words a student can act on.

Set in nbgrader_config.py (one machine) and the hub's students' config (hub/nbgrader_exchange_config.py);
the student kit ships this file:

    c.ExchangeFactory.submit = "tito.student_exchange.Submit"
    c.ExchangeFactory.fetch_feedback = "tito.student_exchange.FetchFeedback"
    c.ExchangeFactory.list = "tito.student_exchange.List"

Submit: `nbgrader submit` (and the Assignment List's Submit button) does not list ignored files as EXTRA.

nbgrader copies a submission without what `CourseDirectory.ignore` names (.ipynb_checkpoints, ...), but
its check of which notebooks were handed in looks at every notebook in the folder, so a submission of a
notebook that JupyterLab has saved once says `.ipynb_checkpoints/NN-checkpoint.ipynb: EXTRA`. This
check leaves out what the copy leaves out. Set in nbgrader_config.py and the hub's students' config
the student kit ships it.

FetchFeedback and List: "Fetch Feedback" before the instructor released any feedback made nbgrader stop
with `[C ServerApp] Assignment not found at: .../feedback` and an ExchangeError, and the Assignment List
showed nothing. Now it fetches nothing and logs one warning line, and the Assignment List shows
"(no feedback released yet)" next to each submission that has no feedback, here or in the exchange.
"""
from __future__ import annotations

import fnmatch
import os

from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback
from nbgrader.exchange.default.list import ExchangeList
from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import find_all_notebooks


class Submit(ExchangeSubmit):
    def _notebooks(self, path: str) -> list[str]:
        return [nb for nb in find_all_notebooks(path)
                if not any(fnmatch.fnmatch(part, pattern) for part in nb.split(os.sep)
                           for pattern in self.coursedir.ignore)]

    def check_filename_diff(self):
        # nbgrader 0.9.6's check, on the notebooks that the copy keeps.
        released, submitted = self._notebooks(self.release_path), self._notebooks(self.src_path)
        release_diff = [f"{nb}: {'FOUND' if nb in submitted else 'MISSING'}" for nb in released]
        submitted_diff = [f"{nb}: {'OK' if nb in released else 'EXTRA'}" for nb in submitted]
        missing = any(nb not in submitted for nb in released)
        extra = any(nb not in released for nb in submitted)
        if missing or extra:
            diff_msg = "Expected:\n\t{}\nSubmitted:\n\t{}".format("\n\t".join(release_diff), "\n\t".join(submitted_diff))
            if missing and self.strict:
                self.fail(f"Assignment {self.coursedir.assignment_id} not submitted. "
                          f"There are missing notebooks for the submission:\n{diff_msg}")
            else:
                self.log.warning(f"Possible missing notebooks and/or extra notebooks submitted for assignment "
                                 f"{self.coursedir.assignment_id}:\n{diff_msg}")


NO_FEEDBACK = "(no feedback released yet)"


class FetchFeedback(ExchangeFetchFeedback):
    def init_src(self):
        feedback = os.path.join(self.root, self.coursedir.course_id, "feedback")
        if self.coursedir.course_id and not os.path.isdir(feedback):
            self.log.warning("No feedback released yet for %s in %s", self.coursedir.assignment_id or "any assignment",
                             self.coursedir.course_id)
            self.feedback_files = []
            return
        super().init_src()

    def copy_files(self):
        if not self.feedback_files:
            self.log.warning("No feedback released yet for %s", self.coursedir.assignment_id or "any assignment")
            return
        super().copy_files()


class List(ExchangeList):
    def parse_assignments(self):
        assignments = super().parse_assignments()
        if self.cached and not self.inbound:  # a student's own submissions (the Assignment List's "Submitted")
            for assignment in assignments:
                for info in assignment.get("submissions", []):
                    if not info.get("has_local_feedback") and not info.get("has_exchange_feedback"):
                        info["timestamp"] = f"{info['timestamp']} {NO_FEEDBACK}"
        return assignments
