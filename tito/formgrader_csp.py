"""A Content-Security-Policy for formgrader's submission pages (a Jupyter server extension).

formgrader shows a student's graded notebook at /formgrader/submissions/<id>/ in the
instructor's own origin, and serves any other file of the graded folder at
/formgrader/submissions/<id>/<file>: a script there would act as the instructor. The grading
step already removes what could run (tito/sanitize.py); this is the second wall, for what a
sanitizer might miss and for notebooks graded before it existed.

- The submission page may run formgrader's own scripts only: those under
  <base_url>formgrader/static/, the inline scripts of nbgrader's template (allowed by their
  SHA-256, computed from the page: a script counts as nbgrader's when its text is literally in
  nbgrader's formgrade template, or is the template's one script with values, with this page's
  submission id), and the template's two onclick handlers (toggle_name). Nothing else runs:
  no inline script, event handler or javascript: URL a notebook brings, no script from anywhere
  else; no request but to this server; no plugins, frames, forms or <base>.
- Any other file under /formgrader/submissions/ gets a sandbox (a unique origin, as Jupyter's
  own /files/ handler does) and no script.

Enabled in lab/instructor/jupyter_server_config.json (`make lab-instructor`); on a JupyterHub,
`jupyter server extension enable --sys-prefix tito.formgrader_csp` in the instructor's environment.
The rest of JupyterLab keeps Jupyter's own headers.
"""
from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from jupyter_server.utils import url_path_join
from tornado.web import OutputTransform

SCRIPT = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script\s*>", re.S | re.I)
SRC = re.compile(r"\bsrc\s*=", re.I)
TYPE = re.compile(r"""\btype\s*=\s*["']?([^"'\s>]*)""", re.I)
JS_TYPES = ("", "text/javascript", "application/javascript", "module")
VALUES = re.compile(r'\s*var submission_id = "(?P<id>[0-9a-f-]{1,64})";\s*var notebook_id = "[\w.-]{1,200}";\s*'
                    r'var assignment_id = "[\w.-]{1,200}";\s*var base_url = "[\w./%-]{0,500}/formgrader";\s*\Z')
HANDLERS = ("toggle_name(true);", "toggle_name(false);")  # onclick="..." in nbgrader's formgrade_macros
HOST = re.compile(r"[\w.\-]+(:\d{1,5})?|\[[0-9a-fA-F:.]+\](:\d{1,5})?")
FILE_POLICY = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
               "frame-ancestors 'self'; sandbox")


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=1)
def template_scripts() -> frozenset[str]:
    """Inline script texts that nbgrader's formgrade template writes as they are (no {{ }})."""
    from nbgrader.server_extensions.formgrader import handlers

    folder = Path(handlers.template_path) / "formgrade"
    texts = set()
    for template in folder.glob("*.j2"):
        for match in SCRIPT.finditer(template.read_text()):
            body = match.group("body")
            if body.strip() and "{{" not in body and "{%" not in body and not SRC.search(match.group("attrs")):
                texts.add(body)
    return frozenset(texts)


def allowed_inline(page: str, submission_id: str) -> list[str]:
    """SHA-256 sources of the inline scripts in `page` that are nbgrader's own (see the module doc)."""
    ours = template_scripts()
    hashes = []
    for match in SCRIPT.finditer(page):
        attrs, body = match.group("attrs"), match.group("body")
        kind = TYPE.search(attrs)
        if SRC.search(attrs) or (kind and kind.group(1).lower() not in JS_TYPES):
            continue
        values = VALUES.match(body)
        if body in ours or (values and values.group("id") == submission_id):
            hashes.append(sha256(body))
    return sorted(set(hashes))


def page_policy(host: str, base_url: str, hashes: list[str]) -> str:
    static = url_path_join(base_url, "formgrader/static/")
    scripts = f"{host}{static}" if HOST.fullmatch(host or "") else "'self'"
    handlers = " ".join(sha256(h) for h in HANDLERS)
    return "; ".join([
        "default-src 'none'",
        f"script-src {scripts} {' '.join(hashes)} 'unsafe-hashes' {handlers}".replace("  ", " "),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "report-uri " + url_path_join(base_url, "api/security/csp-report"),
    ])


def make_transform(base_url: str):
    prefix = url_path_join(base_url, "formgrader/submissions/")
    page = re.compile(r"(?!components/)(?P<id>[^/]+)/?\Z")

    class FormgraderCSP(OutputTransform):
        """Sets the policy on responses under <base_url>formgrader/submissions/."""

        def __init__(self, request):
            self.request = request

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            path = self.request.path
            if not path.startswith(prefix):
                return status_code, headers, chunk
            match = page.match(path[len(prefix):])
            if match and "html" in headers.get("Content-Type", "text/html"):
                # The whole page is in this chunk when formgrader writes it at once (it does);
                # otherwise no inline script is allowed at all. Not cached: a 304 (tornado's ETag)
                # has no page to take the hashes from, and its headers would replace the cached ones.
                whole = finishing and status_code == 200
                hashes = allowed_inline(chunk.decode("utf-8", "replace"), match.group("id")) if whole else []
                headers["Content-Security-Policy"] = page_policy(self.request.host, base_url, hashes)
                headers["Cache-Control"] = "no-store"
            else:
                headers["Content-Security-Policy"] = FILE_POLICY
            return status_code, headers, chunk

    return FormgraderCSP


def _jupyter_server_extension_points():
    return [{"module": "tito.formgrader_csp"}]


def _load_jupyter_server_extension(serverapp):
    web_app = serverapp.web_app
    # First, so that it sees the page before any compression does.
    web_app.transforms.insert(0, make_transform(web_app.settings.get("base_url", "/")))
    serverapp.log.info("tito.formgrader_csp: Content-Security-Policy on formgrader's submission pages")


load_jupyter_server_extension = _load_jupyter_server_extension
