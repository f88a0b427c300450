"""What the browser tests share: Chromium, a Jupyter server on a free port, a page that cannot leave the machine.

Used by tests/test_lab.py (JupyterLab + nbgrader) and tests/test_demos.py (lecture demos in
JupyterLab and Voila). Chromium is the system's (Debian's `chromium`), driven by Playwright
through `executable_path`. `make test` installs it as root (`make browser`); elsewhere, without
Chromium, the browser tests are skipped with one line saying how to get it, unless
TINYTORCH_BROWSER_TESTS=required (set by .ci/run), where a missing Chromium is a failure.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import ROOT

SHOTS = ROOT / "tests" / "screenshots"
# Debian's /usr/bin/chromium is a launcher script that prints a harmless warning; prefer the binary.
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser")) if p and Path(p).exists()), None)
HOW_TO_GET_CHROMIUM = "browser tests need Chromium: `sudo make browser` or `apt-get install chromium` (or CHROMIUM=/path)"


def require_chromium() -> str:
    """The Chromium binary; skips (or fails, when TINYTORCH_BROWSER_TESTS=required) without one."""
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("TINYTORCH_BROWSER_TESTS") == "required":
        pytest.fail(f"TINYTORCH_BROWSER_TESTS=required and no Chromium found: {HOW_TO_GET_CHROMIUM}")
    pytest.skip(HOW_TO_GET_CHROMIUM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_server(cmd: list, env: dict, cwd: Path, log: Path, ready_path: str | None, what: str = "the server",
                   timeout: float = 60):
    """Runs cmd + --port=<free port> (with its port option given as `{port}` in cmd) until ready_path answers
    (ready_path None: until the port accepts connections).

    Yields the base url. Stopped with SIGTERM (Jupyter shuts its kernels down), killed after 20 s.
    """
    for _ in range(3):  # a free port can be taken between choosing it and binding it
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen([part.replace("{port}", str(port)) for part in cmd], cwd=cwd, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if ready_path is None:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                else:
                    urllib.request.urlopen(url + ready_path, timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        if proc.poll() is None:
            break
    else:
        pytest.fail(f"{what} did not start:\n{log.read_text()[-3000:]}")
    try:
        assert time.monotonic() < deadline, f"{what} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_errors(log: Path) -> list[str]:
    """Critical server lines and exchange errors in a Jupyter server's log (our own SIGTERM excepted)."""
    return [line for line in log.read_text().splitlines()
            if (re.search(r"\[C [^\]]*ServerApp\]", line) and "received signal" not in line)
            or "ExchangeError" in line]


@contextmanager
def browser_page(name: str, viewport=(1400, 900)):
    """A Chromium page that cannot reach outside hosts; yields (page, shot) with shot(step) -> png path.

    Screenshots go to tests/screenshots/<name>/ (git-ignored), numbered in order; one named
    "failure" is taken when the test fails inside the block.
    """
    from playwright.sync_api import sync_playwright

    chromium = require_chromium()
    folder = SHOTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = iter(range(1, 100))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.set_default_timeout(60_000)

        def shot(step: str) -> Path:
            path = folder / f"{next(count):02d}-{step}.png"
            page.screenshot(path=path)
            return path

        try:
            yield page, shot
        except BaseException:
            shot("failure")
            raise
        finally:
            browser.close()


def run_command(page, command: str, args: dict | None = None):
    return page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}])


def wait_for_kernel(page) -> None:
    """The current notebook's kernel is connected and has sent its kernel info (which
    JupyterLab writes into the notebook's metadata): then 'unsaved' means a real change."""
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext")
    page.evaluate("""async () => {
        const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
        await ctx.ready;
        while (!ctx.session || !ctx.session.kernel) await new Promise(r => setTimeout(r, 100));
        await ctx.session.kernel.info;
        while (ctx.session.kernel.status !== 'idle') await new Promise(r => setTimeout(r, 100));
    }""")
