"""A class on a real JupyterHub (hub/): two students and an instructor, each a throwaway OS user with
their own server, driven through the hub's REST API, each user's server API and Chromium.

instructor releases Module 01 -> each student fetches it in their own server (alice in the browser's
Assignment List, bob through its API), alice fills it in correctly, bob hands in the stubs, both submit ->
the instructor (in their own server's kernel) collects, grades (`tito grade --jobs 2`, sandboxed),
generates and releases feedback; Formgrader in the browser lists both -> each student fetches feedback
and sees their own score (24/24, 0/24); neither student can read the other's home or the instructor's
course directory. The hub, its proxy and the servers are stopped, no process of the users is left, and
the users are removed.

Needs root (it creates OS users and the hub starts each server as its user), npm's proxy (`make hub-deps`)
and Chromium; skipped with one line elsewhere, required in CI (TINYTORCH_BROWSER_TESTS=required).
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from browser import browser_page, free_port, require_chromium, run_command, server_errors
from helpers import ROOT, fill_in
from tito.build import build
from tito.modules import find_module

sys.path.insert(0, str(ROOT / "hub"))
import hubctl  # noqa: E402

pytestmark = pytest.mark.browser
COURSE_ID = "tinytorch-optimization"
MODULE = find_module("01")
A = MODULE.name
PROXY = ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
ENV = Path(os.environ.get("TINYTORCH_HUB_ENV", "/srv/tinytorch-hub/env"))  # built once, reused (hubctl)


def _need(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("TINYTORCH_BROWSER_TESTS") == "required":
            pytest.fail(f"TINYTORCH_BROWSER_TESTS=required: {why}")
        pytest.skip(why)


class Hub:
    def __init__(self, url: str, token: str):
        self.url, self.token, self.user_tokens = url, token, {}

    def request(self, method: str, path: str, token: str, body=None, raw: bool = False, timeout: float = 300):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as response:
            text = response.read().decode()
        return text if raw else (json.loads(text) if text else None)

    def api(self, method: str, path: str, body=None):
        return self.request(method, "/hub/api" + path, self.token, body)

    def start(self, *names: str) -> None:
        """Start the servers of `names` (all at once) and wait until each is ready."""
        for name in names:
            self.api("POST", f"/users/{name}/server")
        deadline = time.monotonic() + 120
        for name in names:
            while not (self.api("GET", f"/users/{name}")["servers"].get("", {}).get("ready")):
                assert time.monotonic() < deadline, f"{name}'s server did not start"
                time.sleep(0.5)
            self.user_tokens[name] = self.api("POST", f"/users/{name}/tokens",
                                              {"expires_in": 900, "note": "test_hub"})["token"]

    def server(self, name: str, method: str, path: str, body=None, raw: bool = False):
        """A request to `name`'s own server, with `name`'s own token."""
        return self.request(method, f"/user/{name}{path}", self.user_tokens[name], body, raw)

    def run(self, name: str, code: str, timeout: float = 300) -> str:
        """`code` run in a kernel of `name`'s server (as name's OS user); returns its output, raises on error."""
        import websocket
        kernel = self.server(name, "POST", "/api/kernels", {"name": "python3", "path": ""})  # in root_dir
        ws = websocket.create_connection(
            f"{self.url.replace('http', 'ws', 1)}/user/{name}/api/kernels/{kernel['id']}/channels",
            header=[f"Authorization: token {self.user_tokens[name]}"], timeout=timeout)
        try:
            msg_id = secrets.token_hex(8)
            ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": name,
                                           "session": msg_id, "version": "5.3"},
                                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                                "content": {"code": code, "silent": False, "store_history": False,
                                            "user_expressions": {}, "allow_stdin": False}}))
            out, error = [], None
            while True:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "execute_result":
                    out.append(msg["content"]["data"].get("text/plain", ""))
                elif kind == "error":
                    error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
        finally:
            ws.close()
            self.server(name, "DELETE", f"/api/kernels/{kernel['id']}")
        if error:
            raise AssertionError(f"{name}: {error}\n{''.join(out)[-3000:]}")
        return "".join(out)


def shell(command: str) -> str:
    """Python source that runs `command` in a shell and prints its output, failing on a non-zero exit."""
    return (f"import subprocess\np = subprocess.run({command!r}, shell=True, capture_output=True, text=True)\n"
            "print(p.stdout + p.stderr)\nassert p.returncode == 0, p.returncode\n")


def login(page, hub: Hub, name: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r".*/(user|hub/home|hub/spawn).*"))


def test_class_on_jupyterhub(tmp_path):
    _need(os.geteuid() == 0, "tests/test_hub.py creates OS users and runs JupyterHub as root (CI does): run as root")
    _need(PROXY.exists(), "JupyterHub's proxy is not installed: `make hub-deps` (npm ci in hub/)")
    require_chromium()
    t0 = time.monotonic()
    tag = secrets.token_hex(3)
    alice, bob, prof = f"tt{tag}a", f"tt{tag}b", f"tt{tag}p"
    users = [alice, bob, prof]
    state = Path(f"/srv/tinytorch-hub-test-{tag}")  # traversable by the users (pytest's tmp_path is not)
    exchange = state / "exchange"
    hub_proc = None
    try:
        hubctl.build_env(ENV)
        state.mkdir(parents=True)
        state.chmod(0o755)
        hubctl.write_jupyter_config(state, exchange)
        hubctl.make_exchange(exchange)
        hubctl.make_kit(state / "kit", "01")
        passwords = {name: hubctl.add_user(name, full_name) for name, full_name in
                     ((alice, "Alice Able"), (bob, "Bob Baker"), (prof, "Pat Professor"))}
        # The instructor's course directory: this repository's course files (a clone in `make hub`).
        course = Path(hubctl.pwd.getpwnam(prof).pw_dir) / "tinytorch"
        course.mkdir()
        for name in ("source", "release", "tinytorch_lib", "tito", "data"):
            shutil.copytree(ROOT / name, course / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.ipynb")
                            if name == "source" else shutil.ignore_patterns("__pycache__"))
        for name in ("nbgrader_config.py", "jupytext.toml", "pyproject.toml"):
            shutil.copy(ROOT / name, course / name)
        hubctl.instructor_course(prof, ROOT)  # owner and mode of the existing copy

        token, port = secrets.token_hex(24), free_port()
        env = hubctl.hub_environment(state, ENV, exchange, prof, [alice, bob], course, port, api_token=token,
                                     hub_port=free_port(), proxy_api_port=free_port())
        log = state / "jupyterhub.log"
        with open(log, "w") as out:
            hub_proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(ROOT / "hub" / "jupyterhub_config.py")],
                                        cwd=state, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        hub = Hub(f"http://127.0.0.1:{port}", token)
        deadline = time.monotonic() + 60
        while True:
            try:
                hub.api("GET", "/")
                break
            except (OSError, urllib.error.HTTPError):
                assert hub_proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
        print(f"test_hub: hub up at {time.monotonic() - t0:.0f} s")
        hub.start(*users)
        print(f"test_hub: servers up at {time.monotonic() - t0:.0f} s")
        # Each server runs as its own OS user, students on their own kit (its stub library and student tito,
        # not the reference library, not the grading code), the instructor in the course directory.
        probe = ("import getpass, importlib.util, os, tinytorch_lib\n"
                 "print(getpass.getuser(), os.getcwd(), os.path.dirname(tinytorch_lib.__file__),"
                 " importlib.util.find_spec('tito.cli') is not None)")
        for name in users:
            user, cwd, lib, grader = hub.run(name, probe).split()
            home = str(hubctl.pwd.getpwnam(name).pw_dir)
            where = str(course) if name == prof else f"{home}/tinytorch"
            assert (user, cwd, lib, grader) == (name, where, f"{where}/tinytorch_lib", str(name == prof)), \
                (name, user, cwd, lib, grader)
        for name in (alice, bob):  # no Formgrader in a student's server
            with pytest.raises(urllib.error.HTTPError, match="404"):
                hub.server(name, "GET", "/formgrader", raw=True)

        # The instructor releases Module 01 (tito release: build + generate_assignment; then the exchange).
        released = hub.run(prof, shell(f"tito release 01 && nbgrader release_assignment {A}"))
        assert "Permissions for exchange directory" not in released, released

        # alice solves every task (the reference solutions pasted into the stubs); bob hands in the stubs.
        build(MODULE)
        filled = nbformat.read(fill_in(MODULE, tmp_path / "alice.ipynb"), as_version=4)
        path = f"/api/contents/workspace/{A}/{A}.ipynb"
        with browser_page("hub-student") as (page, shot):
            login(page, hub, alice, passwords[alice])
            page.goto(f"{hub.url}/user/{alice}/lab")
            page.wait_for_function("() => window.jupyterapp && "
                                   "window.jupyterapp.commands.hasCommand('nbgrader:open-assignment-list')",
                                   timeout=120_000)
            assert not page.evaluate("() => window.jupyterapp.commands.hasCommand('nbgrader:open-formgrader')")
            run_command(page, "nbgrader:open-assignment-list")
            released_list = page.locator("#released_assignments_list")
            released_list.get_by_text(A).first.wait_for()
            shot("assignment-list-released")
            released_list.locator("button", has_text="Fetch").first.click()
            fetched_list = page.locator("#fetched_assignments_list")
            fetched_list.get_by_text(A).first.wait_for()
            shot("assignment-list-fetched")
            assert hub.server(alice, "GET", path)["content"]["cells"]
            hub.server(alice, "PUT", path, {"type": "notebook", "format": "json", "content": filled})
            fetched_list.locator("button", has_text="Submit").first.click()
            submitted = page.locator("#submitted_assignments_list")
            submitted.get_by_text("no feedback released yet").first.wait_for()
            submitted.locator("button", has_text="Fetch Feedback").first.click()  # before there is any
            page.wait_for_timeout(2000)
            submitted.locator("button", has_text="Fetch Feedback").first.wait_for()
            text = submitted.inner_text()
            assert "no feedback released yet" in text and "Error" not in text, text
            shot("assignment-list-submitted-no-feedback-yet")
        hub.server(bob, "POST", "/assignments/fetch", {"course_id": COURSE_ID, "assignment_id": A})
        assert hub.server(bob, "GET", path)["content"]["cells"]
        hub.server(bob, "POST", "/assignments/submit", {"course_id": COURSE_ID, "assignment_id": A})
        print(f"test_hub: submitted at {time.monotonic() - t0:.0f} s")
        graded = hub.run(prof, shell(f"nbgrader collect {A} && tito grade {A} --jobs 2 && tito feedback {A} "
                                     f"&& nbgrader release_feedback {A}"), timeout=600)
        assert re.search(rf"^{alice} +.*24/24 *$", graded, re.M), graded
        assert re.search(rf"^{bob} +.*0/24 *$", graded, re.M), graded
        assert "checksum" not in graded and "EXTRA" not in graded, graded

        print(f"test_hub: graded at {time.monotonic() - t0:.0f} s")
        with browser_page("hub-instructor") as (page, shot):
            login(page, hub, prof, passwords[prof])
            page.goto(f"{hub.url}/user/{prof}/formgrader/manage_submissions/{A}")
            for name in (alice, bob):
                page.locator("table tr", has_text=name).first.wait_for()
            shot("formgrader-submissions")
            text = page.locator("body").inner_text()
            assert "None, None" not in text, text[:2000]
            assert "Able, Alice" in text or "Alice" in text, text[:2000]

        for name, score in ((alice, "24"), (bob, "0")):
            hub.server(name, "POST", "/assignments/fetch_feedback", {"course_id": COURSE_ID, "assignment_id": A})
            html = hub.run(name, f"import glob; print(open(glob.glob('workspace/{A}/feedback/*/{A}.html')[0]).read())")
            assert re.search(rf"Score: {score}(\.0)? / 24(\.0)?", html), (name, html[:2000])
            assert "Test cell: Task 01.1" in html and ">Test cell<" not in html, html[:3000]

        # Nobody reads another's home or the instructor's course, from their own server.
        for name, other in ((alice, bob), (bob, alice)):
            probe = hub.run(name, f"""
