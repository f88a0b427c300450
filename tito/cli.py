"""tito: the course command line.

    tito module status | start NN | test NN | export NN | reset NN   (students)
    tito build | release | export --reference | selfcheck | grade A [--jobs N] | feedback A   (instructors)
    tito kit DEST [--modules 01-06] [--solutions-through NN]   (the student repository, tito/kit.py)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import classgrade, classreport, feedback, grading, sandbox
from .build import build
from .export import export_notebook, export_reference, is_reference, remaining_stubs
from .modules import RELEASE, ROOT, WORKSPACE, Module, TitoError, all_modules, find_module
from .student import print_cell_progress

STATUS_FILE = WORKSPACE / ".tito-status.json"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _selected(specs: list[str]) -> list[Module]:
    return [find_module(s) for s in specs] if specs else all_modules()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_status() -> dict:
    return json.loads(STATUS_FILE.read_text()) if STATUS_FILE.exists() else {}


# ---- instructor commands ----

def cmd_build(args) -> int:
    for module in _selected(args.modules):
        changed = build(module)
        print(f"{_rel(module.source_ipynb)}: {'written' if changed else 'unchanged'}")
    return 0


def cmd_release(args) -> int:
    """Build each module and run nbgrader generate_assignment into release/."""
    for module in _selected(args.modules):
        build(module)
        grading.generate(ROOT, module)
        print(f"{_rel(module.release_ipynb)}: released")
    return 0


def cmd_export(args) -> int:
    if not args.reference:
        raise TitoError("`tito export` writes the reference library: say --reference "
                        "(students: `tito module export NN`)")
    for module in _selected(args.modules):
        path = export_reference(module)
        print(f"{_rel(path)}: exported from {_rel(module.source_py)}")
    return 0


def cmd_selfcheck(args) -> int:
    """Autograde each module's reference solution and its untouched release."""
    modules = _selected(args.modules)
    sandbox.require()
    print("Autograding each module's reference solution and untouched student release "
          "(nbgrader, reference tinytorch_lib)...", flush=True)
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="tito-selfcheck-") as tmp:
        tmp = Path(tmp)
        course = grading.new_course(tmp / "course", modules)
        lib = grading.reference_library(tmp / "lib")
        for module in modules:
            if not module.release_ipynb.exists():
                raise TitoError(f"{_rel(module.release_ipynb)} is missing: run `tito release` first")
            start = time.perf_counter()
            grading.generate(course, module)
            grades = grading.autograde(course, module, {"reference": module.source_ipynb,
                                                        "release": module.release_ipynb}, lib)
            ref, rel = grades["reference"], grades["release"]
            nonzero = [c for c in rel.cells if c.score > 0]
            failed = [c for c in ref.cells if c.score < c.max_score]
            good = bool(ref.cells) and not failed and not nonzero
            ok &= good
            rows.append((module.name, ref, rel, nonzero, time.perf_counter() - start, good))
            print(f"  {module.name}: graded in {rows[-1][4]:.1f} s", flush=True)
            for c in failed:
                print(f"    reference lost points in {c.grade_id}: {c.error or 'no error recorded'}")
            for c in nonzero:
                print(f"    untouched release scored {c.score:g} in {c.grade_id}: a test that passes on a stub")
    print()
    print(f"{'module':<18} {'reference':>16} {'untouched release':>18} {'graded cells':>13}  verdict")
    for name, ref, rel, nonzero, _, good in rows:
        print(f"{name:<18} {f'{ref.score:g}/{ref.max_score:g}':>9} ({100 * ref.score / (ref.max_score or 1):3.0f}%) "
              f"{f'{rel.score:g}/{rel.max_score:g}':>18} {f'{len(rel.cells) - len(nonzero)}/{len(rel.cells)} at 0':>13}  "
              f"{'ok' if good else 'FAIL'}")
    if not ok:
        print("\nselfcheck FAILED: the reference must score full marks and the release 0 on every graded cell")
    return 0 if ok else 1


