"""What the four lecture demos share: stored measurements, a plot redrawn in place, the layout.

Not part of the library: no optimization lives here, only the widget plumbing.

- **Stored measurements** (`stored/<demo>.json`, committed): what is slow to measure (timing
  tables, accuracy curves) is measured ahead by `make demos` (`python demo_measure.py`), with
  where and when (machine, load, commit, library origin). A demo draws them at once, labelled as
  stored; its "measure live" button measures again with the course's timing helper and draws the
  live numbers beside the stored ones. A slider move never times anything.
- **The plot** is one matplotlib Figure, laid out once, then redrawn in place (only the artists
  that change) and sent as a PNG of exactly the size it is shown at: 72 dpi, so one point is one
  pixel, and every text is at least 14 px (`presenter` mode: 18 px).
- **A kernel restart** leaves the controls in the page without a kernel behind them. ipywidgets
  marks every view it can no longer reach `jupyter-widgets-disconnected`; the demo's CSS then
  shows a notice saying to re-run the demo, and greys out the controls and the plot.

CSS classes (the browser tests find the widgets by them):
  demo-app (the whole demo), demo-slider + demo-<name> (each control), demo-measure (the button),
  demo-status (what is shown: stored or live), demo-result (the numbers), demo-plot (the figure),
  demo-note (the notes), demo-dead (the kernel-restart notice).
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import itertools
import io
import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import ipywidgets as W

HERE = Path(__file__).resolve().parent
STORED = HERE / "stored"
PLOT_WIDTH, PLOT_HEIGHT = 800, 390  # pixels, shown 1:1; fits JupyterLab's notebook at 1280x720 with its file browser open
FONT = 14                            # points = pixels at 72 dpi
PRESENTER_FONT = 18

KEYBOARD_NOTE = ("Controls: drag a handle, or click it and use the arrow keys, PageUp/PageDown or Home/End. "
                 "In Notebook 7 the arrow keys do not reach a focused slider: use PageUp/PageDown there, or "
                 "JupyterLab or Voila.")


def style_fonts(size: int) -> None:
    import matplotlib

    matplotlib.rcParams.update({"font.size": size, "axes.titlesize": size, "axes.labelsize": size,
                                "xtick.labelsize": size, "ytick.labelsize": size, "legend.fontsize": size,
                                "legend.framealpha": 1.0, "figure.dpi": 72, "savefig.dpi": 72,
                                "axes.formatter.useoffset": False})


# ---------------------------------------------------------------- units and ticks
# Sizes: the course's decimal kB (tinytorch_lib.plotting: KB = 1000 bytes, format_bytes), imported by each
# demo after its stored first figure is shown (plotting imports matplotlib).

def plain_log_ticks(axis, values) -> None:
    """Log axis with ticks at `values`, written as plain numbers (32, 64, ...), no minor labels."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    axis.set_major_locator(FixedLocator(list(values)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


# ---------------------------------------------------------------- stored measurements

@functools.lru_cache(maxsize=None)
def library_origin(*names: str) -> str:
    """'course reference' / 'your own export (quantization)' ...: which library the numbers come from, no paths."""
    import tinytorch_lib

    kinds = {}
    for name in names:
        line = tinytorch_lib.origin(name)
        kind = ("course reference" if " is the course reference " in line else
                "untouched stub" if " is the untouched stub " in line else "your own export")
        kinds.setdefault(kind, []).append(name)
    if len(kinds) == 1:
        return next(iter(kinds))
    return "; ".join(f"{k} ({', '.join(v)})" for k, v in kinds.items())


