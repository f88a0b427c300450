"""The lecture demos (notebooks/demos/): their numbers without a browser, their widgets in Chromium.

- test_demo_numbers: runs each demo's .py with nbclient, sets the controls from an extra cell,
  and checks the numbers it shows against the library computed here (accuracy, real bytes, cache
  bytes, identical tokens), plus that every change draws a new figure. About 10 s each.
- test_demo_in_lab / test_demo_in_voila: each demo in JupyterLab (the .py opened as a notebook
  through jupytext, Run All) and as a Voila app (the .ipynb `make demos` writes); every control
  moved with the keyboard and with the mouse; after each move the result label must show the
  values computed here for the control's new setting and the figure must be a new image. One
  JupyterLab and one Voila server per test process, shared by the demos; TINYTORCH_DEMO_QUICK=1
  keeps the start-up tables short. Redraw times (key press or mouse release to new figure and
  label) fail above REDRAW_LIMIT and are printed (`-s`); screenshots go to tests/screenshots/demos-*/.
"""
import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from browser import browser_page, jupyter_server, require_chromium, run_command, server_errors, wait_for_kernel
from helpers import ROOT

DEMOS_DIR = ROOT / "notebooks" / "demos"
DEMOS = ["quantization", "pruning", "kvcache", "vectorization"]
REDRAW_LIMIT = 15.0       # seconds from a key press or mouse release to the new figure and label
FIRST_RENDER_LIMIT = 60.0  # seconds from Run All (Lab) or page open (Voila) to the first figure
PROMPT = "And the LORD said unto Moses, "  # kvcache.py's prompt
PYTHON_MAX = 8                             # vectorization.py: largest batch the pure-Python rung runs at


# ---------------------------------------------------------------- what each setting must show (the oracle)

@lru_cache(maxsize=None)
def mlp():
    from tinytorch_lib import data_dir
    from tinytorch_lib.dataloader import DataLoader, load_digits
    from tinytorch_lib.training import load_model

    model, _ = load_model(data_dir("mlp_digits.npz") / "mlp_digits.npz")
    return model, DataLoader(load_digits("test", flatten=True), batch_size=360)


def linears(model) -> list:
    from tinytorch_lib.layers import Linear
    return [m for name, m in model.named_modules() if name and isinstance(m, Linear)]


@lru_cache(maxsize=None)
def expected_quantization(bits: str, scheme: str) -> dict:
    """Accuracy of the dequantized weights; bytes = ceil(n * bits / 8) per matrix + float32 scales
    + int32 zero points (affine only) + float32 biases."""
    from tinytorch_lib.quantization import dequantize_tensor, quantize_tensor
    from tinytorch_lib.training import evaluate

    b, per_channel, symmetric = int(bits), scheme.startswith("per-channel"), scheme.endswith("symmetric")
    model, test = mlp()
    new, stored = copy.deepcopy(model), 0
    for layer, new_layer in zip(linears(model), linears(new)):
        axis = 0 if per_channel else None
        q, scale, zero = quantize_tensor(layer.weight.data, bits=b, symmetric=symmetric, axis=axis)
        new_layer.weight.data = dequantize_tensor(q, scale, zero, axis=axis)
        stored += math.ceil(q.size * b / 8) + 4 * np.size(scale) + (0 if symmetric else 4 * np.size(zero)) \
            + 4 * layer.bias.data.size
    return {"setting": f"{b}-bit {scheme}", "accuracy": f"{evaluate(new, test):.2%}", "bytes": f"{stored:,}"}


@lru_cache(maxsize=None)
def expected_pruning(sparsity: str, method: str, scratch: str = "/tmp") -> dict:
    """Dense 4 bytes per entry; bitmask ceil(n/8) + 4 per nonzero; CSR 4 + 2 per nonzero + 4 per row + 4;
    the file save_compressed writes; held-out accuracy."""
    import tempfile

    from tinytorch_lib.compression import make_permanent, prune, save_compressed
    from tinytorch_lib.training import evaluate

    model, test = mlp()
    pruned = make_permanent(prune(model, int(sparsity) / 100, "magnitude" if method == "unstructured" else "structured"))
    ws = [m.weight.data for m in linears(pruned)]
    nnz = [int(np.count_nonzero(w)) for w in ws]
    with tempfile.TemporaryDirectory() as folder:
        file_bytes = save_compressed(Path(folder) / "m.ttc", pruned)
    return {"setting": f"{method} {sparsity}%", "accuracy": f"{evaluate(pruned, test):.2%}",
            "dense": f"{sum(4 * w.size for w in ws):,}",
            "bitmask": f"{sum(math.ceil(w.size / 8) + 4 * k for w, k in zip(ws, nnz)):,}",
            "csr": f"{sum(6 * k + 4 * (w.shape[0] + 1) for w, k in zip(ws, nnz)):,}",
            "file": f"{file_bytes:,}"}


