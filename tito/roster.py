"""Students' names for the gradebook, so Formgrader shows "Baker, Bob", not "None, None".

From the course's roster.csv (columns id, first_name, last_name, email: nbgrader's own
`nbgrader db student import` format) when the student is in it; else from the student's OS user
(its full name, the GECOS field: on a hub of OS users, `make hub` sets it; a hub's authenticator
that knows names can too), the last word as last name. Names already in the gradebook are kept
(an instructor may have corrected them).
"""
from __future__ import annotations

import csv
from pathlib import Path


def names(root: Path, student: str) -> dict[str, str]:
    """{first_name, last_name[, email]} for `student`, or {} when nothing is known."""
    roster = root / "roster.csv"
    if roster.exists():
        with open(roster, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("id") == student:
                    return {k: row[k] for k in ("first_name", "last_name", "email") if row.get(k)}
    try:
        import pwd
        full = pwd.getpwnam(student).pw_gecos.split(",")[0].strip()
    except (ImportError, KeyError):
        return {}
    if not full or full == student:
        return {}
    *first, last = full.split()
    return {"first_name": " ".join(first) or last, "last_name": last} if first else {"last_name": last}


def fill_in(gb, root: Path, student: str) -> None:
    """Set the gradebook's names of `student` from names(), where the gradebook has none."""
    row = gb.update_or_create_student(student)
    for key, value in names(root, student).items():
        if not getattr(row, key, None):
            setattr(row, key, value)
