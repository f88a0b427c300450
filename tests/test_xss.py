"""Nothing a student wrote runs in the instructor's browser (issue 19, item 1: stored XSS in formgrader).

One class is graded with `tito grade` and `tito feedback`: honest students (full marks with a
plot and a note, one task left undone) and four attackers carrying the payloads of tests/xss_submissions.py
(HTML and script in markdown, javascript: links, script in outputs, SVG, widget views, cell
attachments, raw cells, metadata). Then the instructor opens every submission in formgrader
(JupyterLab's instructor setup, `make lab-instructor`) and every feedback file in Chromium,
clicking every link that says "click me". Each payload, had it run, would have logged
`XSS-RAN <name>`, written pwned_<name>.txt into the course with the instructor's rights, given
itself full marks through formgrader's API and appended to nbgrader_config.py. None may happen:
no marker, no console line, no request but formgrader's own GETs, grades and nbgrader_config.py
unchanged. The honest submissions still show their text, plot and failing test, and formgrader's
"No credit" button still saves a score.

Then the second wall alone: the attackers' autograded notebooks are replaced by never-sanitized
ones (with the outputs their code would have shown), feedback is regenerated from them, and
formgrader serves a submitted evil.html: the Content-Security-Policies alone stop every payload.
On the code before this test (no sanitizer, no policy), 8 payloads ran as the instructor: markers
written, two attackers at 24/24 plus extra credit, nbgrader_config.py rewritten.
"""
import hashlib
import re
import time

import nbformat
import pytest

from helpers import fill_in, run_tito
from test_lab import lab_server, small_course
from xss_submissions import GROUPS, evil_file, payloads, plant
from browser import browser_page, server_errors
from tito import grading
from tito.build import build
from tito.modules import find_module

pytestmark = [pytest.mark.browser, pytest.mark.pipeline]
MODULE = find_module("01")
NB = f"{MODULE.name}.ipynb"
HONEST_NOTE = "My own notes: the **tensor** keeps a numpy array."
PLOT = "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([0, 1, 2], [0, 1, 4])\nplt.title('my plot')\nplt.show()"


def submit_class(root):
    """honest_full (solved, a note and a plot), honest_partial (Task 01.4 undone), xss_<name> per payload."""
    folder = lambda student: root / "submitted" / student / MODULE.name / NB  # noqa: E731
    full = fill_in(MODULE, folder("honest_full"))
    nb = nbformat.read(full, as_version=4)
    nb.cells += [nbformat.v4.new_markdown_cell(HONEST_NOTE), nbformat.v4.new_code_cell(PLOT)]
    nbformat.write(nb, full)
    partial = fill_in(MODULE, folder("honest_partial"))
    nb, release = (nbformat.read(p, as_version=4) for p in (partial, MODULE.release_ipynb))
    stub = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in release.cells}
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "matmul":
            cell.source = stub["matmul"]
    nbformat.write(nb, partial)
    for group, names in GROUPS.items():
        path = folder(f"xss_{group}")
        path.parent.mkdir(parents=True)
        path.write_bytes(MODULE.release_ipynb.read_bytes())
        plant(path, names)


def submission_ids(root, students) -> dict[str, str]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return {s: gb.find_submission_notebook(MODULE.name, MODULE.name, s).id for s in students}