@lru_cache(maxsize=None)
def gpt_sizes() -> tuple:
    from tinytorch_lib.transformer import load_gpt
    model, tok, _ = load_gpt()
    return model.n_layers, model.n_heads, model.d_model // model.n_heads, len(tok.encode(PROMPT))


def expected_kvcache(tokens: str, model_kind: str) -> dict:
    """Cache bytes = 2 (keys, values) x layers x heads x (prompt + n) x head_dim x 4; tokens identical."""
    layers, heads, head_dim, prompt = gpt_sizes()
    n = int(tokens)
    return {"tokens": str(n), "model": model_kind, "cache-bytes": f"{2 * layers * heads * (prompt + n) * head_dim * 4:,}",
            "identical": "yes", "speedup": re.compile(r"\d+\.\dx"),
            "without": re.compile(r"\d+\.\d\d"), "with": re.compile(r"\d+\.\d\d")}


def expected_vectorization(batch: str, rung: str) -> dict:
    from tinytorch_lib.acceleration import CONV_LADDER

    rungs = list(CONV_LADDER)
    i, b = rungs.index(rung), int(batch)
    skipped = i == 0 and b > PYTHON_MAX
    return {"setting": f"batch {b}, rung {i + 1}: {rung}",
            "time": f"not run above batch {PYTHON_MAX}" if skipped else re.compile(r"\d+\.\d{3}"),
            "speedup": re.compile(r"n/a.*") if i == 0 or skipped or (i == 1 and b > PYTHON_MAX)
            else re.compile(r"\d+\.\dx")}


EXPECTED = {"quantization": lambda s: expected_quantization(s["bits"], s["scheme"]),
            "pruning": lambda s: expected_pruning(s["sparsity"], s["method"]),
            "kvcache": lambda s: expected_kvcache(s["tokens"], s["model_kind"]),
            "vectorization": lambda s: expected_vectorization(s["batch"], s["rung"])}


def check_shown(demo: str, settings: dict, shown: dict) -> None:
    for key, want in EXPECTED[demo](settings).items():
        got = shown.get(key)
        ok = bool(got is not None and re.fullmatch(want, got)) if isinstance(want, re.Pattern) else got == want
        assert ok, f"{demo} at {settings}: shows {key} = {got!r}, expected {getattr(want, 'pattern', want)!r}"


def spans(html: str) -> dict:
    """The numbers a demo's result table shows: <b class='demo-NAME'>TEXT</b> -> {NAME: TEXT}."""
    return {k: v for k, v in re.findall(r"<b class='demo-([\w-]+)'>([^<]*)</b>", html)}


# ---------------------------------------------------------------- without a browser

SETTINGS = {  # control name -> values set from an extra cell, in order
    "quantization": [{"bits": 8, "scheme": "per-channel symmetric"}, {"bits": 8, "scheme": "per-tensor affine"},
                     {"bits": 4, "scheme": "per-tensor symmetric"}, {"bits": 2, "scheme": "per-channel affine"}],
    "pruning": [{"sparsity": 0, "method": "unstructured"}, {"sparsity": 80, "method": "unstructured"},
                {"sparsity": 50, "method": "structured"}],
    "kvcache": [{"tokens": 16, "model_kind": "vectorize(gpt)"}, {"tokens": 128, "model_kind": "as trained"}],
    "vectorization": [{"batch": 2, "rung": "loop over positions"},
                      {"batch": 16, "rung": "pure Python loops"}, {"batch": 16, "rung": "loop over positions"}],
}
EXTRA_CELL = """
import hashlib as _h, json as _j
_seen = []
for _s in {settings!r}:
    for _k, _v in _s.items():
        controls[_k].value = _v
    _seen.append({{"settings": {{k: str(w.value) for k, w in controls.items()}}, "html": result.value,
                   "png": _h.sha1(plot.value).hexdigest()}})
print("DEMO-RESULTS" + _j.dumps(_seen))
"""


def run_demo(demo: str, settings: list) -> list:
    nb = jupytext.read(DEMOS_DIR / f"{demo}.py")
    nb.cells.append(nbformat.v4.new_code_cell(EXTRA_CELL.format(settings=settings)))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(DEMOS_DIR)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    return json.loads(text.split("DEMO-RESULTS", 1)[1])