def cmd_grade(args) -> int:
    """Autograde every submission in submitted/*/ASSIGNMENT, `--jobs` at a time, and print the scores.

    Each student is graded by its own nbgrader process in its own scratch course
    (tito/classgrade.py): one broken submission is reported in the summary and does
    not stop or change the others.
    """
    module = find_module(args.assignment)
    if not args.no_sandbox:
        sandbox.require()
    if args.jobs is not None and args.jobs < 1:
        raise TitoError(f"--jobs must be at least 1, got {args.jobs}")
    build(module)
    intake = classgrade.find_submissions(ROOT, module)
    students = sorted([*intake.ready, *intake.rejected])
    if not students:
        raise TitoError(f"no submissions found: expected submitted/<student>/{module.name}/{module.name}.ipynb")
    with tempfile.TemporaryDirectory(prefix="tito-grade-") as tmp:
        # Records the assignment in gradebook.db without touching release/.
        grading.generate(ROOT, module, release_dir=Path(tmp) / "release")
        lib = grading.reference_library(Path(tmp) / "lib", module)
        warned: dict[str, list[str]] = {}
        failed = classgrade.grade_class(ROOT, module, intake.ready, lib, jobs=args.jobs, progress=True,
                                        sandboxed=not args.no_sandbox, warnings=warned)
    failed.update(intake.rejected)
    grades = grading.read_grades(ROOT, module, [s for s in students if s not in failed])
    tasks = sorted({t for g in grades.values() for t in g.by_task()})
    print(f"{'student':<20}" + "".join(f"{t:>11}" for t in tasks) + f"{'total':>11}")
    for student in students:
        if student in grades:
            g = grades[student]
            by_task = g.by_task()
            cells = "".join(f"{f'{by_task[t][0]:g}/{by_task[t][1]:g}':>11}" for t in tasks)
            print(f"{student:<20}{cells}{f'{g.score:g}/{g.max_score:g}':>11}")
    restored = {s: g.restored for s, g in grades.items() if g.restored}
    if restored:
        print("\nTest cells missing from the submission, restored from the source before grading:")
        for student, ids in restored.items():
            print(f"  {student}: {', '.join(ids)}")
    warned = {s: lines for s, lines in warned.items() if s in grades}
    if warned:
        by_text: dict[str, list[str]] = {}
        for student, lines in sorted(warned.items()):
            for line in dict.fromkeys(lines):
                by_text.setdefault(line, []).append(student)
        print(f"\nnbgrader's warnings ({sum(map(len, warned.values()))} lines; one student's whole log: "
              f"nbgrader autograde {module.name} --student <id> --force):")
        for line, who in by_text.items():
            print(f"  {line}: " + (f"all {len(who)} graded" if len(who) == len(grades) > 1 else ", ".join(who)))
    notes = {s: n for s, n in intake.notes.items() if s in grades}
    if notes:
        print("\nGraded, with a note:")
        for student, note in notes.items():
            print(f"  {student}: {note}")
    if grades:
        print(f"\nClass summary ({len(grades)} graded):")
        print("\n".join(classreport.task_summary(grades)))
    print(f"\nGraded {len(grades)} of {len(students)} submissions; notebooks with outputs in "
          f"autograded/<student>/{module.name}/ (feedback HTML: tito feedback {module.name})")
    if failed:
        print(f"\nNot graded ({len(failed)}):")
        for student in sorted(failed):
            print(f"{student:<20} not graded: {failed[student]}")
    return 1 if failed else 0


def cmd_feedback(args) -> int:
    """nbgrader generate_feedback: one HTML file per graded student, failed hidden cases included."""
    module = find_module(args.assignment)
    if not (ROOT / "gradebook.db").exists():
        raise TitoError(f"no gradebook.db: grade first with `tito grade {module.number}`")
    files = classreport.feedback(ROOT, module)
    if not files:
        raise TitoError(f"nbgrader wrote no feedback: nothing in autograded/*/{module.name}/; "
                        f"grade first with `tito grade {module.number}`")
    for path in files:
        print(_rel(path))
    print(f"{len(files)} feedback files. Each failed outside check shows there with the hidden case's input "
          f"and expected value: hidden tests are run by the instructor and feedback is released after the "
          f"deadline, never before it (`nbgrader release_feedback {module.name}` on a JupyterHub exchange).")
    return 0


def cmd_kit(args) -> int:
    """Write (or update) the student kit: a git repository of its own, with no solution in it."""
    from . import kit

    modules = kit.parse_modules(args.modules) if args.modules else None  # None: all, or what the kit has
    info = kit.build_kit(Path(args.dest), modules, args.solutions_through)
    mods = info["modules"]
    print(f"{args.dest}: student kit, Modules {', '.join(mods)}"
          + (f"; solutions released through Module {info['solutions_through']}" if info["solutions_through"] else "")
          + ("" if info["milestone"] else "; no Milestone 06 (it needs every module)"))
    print(f"  commit {info['commit']}" if info["commit"] else "  unchanged: nothing to commit")
    return 0


