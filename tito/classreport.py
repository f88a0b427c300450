"""What an instructor reads after grading a class: which task tripped it, and the feedback files.

    print("\\n".join(task_summary(grades)))     # per task: mean, how many lost points, commonest first error
    feedback(root, module)                       # nbgrader generate_feedback: feedback/<student>/<A>/<A>.html
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .grading import NotebookGrade, nbgrader
from .modules import Module


def task_summary(grades: dict[str, NotebookGrade]) -> list[str]:
    """Lines of a table, one row per task: mean score, students who lost points there, and the
    first error line most of them saw (with how many), e.g.
    'Task 01.4     2.9/4     2/7  NotImplementedError: ... (2 students)'."""
    tasks = sorted({t for g in grades.values() for t in g.by_task()})
    lines = [f"{'task':<10} {'mean':>9} {'failed':>7}  most common first error"]
    for task in tasks:
        scores, firsts, failed = [], Counter(), 0
        for g in grades.values():
            cells = [c for c in g.cells if c.task == task]
            if not cells:
                continue
            score, max_score = sum(c.score for c in cells), sum(c.max_score for c in cells)
            scores.append(score)
            if score < max_score:
                failed += 1
                first = next(c.error for c in cells if c.score < c.max_score)
                first = first.strip().splitlines()[0] if first.strip() else ""  # errors may span lines
                # counted by what the table shows: the first 100 characters (the rest names each input)
                firsts[first[:100] or "no error shown (a wrong answer that printed nothing)"] += 1
        common = ""
        if firsts:
            error, n = firsts.most_common(1)[0]
            common = f"{error} ({n} student{'s' if n > 1 else ''})"
        mean = f"{sum(scores) / len(scores):.1f}/{max_score:g}"
        lines.append(f"{task:<10} {mean:>9} {f'{failed}/{len(scores)}':>7}  {common}".rstrip())
    return lines


def feedback(root: Path, module: Module) -> list[Path]:
    """nbgrader generate_feedback for every autograded student; returns the HTML files written."""
    nbgrader(root, "generate_feedback", module.name, "--force")
    return sorted((root / "feedback").glob(f"*/{module.name}/{module.name}.html"))