@pytest.mark.parametrize("demo", DEMOS)
def test_demo_numbers(demo, monkeypatch):
    monkeypatch.setenv("TINYTORCH_DEMO_QUICK", "1")
    seen = run_demo(demo, SETTINGS[demo])
    assert len({s["png"] for s in seen}) == len(seen), f"{demo}: a change did not draw a new figure"
    for s in seen:
        check_shown(demo, s["settings"], spans(s["html"]))
    if demo == "quantization":
        from tinytorch_lib.training import evaluate
        fp32 = evaluate(*mlp())
        for s in seen[:2]:  # 8 bits: within 1 point of FP32
            assert abs(float(spans(s["html"])["accuracy"].rstrip("%")) - fp32 * 100) <= 1.0, s["settings"]
    if demo == "pruning":  # 0%: nothing removed, the unpruned accuracy
        from tinytorch_lib.training import evaluate
        assert spans(seen[0]["html"])["accuracy"] == f"{evaluate(*mlp()):.2%}"


# ---------------------------------------------------------------- in a real browser

TIMES = {}  # (interface, demo) -> {"first": s, "redraws": [s, ...]}


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A copy of notebooks/demos/ with the .ipynb that `make demos` writes (the repository stays untouched)."""
    folder = tmp_path_factory.mktemp("demos")
    for path in DEMOS_DIR.glob("*.py"):
        shutil.copy(path, folder)
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "notebook",
                    *[str(folder / f"{d}.py") for d in DEMOS]], check=True)
    return folder


def server_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON", "PYTEST"))}
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               IPYTHONDIR=str(home / "ipython"), TINYTORCH_DEMO_QUICK="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return env


@pytest.fixture(scope="module")
def lab(demo_folder, tmp_path_factory):
    require_chromium()
    home = tmp_path_factory.mktemp("lab-home")
    token = os.urandom(16).hex()
    env = server_env(home)
    env["JUPYTER_TOKEN"] = token
    log = home / "server.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.root_dir={demo_folder}",
           "--ServerApp.ip=127.0.0.1", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.port={port}", "--ServerApp.port_retries=0"] + (["--allow-root"] if os.geteuid() == 0 else [])
    with jupyter_server(cmd, env, demo_folder, log, f"/api/status?token={token}", "JupyterLab") as url:
        yield url, token
    assert not server_errors(log), "\n".join(server_errors(log))


@pytest.fixture(scope="module")
def voila(demo_folder, tmp_path_factory):
    require_chromium()
    home = tmp_path_factory.mktemp("voila-home")
    log = home / "server.log"
    cmd = [str(Path(sys.executable).parent / "voila"), str(demo_folder), "--no-browser", "--Voila.ip=127.0.0.1",
           "--port={port}"]
    with jupyter_server(cmd, server_env(home), demo_folder, log, "/", "Voila") as url:  # "/": the file list
        yield url
    assert not server_errors(log), "\n".join(server_errors(log))


STATE_JS = """() => {
    const shown = {}, settings = {};
    document.querySelectorAll('.demo-result b[class^="demo-"]').forEach(b => shown[b.className.slice(5)] = b.innerText);
    document.querySelectorAll('.demo-slider').forEach(w => {
        const name = [...w.classList].find(c => c.startsWith('demo-') && c !== 'demo-slider').slice(5);
        const readout = w.querySelector('.widget-readout'), active = w.querySelector('button.mod-active');
        settings[name] = readout ? readout.innerText.trim() : active ? active.innerText.trim() : null;
    });
    const img = document.querySelector('img.demo-plot');
    return {shown, settings, src: img ? img.src : null};
}"""
CHANGED_JS = """(before) => {
    const img = document.querySelector('img.demo-plot');
    const shown = {};
    document.querySelectorAll('.demo-result b[class^="demo-"]').forEach(b => shown[b.className.slice(5)] = b.innerText);
    return img && img.src !== before.src && img.complete && JSON.stringify(shown) !== JSON.stringify(before.shown);
}"""


def state(page) -> dict:
    return page.evaluate(STATE_JS)


def changed(page, demo: str, action, what: str) -> float:
    """Do action; wait for a new figure and label; check the label against the oracle. -> seconds."""
    before = state(page)
    start = time.monotonic()
    action()
    page.wait_for_function(CHANGED_JS, arg=before, timeout=REDRAW_LIMIT * 4 * 1000, polling=20)
    seconds = time.monotonic() - start
    after = state(page)
    assert after["settings"] != before["settings"], f"{demo}, {what}: the control did not move"
    check_shown(demo, after["settings"], after["shown"])
    assert seconds < REDRAW_LIMIT, f"{demo}, {what}: redraw took {seconds:.1f} s (limit {REDRAW_LIMIT} s)"
    return seconds


def drive(page, demo: str) -> list:
    """Move every control with the keyboard and with the mouse; -> redraw seconds."""
    times = []
    for widget in page.locator(".demo-app .demo-slider").all():
        name = next(c[5:] for c in widget.get_attribute("class").split() if c.startswith("demo-") and c != "demo-slider")
        widget.scroll_into_view_if_needed()
        handle = widget.locator(".noUi-handle")
        if handle.count():
            now, top = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemax"))
            key = "ArrowLeft" if now >= top else "ArrowRight"
            handle.focus()
            times.append(changed(page, demo, lambda: page.keyboard.press(key), f"{name}: {key}"))
            track = widget.locator(".noUi-target").bounding_box()
            box = handle.bounding_box()
            frac = (box["x"] + box["width"] / 2 - track["x"]) / track["width"]
            target = track["x"] + track["width"] * (0.15 if frac > 0.5 else 0.85)

            def drag():
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.mouse.down()
                page.mouse.move(target, box["y"] + box["height"] / 2, steps=8)
                page.mouse.up()
            times.append(changed(page, demo, drag, f"{name}: mouse drag"))
        else:  # toggle buttons: a click on another option
            other = widget.locator("button:not(.mod-active)").first
            times.append(changed(page, demo, other.click, f"{name}: click"))
    return times


def report(interface: str, demo: str, first: float, redraws: list) -> None:
    TIMES[(interface, demo)] = {"first": first, "redraws": redraws}
    print(f"\n{interface:<6} {demo:<14} first render {first:5.1f} s; redraw median {np.median(redraws):.2f} s, "
          f"max {max(redraws):.2f} s over {len(redraws)} moves")


def render_and_drive(page, shot, demo: str, start: float) -> tuple:
    """Wait for the first plot, check the shown numbers, move every control, screenshot.

    -> (seconds from `start` to the first render, the redraw times of drive()).
    """
    page.locator("img.demo-plot").first.wait_for(timeout=FIRST_RENDER_LIMIT * 1000)
    page.wait_for_function("() => document.querySelector('.demo-result b')")
    first = time.monotonic() - start
    check_shown(demo, state(page)["settings"], state(page)["shown"])
    redraws = drive(page, demo)
    page.locator(".demo-plot").first.scroll_into_view_if_needed()
    shot(demo)
    return first, redraws


@pytest.mark.browser
@pytest.mark.parametrize("demo", DEMOS)
def test_demo_in_lab(demo, lab):
    url, token = lab
    with browser_page(f"demos-lab-{demo}", viewport=(1400, 1000)) as (page, shot):
        page.goto(f"{url}/lab?token={token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
        page.locator(".jp-LauncherCard, .jp-DirListing").first.wait_for()
        run_command(page, "docmanager:open", {"path": f"{demo}.py", "factory": "Notebook"})  # through jupytext
        wait_for_kernel(page)
        prompt = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt").first
        for attempt in range(3):  # a Run All sent before the kernel is attached runs nothing
            start = time.monotonic()
            run_command(page, "notebook:run-all-cells")
            try:
                page.wait_for_function("(p) => p && !/^\\[ \\]:$/.test(p.innerText.trim())", arg=prompt.element_handle(),
                                       timeout=10_000)
                break
            except Exception:
                if attempt == 2:
                    raise
        first, redraws = render_and_drive(page, shot, demo, start)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    report("Lab", demo, first, redraws)
    assert first < FIRST_RENDER_LIMIT


@pytest.mark.browser
@pytest.mark.parametrize("demo", DEMOS)
def test_demo_in_voila(demo, voila):
    with browser_page(f"demos-voila-{demo}", viewport=(1400, 1000)) as (page, shot):
        start = time.monotonic()
        page.goto(f"{voila}/voila/render/{demo}.ipynb")
        first, redraws = render_and_drive(page, shot, demo, start)
    report("Voila", demo, first, redraws)
    assert first < FIRST_RENDER_LIMIT


@pytest.mark.browser
def test_voila_inside_lab(lab):
    """The Lab server also serves the demos as Voila apps, at /voila/render/<notebook>."""
    url, token = lab
    with browser_page("demos-voila-in-lab") as (page, shot):
        page.goto(f"{url}/voila/render/quantization.ipynb?token={token}")
        page.locator("img.demo-plot").first.wait_for(timeout=FIRST_RENDER_LIMIT * 1000)
        handle = page.locator(".demo-bits .noUi-handle")
        handle.focus()
        changed(page, "quantization", lambda: page.keyboard.press("ArrowRight"), "bits: ArrowRight")
        shot("quantization")
