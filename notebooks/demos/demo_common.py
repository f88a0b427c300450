"""What the four lecture demos share: controls with stable CSS classes, a figure shown as a PNG, the layout.

Not part of the library: no optimization lives here, only the widget plumbing. Every number a
demo shows is computed in the demo itself, from the controls' current values.

CSS classes (the browser tests find the widgets by them):
  demo-app (the whole demo), demo-slider + demo-<name> (each control), demo-result (the numbers),
  demo-plot (the figure), demo-note (what is precomputed, which interface to use).
"""
from __future__ import annotations

import io
import os

import ipywidgets as W
from matplotlib.figure import Figure

# TINYTORCH_DEMO_QUICK=1: smaller start-up tables (the test suite sets it). Every figure is still
# measured, and the demo says it ran quick.
QUICK = os.environ.get("TINYTORCH_DEMO_QUICK") == "1"

KEYBOARD_NOTE = ("Controls: drag a handle, or click it and use the arrow keys, PageUp/PageDown or Home/End; "
                 "a slider's number can also be typed over. In Notebook 7 the arrow keys do not reach a "
                 "focused slider (the notebook takes them): use PageUp/PageDown there, or JupyterLab or Voila.")


def control(widget: W.Widget, name: str) -> W.Widget:
    """Tag a control with `demo-slider demo-<name>`; sliders only report a value when released."""
    if hasattr(widget, "continuous_update"):
        widget.continuous_update = False
    widget.style.description_width = "initial"
    widget.layout.width = "460px"
    widget.add_class("demo-slider")
    widget.add_class(f"demo-{name}")
    return widget


def figure(width: float = 11.0, height: float = 3.8) -> Figure:
    """A matplotlib Figure without pyplot: nothing is left open between redraws."""
    return Figure(figsize=(width, height), layout="constrained")


def show(fig: Figure, image: W.Image) -> None:
    """Render fig as PNG into the image widget (one new image per redraw)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    image.value = buf.getvalue()


def app(controls: dict, redraw, note: str) -> tuple:
    """Lay out the controls, the numbers and the figure; redraw(**values) -> (html, Figure) on every change.

    Returns (box, result, image); call box's display once. The first redraw happens here.
    """
    result = W.HTML().add_class("demo-result")
    image = W.Image(format="png").add_class("demo-plot")

    def update(_=None):
        html, fig = redraw(**{name: w.value for name, w in controls.items()})
        show(fig, image)
        result.value = html

    for w in controls.values():
        w.observe(update, names="value")
    update()
    notes = W.HTML(f"<p style='font-size:90%;color:#444'>{note}<br>{KEYBOARD_NOTE}</p>").add_class("demo-note")
    box = W.VBox([W.VBox(list(controls.values())), result, image, notes]).add_class("demo-app")
    return box, result, image


def row(cells: list) -> str:
    return "<tr>" + "".join(f"<td style='padding:1px 10px 1px 0'>{c}</td>" for c in cells) + "</tr>"


def value(name: str, text: str) -> str:
    """A number in the result table, in a span the tests read: <b class="demo-<name>">text</b>."""
    return f"<b class='demo-{name}'>{text}</b>"