import os
for where in ({str(hubctl.pwd.getpwnam(other).pw_dir)!r}, {str(course)!r}, {str(course / 'source' / A)!r}):
    try:
        os.listdir(where)
        print('READ', where)
    except PermissionError:
        print('denied', where)
""")
            assert "READ" not in probe and probe.count("denied") == 3, probe
        assert not server_errors(log), "\n".join(server_errors(log))  # no [C ServerApp], no ExchangeError
    finally:
        if hub_proc is not None:
            hub_proc.send_signal(signal.SIGTERM)  # cleanup_servers: the hub stops the proxy and the servers
            try:
                hub_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(hub_proc.pid, signal.SIGKILL)
                hub_proc.wait()
        left = {}
        for name in users:
            found = subprocess.run(["pgrep", "-u", name, "-a"], capture_output=True, text=True).stdout.strip()
            if found:
                left[name] = found
        for name in users:
            hubctl.remove_user(name)
        if (state / "jupyterhub.log").exists():
            shutil.copy(state / "jupyterhub.log", tmp_path / "jupyterhub.log")  # pytest keeps it for a look
        shutil.rmtree(state, ignore_errors=True)
    assert not left, f"processes left after the hub stopped: {left}"
    proxy_left = subprocess.run(["pgrep", "-f", f"configurable-http-proxy.*{port}"], capture_output=True, text=True)
    assert not proxy_left.stdout.strip(), proxy_left.stdout
    print(f"test_hub: {time.monotonic() - t0:.0f} s")