def provenance(*libraries: str) -> dict:
    """Where and when a measurement is taken: machine, load, commit, library origin."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "../../tinytorch_lib"], cwd=HERE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += " (library edited)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy as np

    return {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{cpu}, {os.cpu_count()} cores", "load": [round(x, 1) for x in os.getloadavg()],
            "commit": commit, "library": library_origin(*libraries), "numpy": np.__version__}


def save_stored(demo: str, data: dict, *libraries: str) -> Path:
    STORED.mkdir(exist_ok=True)
    path = STORED / f"{demo}.json"
    path.write_text(json.dumps({"measured": provenance(*libraries), "data": data}, indent=1) + "\n")
    return path


def load_stored(demo: str) -> dict | None:
    """{'measured': provenance, 'data': ...} or None when nothing is stored yet."""
    path = STORED / f"{demo}.json"
    return json.loads(path.read_text()) if path.exists() else None


def describe_stored(stored: dict | None, *libraries: str) -> str:
    """One line: where and when the stored numbers were measured (no paths)."""
    if stored is None:
        return ("Nothing is stored yet for this demo: press <b>measure live</b> (or run <code>make demos</code> "
                "before the lecture).")
    m = stored["measured"]
    line = (f"Stored: measured {m['when']} on {m['machine']} (load {m['load'][0]}), commit {m['commit']}, "
            f"library: {m['library']}.")
    now = library_origin(*libraries)
    if now != m["library"]:
        line += f" <b>This kernel runs {now}</b>: press measure live for its numbers."
    return line


# ---------------------------------------------------------------- the plot

class Plot:
    """One Figure, laid out once, redrawn in place; setup(fig) makes its artists (matplotlib is imported here)."""

    def __init__(self, setup, font: int, width: int = PLOT_WIDTH, height: int = PLOT_HEIGHT):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        style_fonts(font)
        self.font = font
        self.fig = Figure(figsize=(width / 72, height / 72), dpi=72, layout="constrained")
        FigureCanvasAgg(self.fig)
        self.fig.art = {}
        setup(self.fig)
        self.fixed = False
        self.background = None

    def png(self) -> bytes:
        """Draw and encode fast. The layout is computed on the first draw only. The artists listed in
        fig.art["dynamic"] are drawn over a stored background of everything else (blitting), which is
        drawn again only when fig.art["static_dirty"] is set."""
        from PIL import Image

        style_fonts(self.font)
        fig, canvas = self.fig, self.fig.canvas
        art = fig.art
        dynamic = art.get("dynamic", [])
        if not self.fixed:
            canvas.draw()
            fig.set_layout_engine("none")  # keep the positions: later draws skip the layout pass
            self.fixed = True
            self.background = None
        if self.background is None or art.get("static_dirty"):
            for a in dynamic:
                a.set_animated(True)
            canvas.draw()  # everything but the dynamic artists
            self.background = canvas.copy_from_bbox(fig.bbox)
            art["static_dirty"] = False
        else:
            canvas.restore_region(self.background)
        for a in dynamic:
            fig.draw_artist(a)
        buf = io.BytesIO()
        Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()) \
            .convert("RGB").save(buf, format="png", compress_level=1)
        return buf.getvalue()


CSS = """<style>
.demo-app { font-size: 15px; line-height: 1.3; }
.demo-app .widget-label, .demo-app .widget-readout, .demo-app button { font-size: 15px; }
.demo-app .demo-plot { max-width: none; flex: none; }
.demo-app .demo-dead { display: none; }
.demo-app.jupyter-widgets-disconnected .demo-dead { display: block; position: relative; height: 0;
  overflow: visible; z-index: 1000; }
.demo-app.jupyter-widgets-disconnected .demo-slider, .demo-app.jupyter-widgets-disconnected .demo-measure,
.demo-app.jupyter-widgets-disconnected .demo-plot, .demo-app.jupyter-widgets-disconnected .demo-result
  { opacity: 0.3; pointer-events: none; }
.demo-app .demo-dead-notice { position: absolute; top: 40px; left: 20px; width: 720px; white-space: normal;
  background: #b00020; color: white; font-size: 20px; padding: 12px 16px; box-shadow: 0 2px 8px #0006;
  border-radius: 4px; }
