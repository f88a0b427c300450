"""tito/sanitize.py and tito/formgrader_csp.py without a browser (tests/test_xss.py drives them in Chromium).

What the autograded notebook keeps: honest markdown as written, every release notebook unchanged;
no raw HTML that runs, no javascript:/data: link, no output but text, PNG, JPEG, streams and
errors; no attachment but images; metadata that nbgrader needs. And the policies: the feedback
HTML's <meta> comes first in <head>; formgrader's page allows nbgrader's own inline scripts only.
"""
import copy
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import ROOT
from tito import formgrader_csp, sanitize
from xss_submissions import payloads, script, svg


def rendered(nb) -> str:
    """Every markdown cell as formgrader renders it (nbconvert's markdown2html, with attachments)."""
    return "\n".join(sanitize.render_markdown(c.source, c.get("attachments")) for c in nb.cells
                     if c.cell_type == "markdown")


def runs_script(html: str) -> list[str]:
    """What in `html` a browser would run or follow into script: tags, on* attributes, URLs."""
    from html.parser import HTMLParser

    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in ("script", "svg", "iframe", "object", "embed", "style", "base", "form"):
                found.append(tag)
            for name, value in attrs:
                value = (value or "").strip().lower()
                if name.startswith("on") or value.startswith(("javascript:", "data:text", "data:image/svg", "vbscript:")):
                    found.append(f"{tag} {name}={value[:40]}")

    Parser().feed(html)
    return found


def test_every_release_notebook_keeps_its_markdown_as_written():
    for path in sorted((ROOT / "release").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = [c.source for c in nb.cells if c.cell_type == "markdown"]
        changes = sanitize.sanitize_notebook(nb)
        assert [c.source for c in nb.cells if c.cell_type == "markdown"] == before, path
        assert not [c for c in changes if "markdown" in c], (path, changes)


@pytest.mark.parametrize("source", [
    "# Task 1\n\nMy answer: the **tensor** keeps `np.ndarray` data; see [numpy](https://numpy.org).",
    "| a | b |\n|---|---|\n| 1 | $x^2$ |\n\n```python\ndef f(x):\n\n    return x\n```",
    "1. one\n2. two\n\n> a quote with <b>bold</b> and <em>em</em><br>\n\n![plot](https://example.org/p.png)",
])
def test_honest_markdown_is_kept(source):
    assert sanitize.safe_markdown(source) == (source, False)


@pytest.mark.parametrize("name", [n for n in payloads() if n.startswith("md_") or n in ("attachment", "raw_cell")])
def test_markdown_payloads_render_without_script(name):
    cells, meta = copy.deepcopy(payloads()[name])
    nb = new_notebook(cells=cells, metadata=meta)
    live = rendered(nb) + "".join(c.source for c in nb.cells if c.cell_type == "raw")
    assert runs_script(live), "the payload should be live before sanitizing"
    sanitize.sanitize_notebook(nb)
    html = rendered(nb)
    assert runs_script(html) == [], html[:2000]
    assert "Grading removed" in html  # the instructor sees that something was removed


def test_outputs_keep_text_images_streams_and_errors_only():
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    cell = new_code_cell("x", outputs=[
        new_output("stream", name="stdout", text="hello\n"),
        new_output("stream", name='stdout"><img src=x onerror=1>', text="x"),
        new_output("error", ename="NotImplementedError", evalue="Task 01.4", traceback=["Traceback..."]),
        new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"},
                   metadata={"image/png": {"width": 300, "height": '"><script>'}}),
        new_output("display_data", data={"image/png": '"><img src=x onerror=alert(1)>'}),
        new_output("display_data", data={"text/html": f'<img src=x onerror="{script("o")}">',
                                         "text/plain": "<IPython.core.display.HTML object>"}),
        new_output("display_data", data={"application/javascript": script("o")}),
        new_output("display_data", data={"image/svg+xml": svg("o")}),
        new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}}),
        new_output("execute_result", data={"text/markdown": "[x](javascript:alert(1))"}, execution_count=3),
    ])
    nb = new_notebook(cells=[cell], metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {}},
                                              "kernelspec": {"name": "python3", "display_name": "Python 3"}})
    changes = sanitize.sanitize_notebook(nb)
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "error", "display_data", "display_data",
                                               "display_data", "display_data", "display_data",
                                               "display_data", "execute_result"]
    assert outputs[0].text == "hello\n" and outputs[1].ename == "NotImplementedError"
    assert outputs[2].data == {"image/png": png, "text/plain": "<Figure>"}
    assert outputs[2].metadata == {"image/png": {"width": 300}}
    for o in outputs[3:]:
        assert set(o.data) == {"text/plain"}, o
        assert "Grading removed output" in o.data["text/plain"]
    assert outputs[-1].execution_count == 3
    assert nb.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    assert len([c for c in changes if "output removed" in c]) == 7