def visit(page, url: str, what: str, shot, click: bool = True) -> None:
    """Open `url`, give any script time to run, click every 'click me' link (coming back after)."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    for i in range(page.locator("a", has_text="click me").count() if click else 0):
        link = page.locator("a", has_text="click me").nth(i)
        try:
            link.click(timeout=3000)
        except Exception:  # hidden or covered: still counts as tried
            pass
        page.wait_for_timeout(700)
        if page.url.split("#")[0] != url.split("#")[0]:
            page.goto(url)
            page.wait_for_load_state("networkidle")
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")  # the added cells are last
    shot(what)


def unsanitized(root, student) -> None:
    """Replace `student`'s autograded notebook by the submitted one, with the outputs its payload
    cells would have had before sanitizing (what an autograded notebook from before held)."""
    from xss_submissions import script, svg

    nb = nbformat.read(root / "submitted" / student / MODULE.name / NB, as_version=4)
    fake = {
        "HTML(": {"text/html": f'<img src=x onerror="{script("out_html")}">', "text/plain": "<HTML>"},
        "Javascript(": {"application/javascript": script("out_javascript"), "text/plain": "<JS>"},
        "image/svg+xml": {"image/svg+xml": svg("out_svg"), "text/plain": "a red square"},
        "widget-view": {"application/vnd.jupyter.widget-view+json": {"model_id": "evil", "version_major": 2,
                                                                    "version_minor": 0}, "text/plain": "w"},
    }
    for cell in nb.cells:
        for marker, data in fake.items():
            if cell.cell_type == "code" and marker in cell.source:
                cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    nbformat.write(nb, root / "autograded" / student / MODULE.name / NB)


def test_nothing_a_student_wrote_runs_in_the_instructors_browser(tmp_path):
    started = time.monotonic()
    build(MODULE)  # source/01_tensor/01_tensor.ipynb, for fill_in
    root = small_course(tmp_path / "course")
    home = tmp_path / "home"
    submit_class(root)
    students = sorted(p.name for p in (root / "submitted").iterdir())
    proc = run_tito(root, "grade", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # What plain `nbgrader autograde` (formgrader's Autograde button) copies along: every submitted
    # file; generate_feedback copies it on into feedback/.
    (root / "autograded" / "xss_markdown" / MODULE.name / "evil.html").write_text(evil_file())
    proc = run_tito(root, "feedback", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    graded = time.monotonic()

    grades = lambda: {s: [(c.grade_id, c.score) for c in g.cells]  # noqa: E731
                      for s, g in grading.read_grades(root, MODULE, students).items()}
    before = grades()
    assert sum(s for _, s in before["honest_full"]) == 24
    assert 0 < sum(s for _, s in before["honest_partial"]) < 24
    for student in students:
        if student.startswith("xss_"):
            assert sum(s for _, s in before[student]) == 0, (student, before[student])
    config = hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest()
    ids = submission_ids(root, students)

    ran, requests, errors = {}, [], []  # where -> console lines; (where, method, url); console errors
    violations = errors  # Chromium logs each Content-Security-Policy violation as a console error
    attackers = [s for s in students if s.startswith("xss_")]
    with lab_server(root, home, "instructor") as (url, token, log), browser_page("xss") as (page, shot):
        where = ["login"]
        page.on("console", lambda m: ran.setdefault(where[0], []).append(m.text)
                if m.text.startswith("XSS-RAN") else None)
        page.on("console", lambda m: errors.append(f"{where[0]}: {m.text[:300]}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"{where[0]}: {e}"))
        page.on("request", lambda r: requests.append((where[0], r.method, r.url)))
        page.on("dialog", lambda d: d.dismiss())
        page.goto(f"{url}/formgrader?token={token}")  # logs in (cookie), as the instructor does
        page.wait_for_load_state("networkidle")

        for student in students:
            where[0] = f"formgrader:{student}"
            visit(page, f"{url}/formgrader/submissions/{ids[student]}/", f"formgrader-{student}", shot)
            if student == "honest_full":
                page.get_by_text("My own notes").first.wait_for()
                assert page.locator(".rendered_html strong", has_text="tensor").count() >= 1
                plot = page.locator(".output_png img").last
                plot.scroll_into_view_if_needed()
                assert plot.evaluate("img => img.complete && img.naturalWidth > 100"), "the plot does not show"
                shot("honest-plot")
            if student == "honest_partial":
                page.get_by_text("NotImplementedError").first.wait_for()
        for student in students:
            where[0] = f"feedback:{student}"
            html = root / "feedback" / student / MODULE.name / f"{MODULE.name}.html"
            assert html.exists(), f"no feedback for {student}"
            visit(page, html.as_uri(), f"feedback-{student}", shot)
            if student == "honest_partial":
                page.get_by_text("NotImplementedError").first.wait_for()
            if student == "honest_full":
                assert page.locator("img[src^='data:image/png']").last.evaluate("i => i.naturalWidth > 100")

        # The second wall alone: the same payloads in notebooks that were never sanitized (graded
        # before tito/sanitize.py, or something it missed), shown by formgrader and in feedback
        # regenerated from them: the Content-Security-Policies alone must stop them.
        for student in attackers:
            unsanitized(root, student)
        proc = run_tito(root, "feedback", "01")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for student in attackers:
            where[0] = f"csp-only-formgrader:{student}"
            visit(page, f"{url}/formgrader/submissions/{ids[student]}/", f"csp-only-formgrader-{student}", shot)
            where[0] = f"csp-only-feedback:{student}"
            html = root / "feedback" / student / MODULE.name / f"{MODULE.name}.html"
            # No clicks here: a link to another file opens another document, which the feedback's
            # policy does not cover (in file://, away from Jupyter; Jupyter serves files sandboxed).
            visit(page, html.as_uri(), f"csp-only-feedback-{student}", shot, click=False)
        # formgrader serves any file of the graded folder from the instructor's origin: sandboxed.
        where[0] = "csp-only-formgrader-file:xss_markdown"
        visit(page, f"{url}/formgrader/submissions/{ids['xss_markdown']}/evil.html", "csp-only-file", shot)
        assert any(e.startswith("csp-only") and "Content Security Policy" in e for e in violations), \
            "the unsanitized pages show no Content-Security-Policy violation: did the policies apply?"

        # Formgrader's grading buttons still work (on an honest submission, after the checks above).
        where[0] = "grading-ui"
        page.goto(f"{url}/formgrader/submissions/{ids['honest_partial']}/")
        scores_shown = "() => [...document.querySelectorAll('input.score')].some(i => i.placeholder !== '')"
        try:
            page.wait_for_function(scores_shown)  # the autograder's scores, loaded by formgrader's script
        except Exception:
            raise AssertionError("formgrader's scores did not load; console:\n" + "\n".join(errors[-20:]))
        score = page.locator("input.score").first
        grade_id = score.get_attribute("id")
        score.locator("xpath=ancestor::div[contains(@class,'nbgrader_cell')]").locator("button.no-credit").click()
        page.wait_for_function("(id) => document.getElementById(id).value === '0'", arg=grade_id)
        page.wait_for_timeout(1000)
        shot("no-credit-button")
    browsed = time.monotonic()

    # Playwright reports a load the Content-Security-Policy stopped as a request; Chromium logs it as
    # "Loading the script '<url>' violates ...": it never left the page.
    csp_blocked = {m.group(1) for e in violations for m in re.finditer(r"Loading the \w+ '([^']+)' violates", e)}
    own = [(w, m, u) for w, m, u in requests if w != "grading-ui" and u not in csp_blocked]
    blocked = sorted({e.split(":")[0] for e in violations if "Content Security Policy" in e})
    outside = [r for r in own if not r[2].startswith((url, "file://", "data:"))]
    writes = [r for r in own if r[1] != "GET" and "/api/security/csp-report" not in r[2]]
    contents = [r for r in own if "/api/contents" in r[2]]
    markers = sorted(str(p.relative_to(root)) for p in root.rglob("pwned_*"))
    after = grades()
    print(f"\ngraded + feedback {graded - started:.0f} s, browser {browsed - graded:.0f} s")
    for name in payloads():
        hits = [w.split(":")[0] for w, lines in ran.items() if any(f"XSS-RAN {name}" in l for l in lines)]
        print(f"  {name:20s} ran in: {', '.join(hits) or 'nowhere'}")
    print(f"  pages where the Content-Security-Policy blocked something: {len(blocked)}")
    for path in markers:
        print(f"  marker written: {path}")
    for r in writes + contents + outside:
        print(f"  request: {r}")
    assert not ran, f"student script ran: {ran}"
    assert markers == [], f"a payload wrote into the course: {markers}"
    assert not writes, f"the pages sent write requests: {writes}"
    assert not contents, f"the pages called the contents API: {contents}"
    assert not outside, f"the pages reached outside hosts: {outside}"
    assert hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest() == config
    changed = {s for s in students if after[s] != before[s]}
    assert changed == {"honest_partial"}, f"grades changed: {changed}"
    # The manual score from the grading UI reached the gradebook.
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        assert gb.find_grade(grade_id, MODULE.name, MODULE.name, "honest_partial").manual_score == 0
    assert not server_errors(log), "\n".join(server_errors(log))