# ---- student commands ----

def _progress(module: Module, last: dict | None) -> tuple[str, list[str]]:
    """(short progress text for the status table, notes to print under it)."""
    nb = module.workspace_ipynb
    if not nb.exists():
        return "not started", []
    if not last:
        return "not tested yet", []
    score = f"({last['score']:g}/{last['max_score']:g})"
    if last["digest"] != _digest(nb):
        return f"retest: edited {score}", []
    now, then = _library_digests(module), last.get("library", {})
    changed = [name for name in sorted(then) if now.get(name) != then[name]]
    if changed:
        files = ", ".join(f"tinytorch_lib/{name}" for name in changed)
        return f"retest: lib changed {score}", [f"{module.name}: {files} changed since its last test: "
                                                  f"run `tito module test {module.number}`"]
    return f"{'passing' if last['score'] == last['max_score'] else 'in progress'} {score}", []


def cmd_status(args) -> int:
    status = _load_status()
    rows, notes = [], []
    for module in all_modules():
        progress, more = _progress(module, status.get(module.name))
        notes += more
        lib = module.library_file
        if not lib.exists():
            owner = "missing: run `tito export --reference`"
        elif is_reference(lib):
            owner = "course reference"
        else:
            owner = "your export"
        rows.append((module.name, progress, f"{lib.name}: {owner}"))
    rows.insert(0, ("module", "progress", "tinytorch_lib/"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, progress, lib in rows:
        print(f"{name:<{widths[0]}}  {progress:<{widths[1]}}  {lib}")
    for note in notes:
        print(note)
    return 0


def cmd_start(args) -> int:
    module = find_module(args.module)
    src, dest = module.release_ipynb, module.workspace_ipynb
    if not src.exists():
        raise TitoError(f"{_rel(src)} is missing: the instructor runs `tito release` to make it")
    if dest.exists():
        if not args.force:
            raise TitoError(f"{_rel(dest)} already exists (your work): keep going in it, "
                            f"or `tito module start {module.number} --force` to start over (it is backed up)")
        backup = dest.with_name(f"{dest.stem}.backup-{time.strftime('%Y%m%d-%H%M%S')}.ipynb")
        shutil.copy(dest, backup)
        print(f"your previous notebook is saved as {_rel(backup)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    print(f"{_rel(dest)}: ready. Open it with `jupyter lab {_rel(dest)}` (or `make lab`).")
    print(f"Test it with `tito module test {module.number}`, then `tito module export {module.number}`.")
    return 0


def _workspace_notebook(module: Module) -> Path:
    nb = module.workspace_ipynb
    if not nb.exists():
        raise TitoError(f"{_rel(nb)} does not exist: run `tito module start {module.number}` first")
    return nb


def _library_digests(module: Module) -> dict[str, str]:
    """Digests of the earlier modules' tinytorch_lib files, which `module`'s notebook imports."""
    return {m.library_file.name: _digest(m.library_file) for m in all_modules()
            if m.number < module.number and m.library_file.exists()}


def cmd_test(args) -> int:
    module = find_module(args.module)
    nb = _workspace_notebook(module)
    print(f"Autograding {_rel(nb)} as saved, with nbgrader and the hidden tests "
          f"(earlier modules from your tinytorch_lib)...", flush=True)
    started = time.monotonic()
    grade = grading.grade_one(module, nb, on_cell=print_cell_progress)
    print(f"graded in {time.monotonic() - started:.1f} s; the outside checks, run after the notebook, "
          f"can still take points from a cell that passed in it", flush=True)
    print(f"\n{'task':<12} score")
    for task, (score, max_score) in grade.by_task().items():
        print(f"{task:<12} {score:g}/{max_score:g}")
    print(f"{'total':<12} {grade.score:g}/{grade.max_score:g}")
    failed = [c for c in grade.cells if c.score < c.max_score]
    if failed:
        print()
    for raised in grade.raised:
        print(raised)
    for line in feedback.blame_earlier_exports([c.error for c in failed], feedback.earlier_exports(module)):
        print(line)
    for c in failed:
        message = (c.error or "no points").replace("\n", "\n      ")
        print(f"  {c.task} ({c.grade_id}): {message}")
    if grade.restored:
        tasks = {c.grade_id: c.task for c in grade.cells}
        names = ", ".join(f"{gid} ({tasks[gid]})" if gid in tasks else gid for gid in grade.restored)
        cells = "test cells" if len(grade.restored) > 1 else "test cell"
        print(f"\nYour notebook has no {cells} {names}: the grader put the course's copy back to grade it. "
              f"Get it back into your notebook by copying it from {_rel(module.release_ipynb)}, "
              f"or `tito module start {module.number} --force` (a fresh notebook; yours is backed up).")
    status = _load_status()
    status[module.name] = {"digest": _digest(nb), "score": grade.score, "max_score": grade.max_score,
                           "library": _library_digests(module)}
    STATUS_FILE.write_text(json.dumps(status, indent=1))
    return 0 if grade.score == grade.max_score else 1


def cmd_module_export(args) -> int:
    module = find_module(args.module)
    path = export_notebook(module, _workspace_notebook(module))
    stubs = remaining_stubs(path)
    print(f"{_rel(path)}: exported from {_rel(module.workspace_ipynb)}")
    if stubs:
        print(f"  {len(stubs)} still to implement (they raise NotImplementedError): " + "; ".join(stubs))
    return 0


def cmd_reset(args) -> int:
    module = find_module(args.module)
    path = export_reference(module)
    print(f"{_rel(path)}: restored to the course reference (your notebook is untouched)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tito", description="TinyTorch course tool")
    sub = p.add_subparsers(dest="command", required=True)

    mod = sub.add_parser("module", help="student commands for one module").add_subparsers(dest="action", required=True)
    mod.add_parser("status", help="progress of every module and who wrote each library file").set_defaults(fn=cmd_status)
    s = mod.add_parser("start", help="copy the release notebook into workspace/")
    s.add_argument("module")
    s.add_argument("--force", action="store_true", help="start over (the old notebook is backed up)")
    s.set_defaults(fn=cmd_start)
    for name, fn, text in [("test", cmd_test, "autograde your notebook locally"),
                           ("export", cmd_module_export, "export your notebook into tinytorch_lib"),
                           ("reset", cmd_reset, "put the course reference back into tinytorch_lib")]:
        c = mod.add_parser(name, help=text)
        c.add_argument("module")
        c.set_defaults(fn=fn)

    for name, fn, text in [("build", cmd_build, "build source/NN/NN.ipynb from the .py"),
                           ("release", cmd_release, "build and nbgrader generate_assignment into release/"),
                           ("selfcheck", cmd_selfcheck, "autograde reference and untouched release")]:
        c = sub.add_parser(name, help=text)
        c.add_argument("modules", nargs="*")
        c.set_defaults(fn=fn)
    e = sub.add_parser("export", help="export source/ into tinytorch_lib (the reference)")
    e.add_argument("--reference", action="store_true")
    e.add_argument("modules", nargs="*")
    e.set_defaults(fn=cmd_export)
    g = sub.add_parser("grade", help="autograde submitted/*/ASSIGNMENT")
    g.add_argument("assignment")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run submissions without the bubblewrap sandbox, with your rights (risky)")
    g.add_argument("--jobs", "-j", type=int, default=None,
                   help=f"students graded at once (default: the number of cores, {classgrade.default_jobs()})")
    g.set_defaults(fn=cmd_grade)
    k = sub.add_parser("kit", help="write the student kit (a git repository: release notebooks, stub library, "
                                   "data, student tito), or add modules/solutions to an existing one")
    k.add_argument("dest")
    k.add_argument("--modules", help="hand out part of the course, from 01 without a gap: 01-06 (default: "
                                     "every module; on an existing kit: the modules it has, plus these: 07-12)")
    k.add_argument("--solutions-through", metavar="NN",
                   help="release the reference solutions of the kit's modules up to NN (after their deadline)")
    k.set_defaults(fn=cmd_kit)
    f = sub.add_parser("feedback", help="nbgrader generate_feedback: HTML per graded student")
    f.add_argument("assignment")
    f.set_defaults(fn=cmd_feedback)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except TitoError as e:
        print(f"tito: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
