"""`nbgrader collect` that takes only what a student handed in themselves (issue 19).

On a hub every student writes into one exchange, `inbound/` writable by all.
nbgrader's own collect takes, for each student id, the newest folder named
`<student>+<assignment>+<timestamp>+<random>`, whoever wrote it (an owner that
differs from the name gets a "cheating attempt?" warning), and copies it
following symbolic links, with the instructor's rights. So one student could
hand in an empty notebook as another's latest submission, or link a file of
theirs to a file only the instructor may read and have its content collected.

`SafeExchangeCollect` (nbgrader_config.py: `c.ExchangeFactory.collect`) refuses,
before choosing each student's latest submission, every folder

  - holding anything that is not a regular file or folder (a symbolic link, a
    fifo, a device or socket: tito/intake.py, lstat only, nothing followed), or
  - with a file or folder not owned by the OS user of the student it is filed
    under (student id == OS user name, as nbgrader's submit names it; map
    others with `owners` or `owner_name`), or
  - whose name nbgrader cannot parse (nbgrader would stop the whole collect),

logs one line for each, naming the folder, the entries and their owners and
nothing of their content, and collects each student's latest acceptable
folder. The copy itself never follows a link (checked again as it copies).
`CollectApp.check_owner = False` (nbgrader's switch) turns the owner check off,
e.g. on a hub whose students all share one OS user (DockerSpawner's jovyan):
there a student's id cannot be checked against the files at all.
"""
from __future__ import annotations

import glob
import os
import shutil
import stat
import sys
from collections import defaultdict
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import ignore_patterns
from traitlets import Dict, Unicode

from .intake import problems


class Refused(OSError):
    pass


class SafeExchangeCollect(ExchangeCollect):
    """nbgrader's collect, refusing forged, linked or unparseable submissions (module docstring)."""

    owner_name = Unicode("{student}", help="The OS user that must own a student's submission in the "
                         "exchange; {student} is the student id.").tag(config=True)
    owners = Dict(help="student id -> OS user name, for students whose OS user is not owner_name's."
                  ).tag(config=True)

    def _uid(self, student: str) -> int | None:
        """The uid that must own `student`'s submission; None when the owner check is off."""
        if not self.check_owner or sys.platform == "win32":
            return None
        import pwd
        name = self.owners.get(student) or self.owner_name.format(student=student)
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            raise Refused(f"there is no OS user {name!r} for student {student!r}, so nobody may hand in under "
                          "that name (map student ids to OS users with SafeExchangeCollect.owners)") from None

    def refusal(self, path: str, student: str) -> str | None:
        """Why the inbound folder `path`, filed under `student`, must not be collected; else None."""
        try:
            uid = self._uid(student)
        except Refused as e:
            return str(e)
        found = problems(Path(path), owner=uid, label="")
        if not found:
            return None
        hint = []
        if any(" owned by " in f for f in found):
            hint.append(f"only {student}'s own OS user hands in under {student}'s name")
        if any(" is a " in f or "not a regular" in f for f in found):
            hint.append("a submission holds files of its own: no links, fifos or devices; nothing they point "
                        "to was read")
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        return f"{'; '.join(found[:3])}{more} ({'; '.join(hint) or 'not collected'})"

    def init_src(self):
        # nbgrader's init_src, with refused folders dropped before each student's latest is chosen.
        if self.coursedir.course_id == '':
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, 'inbound')
        if not os.path.isdir(self.inbound_path):
            self.fail("Course not found: {}".format(self.inbound_path))
        if not os.access(self.inbound_path, os.R_OK | os.X_OK):
            self.fail("You don't have read permissions for the directory: {}".format(self.inbound_path))
        student_id = self.coursedir.student_id if self.coursedir.student_id else '*'
        pattern = os.path.join(self.inbound_path, '{}+{}+*'.format(student_id, self.coursedir.assignment_id))
        self.refused = {}
        self._uids = {}
        records = []
        for path in sorted(glob.glob(pattern)):
            name = os.path.basename(path)
            try:
                record = self._path_to_record(path)
            except Exception:  # nbgrader's own would stop the whole collect here
                reason = "its name is not <student>+<assignment>+<timestamp>+<random>"
            else:
                reason = self.refusal(path, record['username'])
            if reason:
                self.refused[name] = reason
                self.log.error("Not collecting %s: %s", name, reason)
                continue
            self._uids[path] = self._uid(record['username'])
            records.append(record)
        usergroups = defaultdict(list)
        for record in records:
            usergroups[record['username']].append(record)

        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        self.src_records = []
        for group in usergroups.values():
            group = self._sort_by_timestamp(group)
            if self.duedate is not None and self.before_duedate:
                group = [r for r in group if r['timestamp'] <= self.duedate] or group
            self.src_records.append(group[0])

    def do_copy(self, src, dest, log=None):
        """nbgrader's copy (size limits, ignore and include patterns), never following a link: every
        file is opened without following and checked again (type, owner) as it is copied."""
        dir_size = sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(src) for f in files)
        if dir_size > 1000 * self.coursedir.max_dir_size:
            raise RuntimeError(f"Directory size is too big. Size is {dir_size}, maximum size is "
                               f"{1000 * self.coursedir.max_dir_size}")
        uid = self._uids.get(src)

        def copy_file(s, d):
            fd = os.open(s, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid):
                    raise Refused(f"{os.path.relpath(s, src)} changed while it was being collected")
                with os.fdopen(os.dup(fd), "rb") as fin, open(d, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            finally:
                os.close(fd)
            return d

        try:
            shutil.copytree(src, dest, symlinks=True, copy_function=copy_file,
                            ignore=ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                                   max_file_size=self.coursedir.max_file_size, log=self.log))
            late = problems(Path(dest))  # a link swapped in after the check: copied as a link, never followed
            if late:
                raise Refused(f"{'; '.join(late[:3])} (changed while it was being collected)")
        except (Refused, shutil.Error) as e:
            shutil.rmtree(dest, ignore_errors=True)
            self.log.error("Not collecting %s: %s", os.path.basename(src), e)
