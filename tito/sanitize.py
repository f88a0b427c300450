"""Nothing a student wrote is rendered live in the instructor's browser.

formgrader's submission page and nbgrader's feedback HTML are nbconvert HTML exports of the
*autograded* notebook, made in the instructor's browser origin: markdown's raw HTML
(`<img src=x onerror=...>`, `<script>`), `javascript:` links, script outputs, SVG and widget
views a student's code displays, cell attachments and metadata all reach the page as they are.
One script there acts as the instructor (writes files, sets grades, edits nbgrader_config.py).

`SanitizeSubmission` is the last step of `c.Autograde.autograde_preprocessors`
(nbgrader_config.py), so `tito grade`, formgrader's Autograde button and plain
`nbgrader autograde` all write a clean autograded notebook, after SaveAutoGrades has scored
the test cells on their real outputs:

- markdown cells: rendered with nbconvert's own markdown renderer (the one formgrader and the
  feedback use) and cleaned with nh3 (Ammonia). A cell whose rendering the cleaner leaves
  as it is keeps its markdown; any other becomes the cleaned HTML, with a note that says so.
  A locked cell whose source is the instructor's (checked against the gradebook) is kept.
  Attachments are dropped; raw cells become escaped text.
- outputs of every code cell (test cells show what student code displays too): only
  text/plain, image/png and image/jpeg (valid base64) are kept, streams and errors as they
  are; anything else (HTML, JavaScript, SVG, widget views, markdown, LaTeX) becomes a
  text/plain note. Output metadata keeps only numeric image sizes.
- metadata: cells keep nbgrader's (grade ids the gradebook knows, typed values), safe tags,
  `deletable`/`editable`; the notebook keeps kernelspec and language_info with plain values.

`FeedbackExporter` (c.GenerateFeedback.exporter_class) writes nbgrader's feedback HTML with
a Content-Security-Policy <meta> as the first thing in <head>: no script, no outside request,
whatever the page holds. tito/formgrader_csp.py does the same for formgrader's pages.
"""
from __future__ import annotations

import base64
import binascii
import html
import re
import uuid
from html.parser import HTMLParser

import nh3
from nbconvert.exporters import HTMLExporter
from nbformat import from_dict
from nbgrader.preprocessors import NbGraderPreprocessor
from pygments.token import STANDARD_TYPES

# --- markdown ---------------------------------------------------------------------------------

# Ammonia's default tags (no script, style, svg, iframe, form, input, object) and attributes,
# plus what nbconvert's markdown renderer itself writes: heading ids, the anchor links'
# class, pygments' classes in fenced code.
ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
for _h in ("h1", "h2", "h3", "h4", "h5", "h6"):
    ATTRIBUTES.setdefault(_h, set()).add("id")
CLASSES = {"a": {"anchor-link"}, "div": {"highlight"}, "span": {c for c in STANDARD_TYPES.values() if c}}
URL_SCHEMES = {"http", "https", "mailto"}
IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*\Z")
NOTE = ("<p><em>[Grading removed HTML, links or images from this cell that could run in a browser; "
        "the submitted notebook has the original.]</em></p>")
RAW_NOTE = "<p><em>[Grading removed a raw cell's formatting: it is shown as text.]</em></p>"


LINK = re.compile(r"\s*(#|(https?|mailto):)", re.I)


def _attribute(element: str, attribute: str, value: str) -> str | None:
    """nh3's attribute_filter: images may be data: PNG/JPEG/GIF/WebP too (what markdown's
    ![](data:...) gives); links go to an anchor on the page or to http(s)/mailto only: a relative
    link would open a file of the graded folder, which formgrader serves from the instructor's
    origin (and generate_feedback copies next to the feedback)."""
    if element == "img" and attribute == "src" and value.lstrip().lower().startswith("data:"):
        return value if IMAGE_DATA.match(value.strip()) else None
    if attribute == "href" and not LINK.match(value):
        return None
    return value


def clean_html(text: str) -> str:
    """`text` with everything that could run or load script removed (nh3, Ammonia's rules)."""
    return nh3.clean(text, attributes=ATTRIBUTES, allowed_classes=CLASSES, url_schemes=URL_SCHEMES,
                     attribute_filter=_attribute, link_rel=None, strip_comments=True)