.demo-app .demo-status { color: #333; }
.demo-app .demo-note { font-size: 13px; color: #555; }
.demo-app .demo-result td { padding: 1px 12px 1px 0; }
.jupyter-widgets-disconnected::before { display: none !important; }
</style>"""
DEAD = ("<div class='demo-dead-notice'>The kernel behind this demo stopped or restarted: the controls no longer reach it and the "
        "numbers and plot are from before. Re-run the notebook (Run All) or reload the page.</div>")


def control(widget: W.Widget, name: str, width: str = "380px") -> W.Widget:
    """Tag a control with `demo-slider demo-<name>`; sliders only report a value when released."""
    if hasattr(widget, "continuous_update"):
        widget.continuous_update = False
    widget.style.description_width = "initial"
    if isinstance(widget, W.ToggleButtons):
        widget.style.button_width = "auto"
        widget.layout.width = "auto"
    else:
        widget.layout.width = width
    widget.add_class("demo-slider")
    widget.add_class(f"demo-{name}")
    return widget


class App:
    """Controls, a status line, the plot, the numbers. The demo gives:

    setup(fig)                          makes the figure's artists; fig.art["dynamic"]: those draw() changes
    draw(fig, **values)                 updates the artists for these values
    table(**values) -> html             the numbers
    status(**values) -> str             what the plot shows now (stored / live), one line
    measure(values, progress)           (optional) measures live; progress(text) updates the status line

    first: the PNG of the first figure stored by `make demos` for these values (or None): shown at
    once, before matplotlib is even imported; the figure itself is made in the background.
    """

    def __init__(self, rows: list, controls: dict, setup, draw, table, status, note: str, measure=None,
                 first: bytes | None = None, width: int = PLOT_WIDTH, height: int = PLOT_HEIGHT):
        self.controls, self.setup, self.draw, self.table, self.status_of = controls, setup, draw, table, status
        self.measure_fn, self.size = measure, (width, height)
        self.lock = threading.RLock()
        self.cache = {}  # (presenter, values) -> png: a setting seen before is not drawn again
        self.plots = {}  # presenter -> Plot
        self.image = W.Image(format="png", layout=W.Layout(width=f"{width}px", height=f"{height}px",
                                                           min_width=f"{width}px")).add_class("demo-plot")
        self.result = W.HTML().add_class("demo-result")
        self.status = W.HTML().add_class("demo-status")
        self.presenter = W.ToggleButton(value=False, description="presenter", tooltip="bigger plot text",
                                        layout=W.Layout(width="110px")).add_class("demo-presenter")
        extra = [self.presenter]
        self.button = None
        if measure is not None:
            self.button = W.Button(description="measure live", layout=W.Layout(width="130px")).add_class("demo-measure")
            self.button.on_click(self._measure)
            extra.insert(0, self.button)
        if first is not None:
            self.cache[(False, tuple(self.values().items()))] = first
        self.update()
        for w in list(controls.values()) + [self.presenter]:
            w.observe(self.update, names="value")
        rows = [W.HBox(list(r) + (extra if i == 0 else []), layout=W.Layout(align_items="center"))
                for i, r in enumerate(rows)]
        self.box = W.VBox([*rows, self.status, W.HTML(CSS + DEAD).add_class("demo-dead"), self.image, self.result,
                           W.HTML(f"<p>{note}<br>{KEYBOARD_NOTE}</p>").add_class("demo-note")]).add_class("demo-app")
        self.prefetching = False
        self.last = (next(iter(controls)), 1)  # (control, direction) of the last move
        self.prefetch()

    def options(self, name: str) -> list:
        w = self.controls[name]
        return list(w._options_values) if hasattr(w, "options") else list(range(w.min, w.max + 1, w.step))

    def neighbours(self, now: dict) -> list:
        """The settings one step from `now`: the last moved control first, in the direction it moved."""
        out = []
        names = sorted(now, key=lambda k: k != self.last[0])
        for k in names:
            opts, i = self.options(k), self.options(k).index(now[k])
            steps = [self.last[1], -self.last[1]] if k == self.last[0] else [1, -1]
            for step in steps:
                j = i + step
                if isinstance(self.controls[k], W.ToggleButtons):
                    j %= len(opts)
                if 0 <= j < len(opts) and j != i:
                    out.append({**now, k: opts[j]})
        return out

    def prefetch(self) -> None:
        """Draw the settings one move away in the background, the likeliest first, so that the next
        move finds its figure drawn (and make the figure when the first one came stored)."""
        if self.prefetching:
            return
        self.prefetching = True

        def work():
            try:
                while True:
                    time.sleep(0.01)  # a move waiting for the lock gets it first
                    with self.lock:
                        todo = [v for v in self.neighbours(self.values())
                                if (self.presenter.value, tuple(v.items())) not in self.cache]
                        if not todo:
                            if not self.plots:
                                self._plot(self.presenter.value)
                            return
                        self.png(self.presenter.value, todo[0])
            finally:
                self.prefetching = False

        threading.Thread(target=work, daemon=True).start()

    def _plot(self, presenter: bool) -> Plot:
        with self.lock:
            if presenter not in self.plots:
                self.plots[presenter] = Plot(self.setup, PRESENTER_FONT if presenter else FONT, *self.size)
            return self.plots[presenter]

    def values(self) -> dict:
        return {name: w.value for name, w in self.controls.items()}

    def png(self, presenter: bool, values: dict) -> bytes:
        key = (presenter, tuple(values.items()))
        if key not in self.cache:
            plot = self._plot(presenter)
            style_fonts(plot.font)
            self.draw(plot.fig, **values)
            self.cache[key] = plot.png()
        return self.cache[key]

    def update(self, change=None) -> None:
        if change is not None and change.owner in self.controls.values():
            name = next(k for k, w in self.controls.items() if w is change.owner)
            opts = self.options(name)
            if change.old in opts and change.new in opts:
                self.last = (name, 1 if opts.index(change.new) >= opts.index(change.old) else -1)
        with self.lock:
            values = self.values()
            self.image.value = self.png(self.presenter.value, values)
            self.result.value = self.table(**values)
            self.status.value = self.status_of(**values)
        if change is not None:
            self.prefetch()

    def forget(self) -> None:
        """New live numbers: every cached drawing is out of date."""
        with self.lock:
            self.cache.clear()
            for plot in self.plots.values():
                plot.fig.art["static_dirty"] = True

    def _measure(self, _button) -> None:
        values = self.values()
        self.button.disabled = True

        def progress(text: str) -> None:
            self.status.value = f"<b>measuring live:</b> {text}"

        def work():
            try:
                self.measure_fn(values, progress)
            except Exception as e:  # shown on the page, not as a traceback in a thread
                self.status.value = f"<b>live measurement failed:</b> {type(e).__name__}: {e}"
                return
            finally:
                self.button.disabled = False
            self.forget()
            self.update()
            self.prefetch()

        threading.Thread(target=work, daemon=True).start()


def first_png(demo: str, values: dict) -> bytes | None:
    """stored/<demo>-first.png if `make demos` drew it for these control values from the stored data
    with the library this kernel runs; else None (the first figure is then drawn here)."""
    stored = load_stored(demo)
    path = STORED / f"{demo}-first.png"
    want = {"values": {k: str(v) for k, v in values.items()}, "code": code_hash(demo)}
    if not (stored and path.exists() and stored.get("first") == want):
        return None
    from demo_measure import LIBRARIES

    if library_origin(*LIBRARIES[demo]) != stored["measured"]["library"]:
        return None
    return path.read_bytes()


def show_first(demo: str, values: dict) -> None:
    """Display the stored first figure as a plain image, at once (no widget, no matplotlib): a page shows
    it while the widgets load; the demo's own plot replaces it (CSS) as soon as it is there."""
    import base64

    from IPython.display import HTML, display

    png = first_png(demo, values)
    if png is None:
        return
    display(HTML("<style>body:has(.demo-app img.demo-plot) .demo-static { display: none; }</style>"
                 f"<div class='demo-static'><p style='margin:2px 0'>Stored first figure, drawn by "
                 f"<code>make demos</code>; the controls are loading ...</p>"
                 f"<img class='demo-static-plot' width='{PLOT_WIDTH}' height='{PLOT_HEIGHT}' style='max-width:none' "
                 f"src='data:image/png;base64,{base64.b64encode(png).decode()}'></div>"))


def code_hash(demo: str) -> str:
    """Of the files that draw a demo's figure: a stored first figure is used only while they are unchanged."""
    h = hashlib.sha256()
    for name in (f"{demo}.py", "demo_common.py", "demo_measure.py"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:16]


def row(cells: list) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def value(name: str, text: str) -> str:
    """A number in the result table, in a span the tests read: <b class="demo-<name>">text</b>."""
    return f"<b class='demo-{name}'>{text}</b>"
