"""`nbgrader submit` (and the Assignment List's Submit button) that does not list ignored files as EXTRA.

nbgrader copies a submission without what `CourseDirectory.ignore` names (.ipynb_checkpoints, ...), but
its check of which notebooks were handed in looks at every notebook in the folder, so a submission of a
notebook that JupyterLab has saved once says `.ipynb_checkpoints/NN-checkpoint.ipynb: EXTRA`. This
check leaves out what the copy leaves out. Set in nbgrader_config.py and the hub's students' config
(`c.ExchangeFactory.submit = "tito.submit.Submit"`); the student kit ships it.
"""
from __future__ import annotations

import fnmatch
import os

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