def test_metadata_keeps_what_nbgrader_needs():
    known = {"tensor_class": (False, ""), "test_01_1": (True, "assert True")}
    cells = [
        new_code_cell("x", metadata={"nbgrader": {"grade": False, "solution": True, "locked": False,
                                                  "grade_id": "tensor_class", "schema_version": 3,
                                                  "extra": "<script>"},
                                     "tags": ["export", '"><img src=x onerror=1>'], "deletable": False,
                                     "jupyter": {"source_hidden": True}, "collapsed": True}),
        new_code_cell("y", metadata={"nbgrader": {"grade": True, "grade_id": 'x"><script>', "points": 4}}),
        new_markdown_cell("assert True", metadata={"nbgrader": {"grade": True, "locked": True, "grade_id": "test_01_1",
                                                                "points": 4, "solution": False}}),
    ]
    nb = new_notebook(cells=cells, metadata={"title": "<script>", "language_info": {
        "name": "python", "file_extension": '.py"><script>', "codemirror_mode": {"name": "ipython", "version": 3}}})
    sanitize.sanitize_notebook(nb, known)
    assert nb.cells[0].metadata == {"nbgrader": {"grade": False, "solution": True, "locked": False,
                                                 "grade_id": "tensor_class", "schema_version": 3},
                                    "tags": ["export"], "deletable": False}
    assert nb.cells[1].metadata == {}
    assert nb.cells[2].metadata["nbgrader"]["grade_id"] == "test_01_1"
    assert nb.metadata == {"language_info": {"name": "python", "codemirror_mode": {"name": "ipython", "version": 3}}}


def test_a_locked_cell_is_kept_only_with_the_instructors_source():
    known = {"intro": (True, "<details><summary>Hint</summary>use <code>np.add</code></details>")}
    meta = {"nbgrader": {"grade": False, "solution": False, "locked": True, "grade_id": "intro"}}
    kept = new_markdown_cell(known["intro"][1], metadata=copy.deepcopy(meta))
    edited = new_markdown_cell('<img src=x onerror="alert(1)">', metadata=copy.deepcopy(meta))
    nb = new_notebook(cells=[kept, edited])
    sanitize.sanitize_notebook(nb, known)
    assert nb.cells[0].source == known["intro"][1]
    assert "onerror" not in nb.cells[1].source


def test_feedback_html_starts_with_the_policy():
    page = '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8" />\n<script src="https://cdn/x.js"></script>'
    out = sanitize.with_csp_meta(page)
    assert out.index("Content-Security-Policy") < out.index("<script")
    assert "default-src 'none'" in out and "script-src" not in out


def test_formgrader_policy_allows_only_nbgraders_own_inline_scripts():
    sid = "0123456789abcdef0123456789abcdef"
    values = (f'\nvar submission_id = "{sid}";\nvar notebook_id = "01_tensor";\nvar assignment_id = "01_tensor";\n'
              'var base_url = "/formgrader";\n')
    ours = sorted(formgrader_csp.template_scripts())
    assert len(ours) == 2 and any("toggle_name" in s for s in ours)
    evil = f'<img src=x onerror=1><script>{script("x")}</script>'
    page = (f'<head><script type="text/javascript">{values}</script>'
            + "".join(f'<script type="text/javascript">{s}</script>' for s in ours)
            + f'<script src="/formgrader/static/js/formgrade.js"></script></head><body>{evil}'
            + f'<script>{values.replace(sid, "f" * 32)}</script>'
            + '<script type="application/vnd.jupyter.widget-state+json">{}</script></body>')
    hashes = formgrader_csp.allowed_inline(page, sid)
    assert hashes == sorted({formgrader_csp.sha256(values)} | {formgrader_csp.sha256(s) for s in ours})
    policy = formgrader_csp.page_policy("127.0.0.1:8888", "/", hashes)
    assert "script-src 127.0.0.1:8888/formgrader/static/ 'sha256-" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert formgrader_csp.sha256(script("x")) not in policy


def test_links_go_to_anchors_or_the_web_only():
    """A relative link would open a file of the graded folder, which formgrader serves from the
    instructor's origin (and generate_feedback copies next to the feedback)."""
    source, changed = sanitize.safe_markdown("[notes](evil.html), [top](#Task-1), [numpy](https://numpy.org), "
                                             "[mail](mailto:a@b.org), [x](//evil.org/x), [d](data:text/html,hi)")
    html = sanitize.render_markdown(source)
    assert changed
    assert re.findall(r'href="([^"]*)"', html) == ["#Task-1", "https://numpy.org", "mailto:a@b.org"]
