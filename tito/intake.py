"""What a submission folder may hold before anything reads it (issue 19).

A submission is files of its own: regular files and folders. A symbolic link, a
fifo, a device or a socket lets a student point the grader at somebody else's
notebook or at a file only the grader may read (collect, autograde and the kernel
would read it with the grader's rights and copy its bytes into logs and outputs).
`refusal` finds them with lstat only, never following a link or opening a file,
and names them without saying anything about what they point to. In the exchange
it also checks who owns every file (a hard link to another user's file is owned
by them); in submitted/, where the instructor owns everything, a file shared by
two students (a hard link kept by tar) is reported by `tito grade` as a note.

Used by `tito grade` (classgrade.find_submissions), by plain `nbgrader autograde`
(`SafeAutograde`, put in place of nbgrader's Autograde by nbgrader_config.py) and
by `nbgrader collect` (tito/exchange.py, which also checks who owns the files).
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

MAX_LISTED = 3  # problems named in one message


def _kind(mode: int) -> str | None:
    """What a non-regular, non-folder entry is, for a message; None when it is fine."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def _user(uid: int) -> str:
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def problems(folder: Path, owner: int | None = None, label: str | None = None) -> list[str]:
    """Every entry of `folder` (itself included, recursively) that is not a regular file or folder
    of its own: '<name> is a symbolic link', ... With `owner` (a uid), also every entry owned by
    another uid. Uses lstat only: nothing is followed, opened or read."""
    label = folder.name if label is None else label  # "": the folder itself is "the folder", entries relative
    found: list[str] = []

    def check(path: Path, name: str) -> bool:
        """Record what is wrong with `path`; True when it is a folder to descend into."""
        try:
            st = os.lstat(path)
        except OSError as e:
            found.append(f"{name} cannot be examined ({e.strerror})")
            return False
        kind = _kind(st.st_mode)
        if kind:
            found.append(f"{name} is {kind}")
            return False
        if owner is not None and st.st_uid != owner:
            found.append(f"{name} is owned by {_user(st.st_uid)}, not by {_user(owner)}")
        return stat.S_ISDIR(st.st_mode)

    def walk(path: Path, name: str) -> None:
        if not check(path, name):
            return
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            found.append(f"{name} cannot be listed ({e.strerror})")
            return
        for entry in entries:
            walk(Path(entry.path), f"{name}/{entry.name}" if name != "the folder" else entry.name)

    walk(folder, label or "the folder")
    return found


def refusal(folder: Path, owner: int | None = None, label: str | None = None) -> str | None:
    """A one-line reason to refuse `folder` unread (see `problems`), else None."""
    found = problems(folder, owner, label)
    if not found:
        return None
    more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    return (f"refused unread: {'; '.join(found[:MAX_LISTED])}{more} (a submission holds files of its own: "
            "no links, fifos or devices; nothing they point to was read): ask the student to resubmit")


def submitted_refusal(submitted: Path, student: str, assignment: str) -> str | None:
    """`refusal` for submitted/<student>/<assignment>/, the student's folder checked too (a symlinked
    student folder would hand in another student's work)."""
    student_dir = submitted / student
    try:
        st = os.lstat(student_dir)
    except OSError:
        return None  # nothing there: nbgrader reports a missing submission
    kind = _kind(st.st_mode)
    if kind:
        return refusal(student_dir, label=f"submitted/{student}")
    return refusal(student_dir / assignment, label=f"submitted/{student}/{assignment}")


def read_without_outputs(path: Path):
    """The notebook at `path` with its code cells' outputs and execution counts removed. nbgrader
    clears them before grading anyway; removed first, an output that breaks the notebook schema
    cannot make a correct notebook unreadable."""
    import nbformat
    from nbformat.reader import parse_json

    raw = parse_json(path.read_text(encoding="utf-8"))
    for cell in raw.get("cells", []) if isinstance(raw, dict) and isinstance(raw.get("cells"), list) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nbformat.reads(json.dumps(raw), as_version=4)


def stripped_metadata(nb, release, filename: str, assignment: str) -> str | None:
    """Why `nb` cannot be graded when it holds the release's test cells but no nbgrader metadata
    (nbgrader would take it for another notebook or grade it 0), else None."""
    if any(c.metadata.get("nbgrader") for c in nb.cells):
        return None
    sources = {c.source.strip() for c in nb.cells if c.source.strip()}
    if not any(c.metadata.get("nbgrader", {}).get("grade") and c.source.strip() in sources for c in release.cells):
        return None
    return (f"{filename} holds {assignment}'s test cells but no cell has nbgrader metadata any more (it was "
            "stripped, e.g. by pasting the cells into a new notebook or by a tool that drops cell metadata), so "
            "nbgrader cannot tell the tasks and tests apart: ask the student to paste their solutions into a fresh "
            f"copy of the released {assignment}.ipynb and resubmit")


def changed_grade_ids(nb, release) -> str | None:
    """Why `nb`'s nbgrader cells do not match the `release` notebook's (a grade_id changed to another
    cell's, or to one the release does not have), else None. nbgrader itself stops on these with
    KeyError: 'grade_id'."""
    released = {c.metadata["nbgrader"]["grade_id"]: (i, c) for i, c in enumerate(release.cells)
                if c.metadata.get("nbgrader", {}).get("grade_id")}
    cells = [(i, c, c.metadata["nbgrader"]["grade_id"]) for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade_id")]
    missing = [g for g in released if g not in {gid for _, _, gid in cells}]
    by_source = {c.source.strip(): gid for gid, (_, c) in released.items() if c.source.strip()}

    def own(cell) -> str:
        """The release grade_id this cell had, when it can be told (same source, or the one missing)."""
        gid = by_source.get(cell.source.strip())
        if gid is None and len(missing) == 1:
            gid = missing[0]
        return f" (in the release it is {gid})" if gid else ""

    found = []
    for gid in dict.fromkeys(g for _, _, g in cells):
        holders = [(i, c) for i, c, g in cells if g == gid]
        if gid not in released:
            i, c = holders[0]
            found.append(f"cell {i + 1}'s grade_id was changed to {gid}, which is not in the release{own(c)}")
        elif len(holders) > 1:
            same = [i for i, c in holders if c.source.strip() == released[gid][1].source.strip()]
            genuine = same[0] if same else holders[0][0]
            found += [f"cell {i + 1}'s grade_id was changed to {gid}, which belongs to cell {genuine + 1}{own(c)}"
                      for i, c in holders if i != genuine]
    if not found:
        return None
    return "; ".join(found[:MAX_LISTED]) + ": restore the cell from the release (nbgrader cannot grade it)"