_EXPORTER = None


def render_markdown(source: str, attachments: dict | None = None) -> str:
    """`source` as formgrader and the feedback render it: nbconvert's HTMLExporter.markdown2html."""
    global _EXPORTER
    if _EXPORTER is None:
        _EXPORTER = HTMLExporter()
    return _EXPORTER.markdown2html({"cell": {"attachments": attachments or {}}, "resources": {}}, source)


class _Tokens(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []

    def handle_starttag(self, tag, attrs):
        self.out.append(("start", tag, tuple(sorted((k, v or "") for k, v in attrs))))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self.out.append(("end", tag))

    def handle_data(self, data):
        if self.out and self.out[-1][0] == "data":
            self.out[-1] = ("data", self.out[-1][1] + data)
        else:
            self.out.append(("data", data))

    def handle_comment(self, data):
        self.out.append(("comment", data))

    def handle_decl(self, decl):
        self.out.append(("decl", decl))

    handle_pi = handle_unknown_decl = handle_decl


def _tokens(text: str) -> list:
    parser = _Tokens()
    parser.feed(text)
    parser.close()
    return [t if t[0] != "data" else ("data", " ".join(t[1].split())) for t in parser.out
            if t != ("data", "") and not (t[0] == "data" and not t[1].strip())]


def safe_markdown(source: str, attachments: dict | None = None) -> tuple[str, bool]:
    """(markdown that renders safely, whether it had to change). Unchanged when nh3 leaves the
    rendering as it is (same tags, attributes and text); otherwise the cleaned rendering on one
    line inside a <div>: a markdown HTML block that ends only at a blank line, so no renderer
    reads markdown into it (newlines are &#10;, which HTML shows as the newline it is). A cell
    that does not render (a removed attachment) is shown as its text."""
    try:
        rendered = render_markdown(source, attachments)
    except Exception:  # nbconvert's InvalidNotebook: missing attachment
        return escaped_text(source, NOTE), True
    cleaned = clean_html(rendered)
    if _tokens(cleaned) == _tokens(rendered):
        return source, False
    one_line = (NOTE + cleaned).replace("\r", "").replace("\n", "&#10;")
    return f'<div class="tito-sanitized">{one_line}</div>', True


def escaped_text(text: str, note: str = "") -> str:
    """`text` shown as it is, as a markdown cell (one HTML block, see safe_markdown)."""
    return (f'<div class="tito-sanitized">{note}<pre>'
            + html.escape(text).replace("\r", "").replace("\n", "&#10;") + "</pre></div>")


# --- outputs ----------------------------------------------------------------------------------

KEPT_MIME = ("text/plain", "image/png", "image/jpeg")
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*\Z")
STREAMS = ("stdout", "stderr")


def _valid_image(data) -> bool:
    if not isinstance(data, str) or not BASE64.match(data):
        return False
    try:
        base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value if isinstance(value, str) else str(value)


def clean_output(output) -> tuple[dict | None, list[str]]:
    """(the output with only what is safe to render, or None to drop it; MIME types removed)."""
    kind = output.get("output_type")
    if kind == "stream":
        if output.get("name") not in STREAMS:
            return None, ["stream " + str(output.get("name"))[:40]]
        return {"output_type": "stream", "name": output["name"], "text": _text(output.get("text", ""))}, []
    if kind == "error":
        return {"output_type": "error", "ename": _text(output.get("ename", "")),
                "evalue": _text(output.get("evalue", "")),
                "traceback": [_text(line) for line in output.get("traceback", [])]}, []
    if kind not in ("display_data", "execute_result"):
        return None, [str(kind)[:40]]
    data = output.get("data", {}) or {}
    kept, removed = {}, []
    for mime, value in data.items():
        if mime == "text/plain":
            kept[mime] = _text(value)
        elif mime in ("image/png", "image/jpeg") and _valid_image(value):
            kept[mime] = value
        else:
            removed.append(mime)
    if removed:
        note = f"[Grading removed output shown as {', '.join(removed)}: it could run in a browser]"
        kept["text/plain"] = f"{kept['text/plain']}\n{note}" if "text/plain" in kept else note
    metadata = {}
    for mime in ("image/png", "image/jpeg"):
        sizes = (output.get("metadata", {}) or {}).get(mime)
        if mime in kept and isinstance(sizes, dict):
            sizes = {k: v for k, v in sizes.items() if k in ("width", "height")
                     and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if sizes:
                metadata[mime] = sizes
    clean = {"output_type": kind, "data": kept, "metadata": metadata}
    if kind == "execute_result":
        count = output.get("execution_count")
        clean["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
    return clean, removed


def clean_attachments(attachments) -> dict:
    """A markdown cell's attachments that are PNG or JPEG images in valid base64 (nbconvert shows
    them as <img src="data:...">); SVG, HTML and anything else are dropped."""
    if not isinstance(attachments, dict):
        return {}
    clean = {}
    for name, bundle in attachments.items():
        if isinstance(name, str) and NAME.match(name) and isinstance(bundle, dict):
            images = {m: v for m, v in bundle.items() if m in ("image/png", "image/jpeg") and _valid_image(v)}
            if images:
                clean[name] = images
    return clean


# --- metadata ---------------------------------------------------------------------------------

NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}\Z")  # grade ids, tags
CELL_ID = re.compile(r"[a-zA-Z0-9\-_]{1,64}\Z")  # nbformat's own rule
PLAIN = re.compile(r"[\w .+#()/\-]{0,200}\Z")
NBGRADER_BOOLS = ("grade", "solution", "locked", "task")


def clean_nbgrader(meta, known: set[str] | None) -> dict | None:
    """nbgrader's cell metadata with typed values, or None when the grade id is not the
    gradebook's (`known`; None: no gradebook to ask, any well-formed id)."""
    if not isinstance(meta, dict):
        return None
    grade_id = meta.get("grade_id")
    if not isinstance(grade_id, str) or not NAME.match(grade_id) or (known is not None and grade_id not in known):
        return None
    clean = {"grade_id": grade_id}
    for key in NBGRADER_BOOLS:
        if isinstance(meta.get(key), bool):
            clean[key] = meta[key]
    for key in ("points", "score"):
        value = meta.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            clean[key] = value
    if isinstance(meta.get("schema_version"), int):
        clean["schema_version"] = meta["schema_version"]
    if isinstance(meta.get("checksum"), str) and re.fullmatch(r"[0-9a-f]{1,128}", meta["checksum"]):
        clean["checksum"] = meta["checksum"]
    if meta.get("cell_type") in ("code", "markdown"):
        clean["cell_type"] = meta["cell_type"]
    return clean


def clean_cell_metadata(metadata, known: set[str] | None) -> dict:
    clean = {}
    nbgrader = clean_nbgrader(metadata.get("nbgrader"), known)
    if nbgrader:
        clean["nbgrader"] = nbgrader
    tags = [t for t in metadata.get("tags", []) or [] if isinstance(t, str) and NAME.match(t)]
    if tags:
        clean["tags"] = tags
    for key in ("deletable", "editable"):
        if isinstance(metadata.get(key), bool):
            clean[key] = metadata[key]
    return clean


def _plain(value) -> bool:
    if isinstance(value, str):
        return bool(PLAIN.match(value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and PLAIN.match(k) and _plain(v) for k, v in value.items())
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def clean_notebook_metadata(metadata) -> dict:
    """kernelspec and language_info (nbconvert's code highlighting), with plain values only."""
    clean = {}
    for key in ("kernelspec", "language_info"):
        value = metadata.get(key)
        if isinstance(value, dict):
            clean[key] = {k: v for k, v in value.items() if isinstance(k, str) and PLAIN.match(k) and _plain(v)}
    return clean


# --- the autograde step -----------------------------------------------------------------------

def _gradebook_cells(resources) -> dict | None:
    """grade_id -> (locked, source) of the notebook's cells in the gradebook; None without one."""
    info = (resources or {}).get("nbgrader") or {}
    if not all(info.get(k) for k in ("db_url", "notebook", "assignment")):
        return None
    from nbgrader.api import Gradebook, MissingEntry

    try:
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            return {c.name: (bool(c.locked), c.source) for c in notebook.source_cells}
    except MissingEntry:
        return None


def sanitize_notebook(nb, known_cells: dict | None = None) -> list[str]:
    """Make `nb` safe to render in the instructor's browser, in place (see the module's doc);
    returns one line per change. `known_cells`: grade_id -> (locked, source) from the gradebook."""
    changes = []
    known = set(known_cells) if known_cells is not None else None
    seen_ids = set()
    for index, cell in enumerate(nb.cells):
        where = f"cell {index + 1}"
        nbgrader = cell.get("metadata", {}).get("nbgrader") or {}
        cell.metadata = from_dict(clean_cell_metadata(cell.get("metadata", {}), known))
        cid = cell.get("id")
        if cid is not None and (not isinstance(cid, str) or not CELL_ID.match(cid) or cid in seen_ids):
            cell.id = uuid.uuid4().hex[:8]
            changes.append(f"{where}: new cell id")
        seen_ids.add(cell.get("id"))
        attachments = clean_attachments(cell.get("attachments"))
        if "attachments" in cell:
            if attachments != cell.attachments:
                changes.append(f"{where}: attachments removed")
            del cell["attachments"]
            if attachments and cell.cell_type == "markdown":
                cell.attachments = attachments
        if cell.cell_type == "raw":
            cell.cell_type = "markdown"
            cell.source = escaped_text(_text(cell.source), RAW_NOTE)
            changes.append(f"{where}: raw cell shown as text")
        elif cell.cell_type == "markdown":
            grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
            locked = known_cells is not None and grade_id in known_cells and known_cells[grade_id][0] \
                and cell.source == known_cells[grade_id][1]
            if not locked:
                cell.source, changed = safe_markdown(_text(cell.source), attachments)
                if changed:
                    changes.append(f"{where}: markdown cleaned")
        elif cell.cell_type == "code":
            outputs = []
            for output in cell.get("outputs", []):
                clean, removed = clean_output(output)
                if removed:
                    changes.append(f"{where}: output removed ({', '.join(removed)})")
                if clean is not None:
                    outputs.append(clean)
            cell.outputs = [from_dict(o) for o in outputs]
            count = cell.get("execution_count")
            if not (count is None or (isinstance(count, int) and not isinstance(count, bool))):
                cell.execution_count = None
    nb.metadata = from_dict(clean_notebook_metadata(nb.get("metadata", {})))
    return changes


class SanitizeSubmission(NbGraderPreprocessor):
    """The autograded notebook as it can be shown in a browser (tito/sanitize.py)."""

    def preprocess(self, nb, resources):
        changes = sanitize_notebook(nb, _gradebook_cells(resources))
        if changes:
            self.log.warning("Removed what could run in the instructor's browser: %s", "; ".join(changes[:20])
                             + (f"; and {len(changes) - 20} more" if len(changes) > 20 else ""))
        return nb, resources


# --- feedback HTML ----------------------------------------------------------------------------

FEEDBACK_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
                "base-uri 'none'; form-action 'none'")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{FEEDBACK_CSP}">'


def with_csp_meta(page: str) -> str:
    """`page` with CSP_META as the first element of its <head> (before any script can load)."""
    match = re.search(r"<head(\s[^>]*)?>", page, re.I)
    if match is None:
        return CSP_META + page
    return page[:match.end()] + "\n" + CSP_META + page[match.end():]


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback HTML (same template and settings as HTMLExporter) under a
    Content-Security-Policy that allows no script and no request: c.GenerateFeedback.exporter_class."""

    def from_notebook_node(self, nb, resources=None, **kw):
        output, resources = super().from_notebook_node(nb, resources, **kw)
        return with_csp_meta(name_test_cells(output, nb)), resources


def name_test_cells(html: str, nb) -> str:
    """nbgrader's summary calls every test cell "Test cell": name each by its task, the heading above it
    ('Test cell: Task 01.1: Tensor' ...), so a student sees which task lost the points."""
    import html as html_lib

    from .feedback import _heading_above
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("grade") and not meta.get("solution") and meta.get("grade_id")):
            continue
        heading = _heading_above(nb.cells, i).lstrip("#").strip() or meta["grade_id"]
        gid = html_lib.escape(meta["grade_id"], quote=True)
        html = html.replace(f'<a href="#{gid}">Test cell</a>',
                            f'<a href="#{gid}">Test cell: {html_lib.escape(heading)}</a>', 1)
    return html
